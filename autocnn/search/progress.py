"""What a search shows while it runs: live progress inside one training (a trial, a retraining,
a finalist), a bar that redraws in place on a terminal and one plain line per epoch elsewhere (CI
logs, nohup); and each trial's closing line."""

import logging
import sys
import time

import keras

from autocnn.control import format_duration, trial_label
from autocnn.space.hypermodel import active_values

log = logging.getLogger(__name__)

REDRAW_SECONDS = 0.25  # the bar redraws at most this often
# Off a terminal an epoch's line is printed once this long has passed since the last one, so a
# log shows every epoch of a long training and no flood from epochs of a fraction of a second.
LINE_SECONDS = 10.0


class EpochProgress(keras.callbacks.Callback):
    """A line per epoch: ``trial 3/10  epoch 4/20  val_accuracy 0.9112  31s  ETA 4:40`` (the
    ETA is for the rest of this training, at the mean pace of its epochs so far), at most one
    each ``every`` seconds.

    ``label`` names the training ("trial 3/10", "retraining"); ``write`` shows a line (by
    default, an INFO record of the "autocnn" logger).
    """

    def __init__(self, label: str, write=None, every: float = LINE_SECONDS):
        super().__init__()
        self.label, self.write, self.every = label, write or log.info, every
        self._began, self._epoch_began, self._said, self.last_val = 0.0, 0.0, 0.0, None

    def on_train_begin(self, logs=None):
        self._began = self._said = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_began = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.last_val = logs.get("val_accuracy", self.last_val)
        if time.monotonic() - self._said >= self.every:
            self._said = time.monotonic()
            self.write(self._epoch_line(epoch, logs))

    def _epoch_line(self, epoch: int, logs: dict) -> str:
        epochs = self.params.get("epochs") or epoch + 1
        score = logs.get("val_accuracy", logs.get("accuracy"))
        name = "val_accuracy" if "val_accuracy" in logs else "accuracy"
        spent = time.monotonic() - self._began
        eta = spent / (epoch + 1) * (epochs - epoch - 1)
        return (f"{self.label}  epoch {epoch + 1}/{epochs}"
                + (f"  {name} {score:.4f}" if score is not None else "")
                + f"  {_seconds(time.monotonic() - self._epoch_began)}  ETA {format_duration(eta)}")


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else format_duration(seconds)


class LiveProgress(EpochProgress):
    """EpochProgress on a terminal, as one line redrawn in place: within an epoch the batch,
    images a second, the epoch's ETA and the last validation accuracy; between epochs the
    epoch's line. It is cleared when the training ends (the trial's own line follows)."""

    def __init__(self, label: str, batch_size: int | None = None, stream=None):
        # sys.stdout is looked up when drawing: KerasTuner deep-copies a trial's callbacks,
        # and a file object cannot be copied.
        self.stream = stream
        super().__init__(label, write=self._draw, every=0.0)
        self.batch_size, self._drawn, self._epoch = batch_size, 0.0, 0
        self._steps, self._batches = None, 0  # batches an epoch, once known; this epoch's

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        now = time.monotonic()
        if now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        # A tf.data input of unknown length: the first epoch counts its batches.
        steps, spent = self.params.get("steps") or self._steps, now - self._epoch_began
        pace = (batch + 1) / spent if spent > 0 else 0.0
        parts = [self.label, f"epoch {self._epoch + 1}/{self.params.get('epochs')}",
                 f"batch {batch + 1}" + (f"/{steps}" if steps else "")]
        if self.batch_size:
            parts.append(f"{pace * self.batch_size:,.0f} img/s")
        if steps and pace:
            parts.append(f"epoch ETA {format_duration((steps - batch - 1) / pace)}")
        if self.last_val is not None:
            parts.append(f"val_accuracy {self.last_val:.4f}")
        self._draw("  ".join(parts))

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch, self._batches = epoch, 0

    def on_epoch_end(self, epoch, logs=None):
        self._steps = self._steps or self._batches
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self._draw("")

    def _draw(self, line: str):
        stream = self.stream or sys.stdout
        stream.write("\r\033[K" + line)  # back to the line's start, clear it, redraw
        stream.flush()


def training_progress(label: str, batch_size: int | None = None,
                      verbose: int = 0) -> list:
    """The progress callbacks for one training: none with ``verbose`` (Keras's own bar shows),
    a live bar on a terminal, plain epoch lines (logged) elsewhere."""
    if verbose:
        return []
    if sys.stdout.isatty():
        return [LiveProgress(label, batch_size)]
    return [EpochProgress(label)]


def trial_line(trial, said: str, seconds: float, total: int | None, times, budget,
               where: str = "") -> str:
    """A trial's closing line: its number, status and outcome, its time, the search's elapsed
    time, the budget left and the ETA, then its hyperparameters."""
    number = int(trial.trial_id) + 1
    remaining = float("inf") if total is None else max(total - number, 0)
    eta = times.mean * remaining if remaining else 0.0
    left = ""
    if budget.limited:
        eta = min(eta, max(budget.remaining(), 0))
        left = f", {budget.describe()}"
    values = " ".join(f"{k}={_short(v)}" for k, v in active_values(trial.hyperparameters).items())
    parent = trial.hyperparameters.values.get("tuner/trial_id")
    if parent is not None:  # a promotion: its configuration is its parent's, already shown
        values = (f"trial {int(parent) + 1} continued to epoch "
                  f"{trial.hyperparameters.values['tuner/epochs']}")
    return (f"trial {trial_label(number, total)} {trial.status.lower():<9} {said}  "
            f"[{seconds:.1f}s{where}, elapsed {format_duration(times.elapsed)}{left}, "
            f"ETA {format_duration(eta)}]  {values}")


def passed_over_line(passed: list[str]) -> str | None:
    """One line for the configurations the oracle passed over before a trial, or None."""
    if len(passed) == 1:
        return f"passed over {passed[0]}"
    if passed:
        return (f"passed over {len(passed)} configurations too slow for the budget, the last "
                f"{passed[-1]}")
    return None


def redrawn_line(reasons: list[str]) -> str | None:
    """One line for the configurations the oracle drew again because they cannot be built."""
    if not reasons:
        return None
    count = "a configuration" if len(reasons) == 1 else f"{len(reasons)} configurations"
    return f"drew again instead of {count} the sizing rejects (the last: {reasons[-1]})"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
