"""The learning-rate schedules a training can have, each a Keras callback built from the base
rate and the epochs it spans: ``"cosine"``, ``"plateau"`` (``"constant"`` has none)."""

import math

import keras


def cosine_schedule(base: float, end, start: int = 0) -> keras.callbacks.Callback:
    """Cosine decay of the learning rate from ``base`` at epoch ``start`` towards 0 at ``end``
    (an epoch, or a function giving it, asked at each epoch's start)."""

    def rate(epoch, _):
        span = max((end() if callable(end) else end) - start, 1)
        return base * 0.5 * (1 + math.cos(math.pi * min(max(epoch - start, 0), span) / span))

    return keras.callbacks.LearningRateScheduler(rate)


def plateau_schedule(base: float, end: int = 0, start: int = 0,
                     monitor: str = "val_accuracy") -> keras.callbacks.Callback:
    """The learning rate cut to 0.3x whenever ``monitor`` (validation accuracy; the training
    loss where there is no validation) did not improve for an epoch, down to 1% of ``base``:
    the schedule of AlexNet, VGG and ResNet (who divided by 10 by hand). ``end`` and ``start``
    are unused: it follows the training, not the epoch count."""
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, mode="min" if monitor == "loss" else "max", factor=0.3, patience=1,
        min_lr=base / 100, verbose=0)


SCHEDULES = {"cosine": cosine_schedule, "plateau": plateau_schedule}  # "constant": none
