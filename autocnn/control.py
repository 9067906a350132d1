"""What bounds a search while it runs: the wall-clock budget and the user's Ctrl-C.

TensorFlow-free, so the command line can parse a budget before importing it.
"""

import os
import re
import signal
import threading
import time

from autocnn.errors import AutoCNNError, ConfigError

_UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")


class Interrupted(AutoCNNError):
    """The user stopped the search; what is finished is kept and a rerun resumes it."""

    exit_code = 130


def share_gpu_memory() -> None:
    """Let GPU memory grow as needed, so other processes can share the card: TensorFlow's own
    switch, read when it first touches a GPU (a value the user set stands)."""
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


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


class Budget:
    """A wall-clock budget for a whole search command, from its start.

    Trials end ``reserve`` seconds early, to leave time for retraining the best configuration,
    and ``finish`` seconds more for evaluating, logging and registering the result (5% of the
    budget, at least 5 s and at most a minute); ``fits`` says whether a trial of a given length
    still ends in time.
    """

    def __init__(self, seconds: float | None, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.started = clock()
        self.reserve = 0.0
        self.finish = 0.0 if seconds is None else min(max(0.05 * seconds, 5.0), 60.0)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def remaining(self) -> float:
        """Seconds left for the whole command (infinite without a budget)."""
        return float("inf") if self.seconds is None else self.seconds - self.elapsed

    @property
    def training_remaining(self) -> float:
        """Seconds left for training (trials and retraining): all but the finish."""
        return self.remaining - self.finish

    @property
    def search_remaining(self) -> float:
        """Seconds left for trials: the training time less the reserve for retraining."""
        return self.training_remaining - self.reserve

    def fits(self, seconds: float) -> bool:
        return seconds <= self.search_remaining

    def describe(self) -> str:
        if self.seconds is None:
            return ""
        return f"{format_duration(max(self.remaining, 0))} of {format_duration(self.seconds)} left"


class StopRequests:
    """Ctrl-C once asks the search to stop after the running trial; twice stops it now.

    SIGTERM (a scheduler's or ``kill``'s request) stops it now, like a second Ctrl-C. Handlers
    are installed only in the main thread, and the previous ones come back on exit.
    """

    def __init__(self, echo=print):
        self.echo, self.requested, self._previous = echo, False, {}

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
        self.echo("\nCtrl-C: stopping after the trial in progress; press Ctrl-C again to stop "
                  "now (a rerun of the same command resumes either way)")

    def _now(self, signum, frame):
        raise KeyboardInterrupt
