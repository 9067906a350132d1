"""The one owner of a search's time budget: what still fits, the time kept for the final
training, a trial's deadline, the final training's share, and the configurations too slow for
what is left.

Every process of a search asks it: the search process (alone or as the chief) holds the
wall-clock budget and keeps the reserve; a worker follows the deadline the chief sends; an
isolated trial's process has the fixed deadline its trial was given. Without ``--time-budget``
every answer is "it fits" and no deadline is set.
"""

import time

import numpy as np

from autocnn.control import format_duration
from autocnn.search import auto
from autocnn.search import cost as cost_module
from autocnn.search.callbacks import EpochPlan, StopAt
from autocnn.search.oracles import distinct_best_trials

# On the last rung, the most of the training time the finalists' reserve may hold. A full-data
# finalist costs many trials (four at a quarter of the images, times its epochs), so an uncapped
# reserve left a short search two trials; above the cap the finalists train until the budget's
# end instead, which early stopping's best epoch makes safe (a retraining on train + val has no
# best epoch to fall back on: it keeps its whole reserve).
RESERVE_SHARE = 0.5


class Clock:
    """A wall-clock budget for a whole search command, from its start.

    Trials end ``reserve`` seconds early, to leave time for the final training of the best
    configurations, and ``finish`` seconds more for evaluating, logging and registering the
    result (5% of the budget, at least 5 s and at most a minute).
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
        """Seconds left for training (trials and the final training): all but the finish."""
        return self.remaining - self.finish

    @property
    def search_remaining(self) -> float:
        """Seconds left for trials: the training time less the reserve."""
        return self.training_remaining - self.reserve

    def fits(self, seconds: float) -> bool:
        return seconds <= self.search_remaining

    def describe(self) -> str:
        if self.seconds is None:
            return ""
        return f"{format_duration(max(self.remaining, 0))} of {format_duration(self.seconds)} left"


class SearchBudget:
    """The search process's budget (alone or as the chief): ``clock``, a Clock; ``final``: the
    final training's seconds given a trial and its seconds per epoch (None: no final
    training), kept for the ``finalists`` best trials so far; ``cost``: a cost.TrialCost that
    predicts a configuration's seconds before it runs; ``capped``: whether the reserve holds
    at most RESERVE_SHARE of the training time (the last rung's); ``full_epoch``: a final
    training's seconds per epoch given its trial's (None: not predicted)."""

    def __init__(self, clock: Clock, final=None, finalists: int = 1, cost=None,
                 capped: bool = False, full_epoch=None):
        self.clock, self.final, self.finalists, self.cost = clock, final, finalists, cost
        self.capped, self.full_epoch = capped, full_epoch

    @property
    def limited(self) -> bool:
        return self.clock.seconds is not None

    @property
    def elapsed(self) -> float:
        return self.clock.elapsed

    def describe(self) -> str:
        return self.clock.describe()

    def remaining(self) -> float:
        return self.clock.remaining

    def fits(self, seconds: float) -> bool:
        """Whether a trial of ``seconds`` still ends before the reserve."""
        return self.clock.fits(seconds)

    def trial_deadline(self) -> float | None:
        """The wall-clock time (time.time()) trials stop at, or None."""
        return time.time() + self.clock.search_remaining if self.limited else None

    def keep_for_finalists(self, oracle, epoch_seconds: dict) -> None:
        """Keep time for the final training of the best trials so far."""
        if not self.limited or self.final is None or not epoch_seconds:
            return
        mean = np.mean(list(epoch_seconds.values()))
        self.clock.reserve = self._within_cap(sum(
            self.final(trial, epoch_seconds.get(trial.trial_id, mean))
            for trial in distinct_best_trials(oracle, self.finalists)))

    def _within_cap(self, seconds: float) -> float:
        if not self.capped:
            return seconds
        return min(seconds, RESERVE_SHARE * (self.clock.seconds - self.clock.finish))

    def final_training_refused(self, trial, per_epoch: float | None) -> str | None:
        """Why the final training of ``trial`` no longer fits, or None when it does.

        With a capped reserve the final training may be cut by the budget's end, keeping its
        best epoch: it is worth having once it can take as many steps as the trial took."""
        if not self.limited or self.final is None or not per_epoch:
            return None
        needed, left = self.final(trial, per_epoch), self.clock.training_remaining
        what = "training it"
        if self.capped and needed > left:
            needed = min(needed, per_epoch * (trial.best_step + 1))
            what = "training it on all the images for as many steps as its trial took"
        if needed <= left:
            return None
        return (f"{what} would take about {format_duration(needed)}, the budget has "
                f"{format_duration(max(left, 0))} left for it")

    def final_epochs(self, per_epoch: float | None, epochs: int) -> int:
        """The epochs a final training can take in the time left, at most ``epochs``: a
        learning-rate schedule over them then ends with the budget, instead of being cut off
        halfway (a cosine schedule's last, slow epochs are where it gains the most)."""
        if not self.limited or self.full_epoch is None or not per_epoch:
            return epochs
        fit = int(self.clock.training_remaining // self.full_epoch(per_epoch))
        return max(1, min(epochs, fit))

    def final_plan(self, per_epoch: float | None, epochs: int, say=None) -> EpochPlan | None:
        """A final training's plan of at most ``epochs`` (see callbacks.EpochPlan): first
        `final_epochs`, then as many as its epochs' measured pace says fit; None without a
        budget."""
        if not self.limited:
            return None
        return EpochPlan(self.final_epochs(per_epoch, epochs), epochs,
                         time.time() + self.clock.training_remaining, say)

    def final_deadline(self) -> list:
        """The callbacks that end the final training with the budget."""
        return [StopAt(time.time() + self.clock.training_remaining)] if self.limited else []

    def too_slow(self, values: dict, oracle, epoch_seconds: dict) -> str | None:
        """Why a trial of ``values`` is too slow for the budget, or None when it is not (or
        cannot be predicted yet): its trial must take at most half of the time left for
        trials, and its final training fit in the time left after it."""
        if not self.limited or self.cost is None:
            return None
        hp = oracle.get_space()
        hp.values = dict(values)
        ran = {tid: (oracle.trials[tid].hyperparameters, seconds)
               for tid, seconds in epoch_seconds.items() if tid in oracle.trials}
        estimate = self.cost.predict(hp, ran)
        if estimate is None:
            return None
        left = max(self.clock.search_remaining, 0)
        after = max(self.clock.training_remaining - estimate.seconds, 0)
        model = describe_model(values.get("family", ""), estimate)
        if estimate.seconds > cost_module.AFFORDABLE_SHARE * left:
            return (f"{model}: its trial would take about {format_duration(estimate.seconds)}, "
                    f"more than half of the {format_duration(left)} left for trials")
        if estimate.retrain_seconds is not None and estimate.retrain_seconds > after:
            return (f"{model}: retraining it would take about "
                    f"{format_duration(estimate.retrain_seconds)}, more than the "
                    f"{format_duration(after)} left after its trial")
        return None


class Deadline:
    """A worker's or an isolated trial's budget: trials end at ``deadline()`` (time.time(), or
    None), which the search process decides; the reserve is the search process's to keep."""

    limited = False  # no clock of its own: the trial line shows no budget left

    def __init__(self, deadline=lambda: None):
        self.deadline = deadline

    def fits(self, seconds: float) -> bool:
        end = self.deadline()
        return end is None or time.time() + seconds <= end

    def trial_deadline(self) -> float | None:
        return self.deadline()

    def keep_for_finalists(self, oracle, epoch_seconds: dict) -> None:
        pass

    def too_slow(self, values: dict, oracle, epoch_seconds: dict) -> str | None:
        return None

    def describe(self) -> str:
        return ""


def describe_model(family: str, estimate) -> str:
    article = "an" if family[:1] in tuple("aeiou") else "a"
    return (f"{article} {family} model ({estimate.params:,} parameters, "
            f"{estimate.macs / 1e6:,.1f}M multiply-adds an image)")


def final_images(config, dataset) -> float | None:
    """The final training's images an epoch, in training images (validation costs less)."""
    if not config.retrain:
        return None
    if last_rung(config) and not final_on_val(config):
        return len(dataset.train) + cost_module.VALIDATION_SHARE * len(dataset.val)
    return len(dataset.train) + len(dataset.val)


def final_seconds(config, dataset, trial_images: int):
    """How long the final training of a trial's configuration takes, from its seconds per
    epoch on ``trial_images`` images (validation included, so a little over); None when there
    is no final training. The last rung is counted at the trial's best epoch and ``patience``
    more."""
    if not config.retrain:
        return None
    if last_rung(config):
        scale = _finalist_images(config, dataset) / trial_images
        return lambda trial, per_epoch: (per_epoch * scale *
                                         min(config.epochs, trial.best_step + 1 + config.patience))
    scale = (len(dataset.train) + len(dataset.val)) / trial_images
    return lambda trial, per_epoch: per_epoch * (trial.best_step + 1) * scale


def full_epoch_seconds(config, dataset, trial_images: int):
    """A last-rung finalist's seconds per epoch on all the training images (and the validation
    images, see `final_on_val`), from its trial's on ``trial_images`` (validated on the whole
    validation split, as a finalist on train alone is); None off the last rung."""
    if not last_rung(config):
        return None
    share = cost_module.VALIDATION_SHARE * len(dataset.val)
    scale = final_images(config, dataset) / (trial_images + share)
    return lambda per_epoch: per_epoch * scale


def _finalist_images(config, dataset) -> int:
    return len(dataset.train) + (len(dataset.val) if final_on_val(config) else 0)


def expected_final_epochs(config, first_rung: int | None) -> int:
    """The epochs a new configuration's final training is expected to take, as
    `final_seconds` counts them: on the last rung, its trial's best epoch and ``patience``
    more; a first-rung trial's best epoch is at most that rung's last."""
    if last_rung(config) and first_rung is not None:
        return min(config.epochs, first_rung + config.patience)
    return config.epochs


def last_rung(config) -> bool:
    """Whether the final training is the search's last rung: trials trained on a share of the
    images (--trial-fraction), so the epoch a trial peaked at says little about training on
    all of them. The best configuration then trains on every training image until validation
    accuracy stalls, rather than on train + val for the trial's best number of epochs."""
    return config.retrain and config.trial_fraction < 1


def final_on_val(config) -> bool:
    """Whether the last rung is its best trial alone, trained on train + val to its last epoch
    (``config.final_data``; auto: where a time budget plans the finalist's epochs). Its
    learning rate then falls on a cosine to the planned end, near where validation would
    have chosen to stop, and the 25% more images gained VGG-13 on Fashion-MNIST 0.45 and
    0.47 points of test accuracy at the same number of steps
    (benchmarks/results/finalist_data.md). Without a budget, validation still chooses the
    epoch and the winner among the finalists."""
    if not last_rung(config) or config.final_data == "train":
        return False
    return config.final_data == "train+val" or config.time_budget is not None


def for_search(config, dataset, hypermodel, trial_images: int, clock: Clock) -> SearchBudget:
    """The search process's budget for ``config`` on ``dataset``."""
    first_rung = (auto.rungs(config.epochs, trials=config.trial_limit)[0]
                  if config.tuner == "auto" else None)
    cost = cost_module.TrialCost(hypermodel, trial_images, len(dataset.val), config.epochs,
                                 final_images(config, dataset), first_rung,
                                 expected_final_epochs(config, first_rung))
    return SearchBudget(clock, final_seconds(config, dataset, trial_images),
                        config.finalists if last_rung(config) and not final_on_val(config)
                        else 1, cost,
                        capped=last_rung(config),
                        full_epoch=full_epoch_seconds(config, dataset, trial_images))
