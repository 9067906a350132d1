"""The `autocnn` command line: click commands, the options they share, pipeline files and the
console summaries."""
