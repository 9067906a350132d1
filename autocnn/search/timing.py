"""How long the trials take: each trial's seconds, its seconds per epoch (what the budget's
reserve and the cost model learn from) and its overhead beyond training."""

import time

import numpy as np


class TrialTimes:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.durations = []  # every ended trial's seconds, this process's and the workers'
        self.epoch_seconds = {}  # trial id -> seconds per epoch
        self.overheads = {}  # trial id -> seconds beyond training (see trial_overhead)
        self._started, self._epochs, self._epoch_times = {}, {}, {}
        self._epoch_began = 0.0
        self.search_started = clock()

    def begin(self, trial_id: str) -> None:
        self._started[trial_id], self._epochs[trial_id] = self.clock(), 0

    def epoch_begin(self) -> None:
        self._epoch_began = self.clock()

    def epoch_end(self, trial_id: str) -> None:
        self._epoch_times.setdefault(trial_id, []).append(self.clock() - self._epoch_began)
        self.count_epochs(trial_id, 1)

    def count_epochs(self, trial_id: str, epochs: int) -> None:
        self._epochs[trial_id] = self._epochs.get(trial_id, 0) + epochs

    def so_far(self, trial_id: str) -> tuple[float, float | None]:
        """Seconds since the trial began, and per epoch (None before its first epoch)."""
        seconds = self.clock() - self._started[trial_id]
        epochs = self._epochs.get(trial_id, 0)
        return seconds, (seconds / epochs if epochs else None)

    def end(self, trial_id: str) -> tuple[float, float | None]:
        """The trial's seconds and its overhead (None with fewer than two epochs)."""
        seconds, per_epoch = self.so_far(trial_id)
        del self._started[trial_id], self._epochs[trial_id]
        overhead = trial_overhead(seconds, self._epoch_times.pop(trial_id, []))
        if overhead is not None:
            self.overheads[trial_id] = overhead
        self.ended(trial_id, seconds, per_epoch)
        return seconds, overhead

    def forget(self, trial_id: str) -> None:
        """A trial that runs again from its start: this run of it counts for nothing."""
        for kept in (self._started, self._epochs, self._epoch_times):
            kept.pop(trial_id, None)

    def ended(self, trial_id: str, seconds: float, per_epoch: float | None) -> None:
        """A trial ended here or on a worker after ``seconds``."""
        self.durations.append(seconds)
        if per_epoch:
            self.epoch_seconds[trial_id] = per_epoch

    @property
    def mean(self) -> float:
        """A trial's mean seconds so far (0 before the first)."""
        return float(np.mean(self.durations)) if self.durations else 0.0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.search_started


def trial_overhead(seconds: float, epochs: list[float]) -> float | None:
    """What a trial of ``seconds`` spent beyond training (``epochs``: each epoch's seconds):
    the time between its epochs (building and compiling the model, checkpoints, logging) and
    what its first epoch took beyond the others' median (tracing the first step). None with
    fewer than two epochs (the one epoch's tracing cannot be told from its training).

    An epoch slowed by a busy machine is training, not overhead: counting the trial's seconds
    against the median epoch instead made a 16-epoch trial on a shared machine report minutes.
    """
    if len(epochs) < 2:
        return None
    between = seconds - sum(epochs)
    tracing = epochs[0] - float(np.median(epochs[1:]))
    return max(between, 0.0) + max(tracing, 0.0)
