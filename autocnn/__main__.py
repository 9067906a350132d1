"""`python -m autocnn` runs the command line."""

from autocnn.cli import main

main()
