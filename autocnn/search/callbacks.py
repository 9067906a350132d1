"""What every trial's training gets beside its own callbacks: a failure on a non-finite loss, a
stop at the deadline, and the memory a traced train step would keep for ever given back; and
the final training's plan of its epochs."""

import math
import resource
import threading
import time

import keras

from autocnn.errors import NonFiniteLoss


class FailOnNonFinite(keras.callbacks.Callback):
    """Fail the trial when an epoch's loss is NaN or infinite (any bad batch makes the epoch's
    mean so, hence one check per epoch instead of one per batch)."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} in epoch {epoch + 1} (try a lower "
                                "learning rate, batch norm or gradient-friendlier activations)")


class StopAt(keras.callbacks.Callback):
    """Stop training at a wall-clock time (``time.time()``): the batch in progress ends, the
    partial epoch is validated (so the best epoch is still checkpointed) and fit returns.

    A timer thread sets ``model.stop_training``, which Keras checks after every batch: no Python
    work per batch.
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline, self.stopped, self._timer = deadline, False, None

    def on_train_begin(self, logs=None):
        self._timer = threading.Timer(max(self.deadline - time.time(), 0), self._stop)
        self._timer.daemon = True
        self._timer.start()

    def _stop(self):
        self.stopped = True
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._timer is not None:
            self._timer.cancel()


class EpochPlan(keras.callbacks.Callback):
    """The epochs a training takes before a wall-clock ``deadline`` (``time.time()``): ``end``
    starts as ``planned`` (predicted from the trials' speed), becomes as many as fit once the
    first epoch is timed (at most ``most``), and after each later epoch follows the pace so far;
    training stops there. A learning-rate schedule that reads ``end``
    (schedules.cosine_schedule) then ends with the budget instead of being cut off high. Why
    measure: in a 60-minute search the prediction had its finalist stop 8 minutes early, and on
    a busy machine a 15-minute search's epochs took 32 s to 86 s. ``say(before, end, seconds an
    epoch)`` is told of each change."""

    def __init__(self, planned: int, most: int, deadline: float, say=None):
        super().__init__()
        self.planned = self.end = min(planned, most)
        self.most, self.deadline, self.say = most, deadline, say
        self._started, self._seconds = None, []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self._seconds.append(time.time() - self._started)
        done, before = len(self._seconds), self.end
        # The first epoch also traces the model's functions: the later ones set the pace.
        paced = self._seconds[1:] or self._seconds
        pace = max(sum(paced) / len(paced), 1e-9)
        left = self.deadline - time.time()  # infinite: a plan of ``most`` epochs, no deadline
        fit = self.most if math.isinf(left) else done + int(max(left, 0) // pace)
        # After the first epoch, the end grows only as far as keeps the schedule's progress
        # (epochs done / end) from going back: the rate never rises again.
        grown = self.most if done == 1 else before * done // (done - 1)
        self.end = max(done, min(self.most, fit, grown))
        if self.end != before and self.say is not None:
            self.say(before, self.end, pace)
        if self.params is not None:  # the callbacks share it: progress lines count to the end
            self.params["epochs"] = self.end
        if done >= self.end:
            self.model.stop_training = True


def traced_gradients() -> set:
    """The names of the custom gradients TensorFlow has registered so far."""
    registry = getattr(_tf_ops(), "_gradient_registry", None)
    return set(getattr(registry, "_registry", {}))


def release_traced_gradients(names) -> None:
    """Forget custom gradients registered while a trial's functions were traced.

    Each trace of a Keras train step registers a custom gradient (the optimizer's all-reduce of
    the gradients) in TensorFlow's global registry, which never lets go of it, and it holds the
    whole traced graph: about 10 MiB a trial on a small CNN, for ever. Once traced, the graph
    no longer needs the entry. A TensorFlow without that private registry is left alone.
    """
    registry = getattr(getattr(_tf_ops(), "_gradient_registry", None), "_registry", None)
    if registry is None:
        return
    for name in names:
        if name.startswith("CustomGradient-"):
            registry.pop(name, None)


def _tf_ops():
    from tensorflow.python.framework import ops

    return ops


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
