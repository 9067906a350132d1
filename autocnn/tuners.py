"""The tuners: keras-tuner's own, with per-trial progress and MLflow tracking mixed in, and warm
starts for the random and Bayesian oracles."""

import time

import keras_tuner as kt
import numpy as np

from autocnn import space
from autocnn.config import SearchConfig
from autocnn.tracking import Tracker

ORACLES = {
    "random": kt.oracles.RandomSearchOracle,
    "bayesian": kt.oracles.BayesianOptimizationOracle,
}
OBJECTIVE = "val_accuracy"


class TrackedTrials:
    """Mixin for a keras-tuner Tuner: a progress line and one MLflow child run per trial.

    It uses only the tuners' public hooks (on_trial_begin, on_epoch_end, on_trial_end), so the
    same mixin serves every tuner.
    """

    def __init__(self, *args, tracker: Tracker, total_trials: int, echo=print, **kwargs):
        self.tracker, self.total_trials, self.echo = tracker, total_trials, echo
        self._runs, self._started, self._logged, self._durations = {}, {}, {}, []
        self._search_started = time.monotonic()
        super().__init__(*args, **kwargs)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        values = space.active_values(trial.hyperparameters)
        self._runs[trial.trial_id] = self.tracker.start_trial(trial.trial_id, values)
        self._logged[trial.trial_id] = set(values)
        self._started[trial.trial_id] = time.monotonic()

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self.tracker.log_epoch(self._runs[trial.trial_id], epoch, logs or {})

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)
        finally:
            self._record(self.oracle.get_trial(trial.trial_id))

    def _record(self, trial):
        seconds = time.monotonic() - self._started.pop(trial.trial_id)
        self._durations.append(seconds)
        values = space.active_values(trial.hyperparameters)
        run_id = self._runs.pop(trial.trial_id)
        logged = self._logged.pop(trial.trial_id)
        # A branch seen for the first time declares its hyperparameters while the model builds.
        self.tracker.log_params(run_id, {k: v for k, v in values.items() if k not in logged})
        metrics, tags = {"trial_seconds": seconds}, {"status": trial.status}
        if trial.status == "COMPLETED":
            metrics.update({"best_val_accuracy": trial.score, "best_epoch": trial.best_step + 1})
            outcome = f"val_accuracy {trial.score:.4f}"
        else:
            tags["failure_reason"] = outcome = failure_reason(trial)
        self.tracker.end_trial(run_id, trial.status, metrics, tags, message=trial.message)
        self.echo(self._progress_line(trial, outcome, seconds, values))

    def _progress_line(self, trial, outcome, seconds, values):
        number = int(trial.trial_id) + 1
        remaining = max(self.total_trials - number, 0)
        eta = np.mean(self._durations) * remaining
        elapsed = time.monotonic() - self._search_started
        hps = " ".join(f"{k}={_short(v)}" for k, v in values.items())
        return (f"trial {number:>3}/{self.total_trials} {trial.status.lower():<9} {outcome}  "
                f"[{seconds:.1f}s, elapsed {_clock(elapsed)}, ETA {_clock(eta)}]  {hps}")


def failure_reason(trial) -> str:
    """The last line of a failed trial's traceback, without the exception's class name."""
    lines = [line for line in (trial.message or "").strip().splitlines() if line.strip()]
    if not lines:
        return "unknown"
    last = lines[-1]
    head, _, rest = last.partition(": ")
    return rest if rest and "Error" in head else last


class WarmStart:
    """Mixin for a keras-tuner Oracle: the first trials try given configurations.

    The first is the space's defaults, a sensible model for the input, so the best trial is
    never worse on validation than the defaults. Uses the oracles' public `populate_space` hook;
    a resumed search that already has those trials goes straight on.
    """

    def __init__(self, *args, warm_start=({},), **kwargs):
        super().__init__(*args, **kwargs)
        self.warm_start = list(warm_start)

    def populate_space(self, trial_id):
        index = len(self.trials)  # this trial is not among them yet
        if index < len(self.warm_start):
            space = self.get_space()
            values = dict(space.values)
            for hp in space.space:
                if hp.name in self.warm_start[index]:
                    values[hp.name] = nearest(hp, self.warm_start[index][hp.name])
            return {"status": "RUNNING", "values": values}
        return super().populate_space(trial_id)


def nearest(hp, value):
    """``value`` if the space allows it, else the closest value it does (a preset's 6 filters
    becomes 16 when the choices are 16, 32, 64): every oracle can then learn from the trial."""
    config = hp.get_config()
    if "value" in config:  # fixed by the user's rules: theirs wins
        return config["value"]
    if "values" in config:
        allowed = config["values"]
        if value in allowed:
            return value
        numbers = [v for v in allowed if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if isinstance(value, (int, float)) and numbers:
            return min(numbers, key=lambda v: abs(v - value))
        return config["default"] if config.get("default") is not None else allowed[0]
    if "min_value" in config:
        return type(config["min_value"])(min(max(value, config["min_value"]),
                                             config["max_value"]))
    return value


def create_tuner(config: SearchConfig, hypermodel, tracker: Tracker, echo=print,
                 warm_start=({},)):
    """The tuner named by ``config.tuner``, with progress and MLflow tracking mixed in.

    ``warm_start``: configurations the first trials try (random and Bayesian searches).
    """
    settings = dict(objective=OBJECTIVE, seed=config.seed,
                    max_consecutive_failed_trials=config.max_failed_trials)
    tracked = dict(hypermodel=hypermodel, directory=config.tuner_dir,
                   project_name=config.project_name, overwrite=config.overwrite,
                   tracker=tracker, total_trials=config.max_trials, echo=echo)
    if config.tuner == "hyperband":
        # Hyperband fills its brackets itself (no warm start here); it derives its trial count
        # from max_epochs, so cap it like the other tuners.
        tuner = type("TrackedHyperband", (TrackedTrials, kt.Hyperband), {})(
            max_epochs=config.epochs, factor=3, **settings, **tracked)
        tuner.oracle.max_trials = config.max_trials
        return tuner
    base = ORACLES[config.tuner]
    oracle = type(f"WarmStart{base.__name__}", (WarmStart, base), {})(
        max_trials=config.max_trials, warm_start=warm_start, **settings)
    return type("TrackedTuner", (TrackedTrials, kt.Tuner), {})(oracle=oracle, **tracked)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
