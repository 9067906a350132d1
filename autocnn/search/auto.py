"""The auto tuner's oracle: many cheap trials, the best promoted to more epochs, and new
configurations drawn mostly near the best so far.

- **Rungs** (asynchronous successive halving, ASHA, Li et al. 2020): a new configuration trains
  for the first rung's few epochs. Whenever a trial is asked for, a trial in the best third of its
  rung that has not gone on yet is promoted: it continues from its checkpoint to the next rung's
  epochs, as a new trial. Nothing waits for a rung to fill, so workers never idle, and a
  configuration reaches the full epochs only after it has beaten two thirds of its rung twice.
- **Prior-guided draws**: the warm starts (the space's defaults and the classic presets) are the
  first population; after them a new configuration is, four times in five, a neighbour of a good
  one (the best of three drawn from those that completed: tournament selection, as regularized
  evolution does; see mutation.py), else a random sample of the space. With a good default
  known, the search starts where good models are instead of among random points; the random
  share keeps it from getting stuck there.

It extends keras-tuner's `Oracle` through its public hook (`populate_space`), so it runs in one
process, with --isolate and on the chief/worker engine like the others, and resumes from its
trials (what was promoted is read back from them). `ContinuedTrials` is the tuner's side: a
promoted trial's model starts from its parent's checkpoint.
"""

import keras_tuner as kt
import numpy as np

from autocnn.search.mutation import mutate
from autocnn.search.oracles import WarmStart, configuration_key

ETA = 3  # a rung keeps the best third, and the next trains three times as long
MUTATION_SHARE = 0.8
TOURNAMENT = 3
DRAWS = 50  # attempts at a configuration not tried yet


def rungs(max_epochs: int, eta: int = ETA, trials: int | None = None) -> list[int]:
    """The epochs each rung trains to: three rungs a factor ``eta`` apart, up to
    ``max_epochs`` (fewer when the epochs are too few to split, or when a limit of ``trials``
    could not fill them)."""
    first = max(1, round(max_epochs / eta**2))
    epochs = [first]
    while epochs[-1] < max_epochs:
        epochs.append(min(max_epochs, epochs[-1] * eta))
    if len(epochs) > 2 and epochs[-1] < 1.5 * epochs[-2]:  # 27 then 30: one rung of 30
        del epochs[-2]
    # One trial reaches the top of L rungs after 1 + eta + ... + eta^(L-1) trials; with fewer
    # allowed, the lowest rungs go: three trials of 20 epochs, not three of 2 none continued.
    while trials is not None and len(epochs) > 1 and trials < sum(eta**k for k in
                                                                  range(len(epochs))):
        del epochs[0]
    return epochs


def rung(trial) -> int:
    return int(trial.hyperparameters.values.get("tuner/rung", 0))


def configuration(values: dict) -> dict:
    """A trial's values without the tuner's own (its rung, epochs, parent)."""
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


class Evolution(kt.Oracle):
    """New configurations: mostly a mutation of a good one so far, sometimes a random one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng = np.random.default_rng(self.seed)

    def populate_space(self, trial_id):
        values = self.draw()
        return {"status": "RUNNING", "values": values} if values is not None else \
            {"status": "STOPPED", "values": None}

    def draw(self) -> dict | None:
        """A configuration no trial has tried, or None when none is left to find."""
        parents = self.parents()
        tried = {configuration_key(t.hyperparameters.values) for t in self.trials.values()}
        for _ in range(DRAWS):
            if parents and self._rng.random() < MUTATION_SHARE:
                drawn = self._rng.choice(len(parents), size=min(TOURNAMENT, len(parents)),
                                         replace=False)
                parent = max((parents[i] for i in drawn), key=lambda p: p[1])[0]
                values = mutate(self.get_space(), parent, self._rng,
                                changes=1 + int(self._rng.random() < 0.3))
            else:
                values = self._random_values()
            if values is not None and configuration_key(values) not in tried:
                return values
        return None

    def parents(self) -> list[tuple[dict, float]]:
        """Each completed configuration once, with its best score."""
        best = {}
        for trial in self.trials.values():
            if trial.status == "COMPLETED" and trial.score is not None:
                key = configuration_key(trial.hyperparameters.values)
                if key not in best or trial.score > best[key][1]:
                    best[key] = (configuration(trial.hyperparameters.values), trial.score)
        return list(best.values())


class AutoOracle(WarmStart, Evolution):
    """Promotions first (see the module's notes), else a warm start, else a draw; every
    trial's values say its rung (``tuner/rung``), the epochs it trains to (``tuner/epochs``),
    from which (``tuner/initial_epoch``) and, for a promotion, whose checkpoint it continues
    (``tuner/trial_id``)."""

    def __init__(self, *args, max_epochs: int, eta: int = ETA, **kwargs):
        super().__init__(*args, **kwargs)
        self.eta, self.rungs = eta, rungs(max_epochs, eta, self.max_trials)

    def populate_space(self, trial_id):
        promoted = self.promotion()
        if promoted is not None:
            return {"status": "RUNNING", "values": promoted}
        response = super().populate_space(trial_id)
        if response["status"] == "RUNNING":
            response["values"] = {**response["values"], "tuner/rung": 0,
                                  "tuner/epochs": self.rungs[0], "tuner/initial_epoch": 0}
        return response

    def new_configurations(self) -> int:
        return sum(rung(t) == 0 for t in self.trials.values())

    def update_trial(self, trial_id, metrics, step=0):
        # keras-tuner reports a trial's best epoch counted from the first epoch of its fit; a
        # continued trial's fit starts at its initial epoch, and its retraining needs them all.
        start = self.trials[trial_id].hyperparameters.values.get("tuner/initial_epoch", 0)
        return super().update_trial(trial_id, metrics, step=step + start)

    def get_best_trials(self, num_trials=1):
        """The best completed trials, each configuration judged by its longest training: a
        trial that went on is superseded by its continuation, even where that scored lower
        (a few epochs' score on a small validation set is the noisier one, and the final
        training would take the few epochs' count)."""
        went_on = {t.hyperparameters.values.get("tuner/trial_id") for t in self.trials.values()
                   if t.status == "COMPLETED" and t.score is not None}
        ranked = super().get_best_trials(len(self.trials))
        return [t for t in ranked if t.trial_id not in went_on][:num_trials]

    def promotion(self) -> dict | None:
        """The values of the next promotion, highest rung first, or None."""
        went_on = {t.hyperparameters.values.get("tuner/trial_id") for t in self.trials.values()}
        for level in reversed(range(len(self.rungs) - 1)):
            done = [t for t in self.trials.values()
                    if rung(t) == level and t.status == "COMPLETED" and t.score is not None]
            best = sorted(done, key=lambda t: t.score, reverse=True)[:len(done) // self.eta]
            for trial in best:
                if trial.trial_id not in went_on:
                    return {**configuration(trial.hyperparameters.values),
                            "tuner/rung": level + 1, "tuner/epochs": self.rungs[level + 1],
                            "tuner/initial_epoch": self.rungs[level],
                            "tuner/trial_id": trial.trial_id}
        return None


class ContinuedTrials:
    """Mixin for a keras-tuner Tuner: a trial trains to its rung's epochs, and a promoted
    trial's model starts from its parent's best checkpoint (as keras-tuner's Hyperband tuner
    does for its brackets)."""

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        if "tuner/epochs" in values:
            kwargs["epochs"] = values["tuner/epochs"]
            kwargs["initial_epoch"] = values["tuner/initial_epoch"]
        return super().run_trial(trial, *args, **kwargs)

    def _build_hypermodel(self, hp):
        model = super()._build_hypermodel(hp)
        parent = hp.values.get("tuner/trial_id")
        if parent is not None and not getattr(model, "rejection", None):
            # Built first, the optimizer takes its state back too (its moments, its step):
            # the trial goes on rather than restarting Adam's warm-up at the parent's weights.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(self._get_checkpoint_fname(parent))
        return model
