"""The learning-rate schedules a training can have, each a Keras callback built from the base
rate and the epochs it spans: ``"cosine"``, ``"plateau"`` (``"constant"`` has none), and
which of them a training follows (`for_training`)."""

import functools
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


def for_training(own: str | None, validated: bool, planned: bool = False):
    """What makes the learning-rate callback of a training whose hyperparameters ask for the
    ``own`` schedule, or None for a constant rate. Without validation, a plateau schedule
    watches the training loss.

    A training whose epochs the budget plans (``planned``: a last-rung finalist) falls on a
    cosine to the planned end whatever its own schedule. A plateau's cuts follow validation,
    not the budget, and a constant rate never falls, so either would leave the rate high when
    the budget ends the training. Worse, a finalist started from its trial's checkpoint takes
    the rate that trial's plateaus had cut: VGG-13's finalist after a 20-epoch trial scored
    1.24 points lower on its own schedule than on the cosine
    (benchmarks/results/finalist_schedule.md).
    """
    name = trained_schedule(own, planned)
    if name == "plateau" and not validated:
        return functools.partial(plateau_schedule, monitor="loss")
    return SCHEDULES.get(name)


def trained_schedule(own: str | None, planned: bool) -> str | None:
    """The name of the schedule a training follows, given its hyperparameters' ``own``: the
    cosine where the budget plans its epochs (see `for_training`)."""
    return "cosine" if planned else own
