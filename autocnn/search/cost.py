"""How long a trial will take, predicted from its architecture before it is built.

An epoch's seconds grow with the layers (each has a fixed cost per image: kernel launches,
memory traffic) and with the multiply-adds (the sizing's count). `TrialCost` predicts in those
units and turns them into this machine's seconds with the trials that ran (the median of their
seconds per unit), so the same code serves a CPU and a GPU; before any trial ran it predicts
nothing. On a 2-core CPU the models of the space run from 36 to 1,600 images a second (a
45-fold range); these two terms predict them within a factor of about two.

With a time budget, the random and Bayesian oracles pass over configurations whose trial would
take more than half of the time left for trials, or whose retraining on train + val would not
fit in the time left after it (see oracles.WarmStart): one huge model cannot eat a budget that a
dozen sensible ones would share, and the best trial is one that can be retrained.
"""

import statistics
from dataclasses import dataclass

import keras_tuner as kt

from autocnn.errors import SizingError
from autocnn.space import hypermodel as space

# Only their ratio matters (the trials that ran set the scale): a 2-core CPU's figures.
LAYER_SECONDS = 40e-6  # per image and layer
MAC_SECONDS = 1 / 20e9  # per multiply-add
VALIDATION_SHARE = 1 / 3  # a validation image costs about a third of a training one
AFFORDABLE_SHARE = 0.5  # of the time left for trials, the most one trial may take


@dataclass(frozen=True)
class Estimate:
    seconds: float  # a new configuration's whole trial
    retrain_seconds: float | None  # retraining on train + val at the most epochs; None: none
    params: int
    macs: int


class TrialCost:
    """Predicted seconds of a trial of ``hypermodel`` on ``images`` training and
    ``val_images`` validation images for ``epochs`` epochs (``trial_epochs`` when a new
    configuration's trial trains fewer: the auto tuner's first rung), and of its retraining on
    ``retrain_images`` for ``retrain_epochs`` (default ``epochs``; None images: no
    retraining)."""

    def __init__(self, hypermodel, images: int, val_images: int, epochs: int,
                 retrain_images: int | None = None, trial_epochs: int | None = None,
                 retrain_epochs: int | None = None):
        self.hypermodel = hypermodel
        self.images = images + VALIDATION_SHARE * val_images
        self.epochs = epochs
        self.trial_epochs = trial_epochs or epochs
        self.retrain_images = retrain_images
        self.retrain_epochs = retrain_epochs or epochs
        self._units = {}  # trial id -> units (cached: sizing a model takes milliseconds)

    def units(self, hp: kt.HyperParameters):
        """(units of an epoch, the sizing), or None when unknown: a pretrained backbone (its
        cost is not counted) or an architecture that cannot be built."""
        model = self.hypermodel
        try:
            ops = space.size_model(hp, model.input_shape, model.num_classes, rules=model.rules)
        except SizingError:
            return None
        if any(row.kind == "BackboneInput" for row in ops.rows):
            return None
        per_image = LAYER_SECONDS * len(ops.rows) + MAC_SECONDS * ops.macs
        return per_image * self.images, ops

    def scale(self, trials: dict) -> float | None:
        """Seconds per unit on this machine: the median over ``trials`` (trial id ->
        (hyperparameters, seconds per epoch)); None before any."""
        ratios = []
        for trial_id, (hp, per_epoch) in trials.items():
            if trial_id not in self._units:
                found = self.units(hp)
                self._units[trial_id] = found[0] if found else None
            if self._units[trial_id]:
                ratios.append(per_epoch / self._units[trial_id])
        return statistics.median(ratios) if ratios else None

    def predict(self, hp: kt.HyperParameters, trials: dict) -> Estimate | None:
        """A new configuration's trial and retraining, or None when they cannot be predicted."""
        scale = self.scale(trials)
        found = self.units(hp) if scale else None
        if found is None:
            return None
        units, ops = found
        per_epoch = units * scale
        retrain = (per_epoch * self.retrain_epochs * self.retrain_images / self.images
                   if self.retrain_images is not None else None)
        return Estimate(per_epoch * self.trial_epochs, retrain, ops.params, ops.macs)
