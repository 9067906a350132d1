"""What bounds a search while it runs: the wall-clock budget and the user's Ctrl-C.

TensorFlow-free, so the command line can parse a budget before importing it.
"""

import logging
import re
import signal
import threading

from autocnn.errors import ConfigError

log = logging.getLogger(__name__)

_UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``45m``, ``2h``, ``1h30m`` or a plain number of seconds."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise ConfigError(f"time budget {text!r}: write it as 90s, 45m, 2h or 1h30m")
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ConfigError(f"time budget {text!r} must be more than zero")
    return seconds


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def trial_label(number: int, total: int | None) -> str:
    """``  3/10``, or ``  3`` when the number of trials has no limit (the budget decides)."""
    return f"{number:>3}" + (f"/{total}" if total else "")


class StopRequests:
    """Ctrl-C once asks the search to stop after the running trial; twice stops it now.

    SIGTERM (a scheduler's or ``kill``'s request) stops it now, like a second Ctrl-C. Handlers
    are installed only in the main thread, and the previous ones come back on exit.
    """

    def __init__(self):
        self.requested, self._previous = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signal.SIGINT: signal.signal(signal.SIGINT, self._first),
                              signal.SIGTERM: signal.signal(signal.SIGTERM, self._now)}
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _first(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one stops now
        log.info("\nCtrl-C: stopping after the trial in progress; press Ctrl-C again to stop "
                 "now (a rerun of the same command resumes either way)")

    def _now(self, signum, frame):
        raise KeyboardInterrupt
