"""Progress on the console: autocnn reports what it does through the standard ``logging``
module (the "autocnn" logger and its children), so a program that uses autocnn as a library
can silence, filter or redirect it like any other library's; ``show_progress`` prints it as the
command line does."""

import logging
import sys

LOGGER = "autocnn"


class ConsoleHandler(logging.Handler):
    """Each record as one line on the standard output of the moment (warnings begin with
    "warning: "), flushed at once so that a log file follows a long search."""

    def emit(self, record):
        try:
            prefix = "warning: " if record.levelno >= logging.WARNING else ""
            stream = sys.stdout
            stream.write(f"{prefix}{self.format(record)}\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def show_progress(level: int = logging.INFO) -> None:
    """Print autocnn's progress on the console from now on (once, however often called)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
