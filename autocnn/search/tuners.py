"""The tuners: keras-tuner's own, with per-trial progress, MLflow tracking, the time budget,
Ctrl-C and resuming mixed in, and warm starts for the random and Bayesian oracles."""

import logging

import keras
import keras_tuner as kt

from autocnn.config import SearchConfig
from autocnn.control import trial_label
from autocnn.search.auto import AutoOracle, ContinuedTrials
from autocnn.search.budget import Deadline
from autocnn.search.callbacks import (
    FailOnNonFinite,
    StopAt,
    peak_rss_mb,
    release_traced_gradients,
    traced_gradients,
)
from autocnn.search.oracles import ORACLES, WarmStart
from autocnn.search.progress import (
    passed_over_line,
    redrawn_line,
    training_progress,
    trial_line,
)
from autocnn.search.timing import TrialTimes
from autocnn.search.trial_runs import TrialRuns
from autocnn.tracking import outages

log = logging.getLogger(__name__)

OBJECTIVE = "val_accuracy"
# A trial whose tracking server stopped answering mid-trial runs again, up to this many times
# (keras-tuner's retries; every other failure is final, see TrackedTrials.on_trial_end).
TRACKING_RERUNS = 2
TRACKING_WAIT = 600.0  # seconds to wait for the server before the next trial, then stop


class Role:
    """What a tuner is in its search: the search process alone (this class), the chief that
    serves its oracle to workers, or one of those workers (see roles.py). Passed in when the
    tuner is made."""

    reconciles = True  # it makes MLflow agree with the oracle on resume (a worker does not)

    def search(self, tuner, run) -> None:
        run()

    def trial_begins(self, tuner, trial) -> None:
        pass

    def trial_ends(self, tuner, trial, per_epoch) -> None:
        pass


class StopSearch(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TrackedTrials:
    """Mixin for a keras-tuner Tuner: a progress line and one MLflow child run per trial, the
    time budget, Ctrl-C, failed trials on a non-finite loss, and resuming.

    It uses the tuners' public hooks (on_search_begin, pre_create_trial, on_trial_begin,
    run_trial, on_epoch_end, on_trial_end), so the same mixin serves every tuner.

    ``budget``: the search's budget (budget.SearchBudget or budget.Deadline: no new trial starts
    when it would not end in time, the running one stops at its deadline); ``stop``: a
    control.StopRequests (Ctrl-C); ``isolate``: a callable that runs a trial in a fresh process
    (see isolation.py); ``role``: a Role.
    """

    def __init__(self, *args, tracker, total_trials: int | None, budget=None,
                 stop=None, isolate=None, role: Role | None = None, **kwargs):
        self.total_trials, self.stop, self.isolate = total_trials, stop, isolate
        self.budget = budget or Deadline()
        self.role = role or Role()
        self.runs, self.times = TrialRuns(tracker), TrialTimes()
        self.stopped_by = None  # why the search ended before its trials ran out
        self.trials_run = 0  # the trials this process ran to their end
        self._gradients = set()
        super().__init__(*args, **kwargs)
        if isinstance(self.oracle, WarmStart):
            self.oracle.affordable = lambda values: self.budget.too_slow(
                values, self.oracle, self.times.epoch_seconds)
            self.oracle.impossible = lambda values: self.hypermodel.rejection(
                self.oracle.get_space(), values)

    def search(self, *args, **kwargs):
        try:
            self.role.search(self, lambda: super(TrackedTrials, self).search(*args, **kwargs))
        except StopSearch as stop:
            self.stopped_by = stop.reason
            self.on_search_end()
        except KeyboardInterrupt:
            self.runs.kill_all()
            raise

    def on_search_begin(self):
        super().on_search_begin()
        if self.role.reconciles:
            self.runs.reconcile(self.oracle)

    def pre_create_trial(self):
        super().pre_create_trial()
        if self.stop is not None and self.stop.requested:
            raise StopSearch("interrupted")
        if not self.budget.fits(self.times.mean):
            raise StopSearch("time budget")

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.say_passed_over()
        self.role.trial_begins(self, trial)
        self.runs.start(trial, getattr(self.oracle, "warm_names", {}).get(trial.trial_id))
        self.times.begin(trial.trial_id)
        self._gradients = traced_gradients()

    def run_trial(self, trial, *args, **kwargs):
        deadline = self.budget.trial_deadline()
        if self.isolate is not None:
            histories = self.isolate(trial, self.runs.run_id(trial.trial_id), deadline)
            self.times.count_epochs(trial.trial_id,
                                    sum(len(h.history.get("loss", [])) for h in histories))
            return histories
        guards = [FailOnNonFinite()] + ([StopAt(deadline)] if deadline else [])
        label = f"trial {trial_label(int(trial.trial_id) + 1, self.total_trials).strip()}"
        shown = training_progress(label, self.hypermodel.batch_size(
            trial.hyperparameters), kwargs.get("verbose", 0))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *guards, *shown]
        return super().run_trial(trial, *args, **kwargs)

    def on_epoch_begin(self, trial, model, epoch, logs=None):
        super().on_epoch_begin(trial, model, epoch, logs=logs)
        self.times.epoch_begin()

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self.times.epoch_end(trial.trial_id)
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self.runs.log_epoch(trial.trial_id, epoch, logs or {})

    def on_trial_end(self, trial):
        lost = trial.trial_id in self.runs.lost
        if trial.status == "INVALID" and not lost:
            trial.status = "FAILED"  # a trial's own failure would fail again: no rerun
        self.role.trial_ends(self, trial, self.times.so_far(trial.trial_id)[1])
        try:
            super().on_trial_end(trial)
        finally:
            release_traced_gradients(traced_gradients() - self._gradients)
            ended = self.oracle.get_trial(trial.trial_id)
            ended.message = ended.message or trial.message
            if lost and ended.status == "INVALID":  # keras-tuner queued it to run again
                self._rerun(ended)
            else:
                self._record(ended)

    def _rerun(self, trial):
        """A trial that lost its tracking server runs again once the server answers."""
        self.runs.abandon(trial.trial_id)
        self.times.forget(trial.trial_id)
        log.info(f"trial {trial_label(int(trial.trial_id) + 1, self.total_trials).strip()}: "
                 f"the MLflow tracking server stopped answering; the trial runs again once "
                 f"it answers")
        outages.wait_until_answers(self.runs.tracker, TRACKING_WAIT, log.info)

    def _record(self, trial):
        seconds, overhead = self.times.end(trial.trial_id)
        metrics = {"trial_seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        if overhead is not None:
            metrics["overhead_seconds"] = overhead
        said = self.runs.end(trial, metrics)
        self.trials_run += 1
        self.ended(trial, said, seconds)

    def ended(self, trial, said: str, seconds: float, where: str = "") -> None:
        """A trial ended (here, or on a worker ``where`` says): the reserve follows the best
        trials, and its line is shown."""
        self.budget.keep_for_finalists(self.oracle, self.times.epoch_seconds)
        log.info(trial_line(trial, said, seconds, self.total_trials, self.times, self.budget,
                             where))

    def say_passed_over(self) -> None:
        """One line for the configurations the oracle passed over since the last trial."""
        if isinstance(self.oracle, WarmStart):
            passed, self.oracle.passed_over = self.oracle.passed_over, []
            redrawn, self.oracle.redrawn = self.oracle.redrawn, []
            for line in (redrawn_line(redrawn), passed_over_line(passed)):
                if line:
                    log.info(line)

    @property
    def epoch_seconds(self) -> dict:
        return self.times.epoch_seconds

    @property
    def overheads(self) -> dict:
        return self.times.overheads


def create_tuner(config: SearchConfig, hypermodel, tracker, warm_start=({},), strategy=None,
                 **tracking):
    """The tuner named by ``config.tuner``, with TrackedTrials mixed in (``tracking``: its
    budget, stop, isolate and role).

    ``warm_start``: configurations the first trials try, by name (random and Bayesian
    searches);
    ``strategy``: a tf.distribute strategy each trial's model is built and trained under.
    """
    settings = dict(objective=OBJECTIVE, seed=config.seed,
                    max_consecutive_failed_trials=config.max_failed_trials,
                    max_retries_per_trial=TRACKING_RERUNS)
    tracked = dict(hypermodel=hypermodel, directory=config.tuner_dir,
                   project_name=config.project_name, overwrite=config.overwrite,
                   tracker=tracker, total_trials=config.trial_limit,
                   distribution_strategy=strategy, **tracking)
    if config.tuner == "hyperband":
        # Hyperband fills its brackets itself (no warm start here); it derives its trial count
        # from max_epochs, so cap it like the other tuners.
        tuner = type("TrackedHyperband", (TrackedTrials, kt.Hyperband), {})(
            max_epochs=config.epochs, factor=3, **settings, **tracked)
        tuner.oracle.max_trials = config.trial_limit
        return tuner
    if config.tuner == "auto":
        oracle = AutoOracle(max_trials=config.trial_limit, warm_start=warm_start,
                            max_epochs=config.epochs, **settings)
        return type("TrackedAutoTuner", (TrackedTrials, ContinuedTrials, kt.Tuner), {})(
            oracle=oracle, **tracked)
    base = ORACLES[config.tuner]
    oracle = type(f"WarmStart{base.__name__}", (WarmStart, base), {})(
        max_trials=config.trial_limit, warm_start=warm_start, **settings)
    return type("TrackedTuner", (TrackedTrials, kt.Tuner), {})(oracle=oracle, **tracked)


def seed_trial(seed: int, trial) -> None:
    """The trial's seed, whichever process runs it."""
    keras.utils.set_random_seed(seed + int(trial.trial_id))
