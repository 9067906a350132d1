"""The search: a keras-tuner tuner chosen by name, trials tracked in MLflow, the best retrained."""

import collections
import time
from dataclasses import dataclass

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src import config as kt_config

from autocnn import backbones, data, evaluate, presets, space
from autocnn.config import SearchConfig
from autocnn.errors import ConfigError, SearchError, SizingError
from autocnn.tracking import Registration, Tracker

ORACLES = {
    "random": kt.oracles.RandomSearchOracle,
    "bayesian": kt.oracles.BayesianOptimizationOracle,
}
OBJECTIVE = "val_accuracy"
PIPELINE_BATCH = 64  # what the input pipeline yields; each trial rebatches to its batch_size


@dataclass
class SearchResult:
    run_id: str  # the MLflow parent run
    best_trial_id: str
    best_hyperparameters: dict
    best_val_accuracy: float
    trials_completed: int
    trials_failed: int
    retrain_epochs: int
    metrics: dict  # evaluate.compute_metrics on the test split
    registration: Registration | None
    model: keras.Model


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


def run_search(config: SearchConfig, echo=print,
               dataset: data.Dataset | None = None) -> SearchResult:
    """Search, retrain the best configuration on train + val, evaluate on test, register.

    ``dataset`` is ``config.data`` already loaded, when the caller has it.
    """
    dataset = dataset or data.load(config.data, echo=echo)
    tracker = Tracker(config.tracking_uri, config.project_name)
    echo(dataset.summary())
    if dataset.skipped:
        echo(f"skipped {len(dataset.skipped)} unreadable files: {', '.join(dataset.skipped[:5])}"
             + (" ..." if len(dataset.skipped) > 5 else ""))
    keras.utils.set_random_seed(config.seed)
    tracker.start_run(
        f"search-{config.tuner}", params=config.to_dict(),
        tags={"autocnn.dataset": dataset.name, "autocnn.stage": "search"})
    try:
        _log_data(tracker, dataset)
        result = _search_and_retrain(config, dataset, tracker, echo)
    except BaseException:
        tracker.end_run("FAILED")
        raise
    tracker.end_run()
    return result


def _search_and_retrain(config, dataset, tracker, echo):
    rules = config.space
    if config.preset:
        rules = {**presets.preset(config.preset, dataset.input_shape), **rules}
    if dataset.orientation_matters:  # a flipped 6 is not a 6
        rules = {"flip": "none", **rules}
    weights = backbones.resolve_weights(config.weights)
    hypermodel = space.CNNHyperModel(dataset.input_shape, dataset.num_classes,
                                     max_params=config.max_params, rules=rules, weights=weights)
    check_backbones(hypermodel, weights, echo)
    # keras-tuner prints every failed trial's traceback unless this flag is off (it has no public
    # switch); the progress line gives the reason and the child run keeps the traceback.
    kt_config.DEBUG = config.verbose > 0
    tuner = create_tuner(config, hypermodel, tracker, echo,
                         warm_start=warm_start(config, dataset, rules))
    echo(f"searching with {config.tuner}: up to {config.max_trials} trials of up to "
         f"{config.epochs} epochs; MLflow run {tracker.parent_run_id} in {tracker.tracking_uri}")
    stop_early = keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max",
                                               patience=config.patience)
    train = dataset.pipeline(dataset.train, PIPELINE_BATCH, shuffle=True, seed=config.seed)
    val = dataset.pipeline(dataset.val, PIPELINE_BATCH)
    try:
        # The pipeline shuffles; Keras's own shuffle flag would only warn on a tf.data input.
        tuner.search(train, validation_data=val, epochs=config.epochs, callbacks=[stop_early],
                     shuffle=False, verbose=config.verbose)
    except RuntimeError as err:
        if "consecutive failures" not in str(err):
            raise
        raise SearchError(f"{config.max_failed_trials} trials failed in a row; most common "
                          f"reason: {_most_common_reason(tuner)}. Widen the space or raise "
                          "--max-failed-trials") from None
    trials = tuner.oracle.trials.values()
    completed = [t for t in trials if t.status == "COMPLETED"]
    if not completed:
        raise SearchError(f"no trial succeeded; most common reason: {_most_common_reason(tuner)}")
    best = tuner.oracle.get_best_trials(1)[0]
    best_values = space.active_values(best.hyperparameters)
    tracker.log_params(tracker.parent_run_id, {f"best_{k}": v for k, v in best_values.items()})
    tracker.log_metrics(tracker.parent_run_id, {"best_val_accuracy": best.score,
                                                "trials_completed": len(completed),
                                                "trials_failed": len(trials) - len(completed)})
    echo(f"best trial {int(best.trial_id) + 1}: val_accuracy {best.score:.4f}; retraining on "
         f"train + val for {best.best_step + 1} epochs")
    model, history = retrain(hypermodel, best, dataset, config)
    test = dataset.pipeline(dataset.test, 256)
    metrics = evaluate.compute_metrics(
        dataset.test.labels, predict_classes(model, test), dataset.class_names)
    _log_evaluation(tracker, metrics, history)
    tracker.log_metrics(tracker.parent_run_id, {"model_params": model.count_params()})
    registration = None
    if config.register:
        example = next(iter(dataset.pipeline(dataset.test.take(range(5)), 5)))[0].numpy()
        registration = tracker.register_model(
            model, example, config.registered_name,
            f"test_{config.champion_metric}", metrics[config.champion_metric],
            metadata={"class_names": list(dataset.class_names), "dataset": dataset.name,
                      "input_shape": list(dataset.input_shape)})
    return SearchResult(tracker.parent_run_id, best.trial_id, best_values, best.score,
                        len(completed), len(trials) - len(completed), best.best_step + 1,
                        metrics, registration, model)


def check_backbones(hypermodel, weights, echo=print):
    """Load every backbone the space allows with ``weights`` once, before the first trial: a
    missing weights file fails the search now (WeightsError: which file, where to put it)
    rather than trial by trial. Keras keeps downloads, so the trials then find them."""
    if weights is None or "backbone" not in space.allowed(hypermodel.rules, "family"):
        return
    names = space.allowed(hypermodel.rules, "backbone")
    if weights != "imagenet" and len(names) > 1:
        raise ConfigError(f"--weights {weights}: one weights file fits one backbone, and the "
                          f"space has {len(names)}; choose one with --backbone NAME")
    for name in names:
        entry = backbones.get(name)
        entry.build((*entry.input_size(hypermodel.input_shape[:2]), 3), weights)
        keras.backend.clear_session()
    echo(f"backbone weights ({weights}) ready for {', '.join(names)}")


def warm_start(config, dataset, rules) -> list[dict]:
    """The defaults; a backbone's defaults when backbones join a search of scratch families;
    then (when the space is not the user's own) a few classic presets that fit the input and
    the trial budget."""
    configurations = [{}]
    families = space.allowed(space.with_defaults(rules), "family")
    if "backbone" in families and len(families) > 1:
        configurations.append({"family": "backbone"})
    if config.space or config.preset:
        return configurations
    for name in presets.WARM_START[:min(len(presets.WARM_START), config.max_trials // 4)]:
        values = presets.preset(name, dataset.input_shape)
        try:
            space.size_model(kt.HyperParameters(), dataset.input_shape, dataset.num_classes,
                             config.max_params, {**values, **rules})
        except SizingError:
            continue
        configurations.append(values)
    return configurations


def retrain(hypermodel, trial, dataset, config):
    """Train the trial's configuration afresh on train + val for its best number of epochs."""
    keras.utils.set_random_seed(config.seed)
    keras.backend.clear_session()
    model = hypermodel.build(trial.hyperparameters)
    both = dataset.pipeline(dataset.train.concat(dataset.val), PIPELINE_BATCH, shuffle=True,
                            seed=config.seed)
    history = hypermodel.fit(trial.hyperparameters, model, both, epochs=trial.best_step + 1,
                             shuffle=False, verbose=config.verbose)
    return model, history.history


def predict_classes(model, batches) -> np.ndarray:
    return np.argmax(model.predict(batches, verbose=0), axis=-1)


def _log_evaluation(tracker, metrics, history):
    tracker.log_metrics(tracker.parent_run_id, evaluate.flatten_metrics(metrics))
    for epoch, values in enumerate(zip(*history.values())):
        tracker.log_metrics(tracker.parent_run_id,
                            {f"retrain_{k}": v for k, v in zip(history, values)}, step=epoch)
    fig = evaluate.plot_confusion_matrix(metrics)
    tracker.log_figure(fig, "plots/confusion_matrix.png")
    tracker.log_figure(evaluate.plot_history(history, "Retraining the best model (train + val)"),
                       "plots/retrain_curves.png")
    tracker.log_text(evaluate.format_per_class(metrics), "evaluation/per_class.txt")
    tracker.log_dict(metrics, "evaluation/metrics.json")
    import matplotlib.pyplot as plt

    plt.close("all")


def _log_data(tracker, dataset):
    """The data summary, a grid of samples per class, and any skipped files, on the parent run."""
    from autocnn import inspection

    tracker.log_text(inspection.describe(dataset), "data/summary.txt")
    tracker.log_figure(inspection.plot_samples(dataset), "data/samples.png")
    tracker.log_metrics(tracker.parent_run_id, {"skipped_files": len(dataset.skipped)})
    if dataset.skipped:
        tracker.log_text("\n".join(dataset.skipped) + "\n", "data/skipped_files.txt")


def _most_common_reason(tuner) -> str:
    reasons = collections.Counter(
        failure_reason(t) for t in tuner.oracle.trials.values() if t.status != "COMPLETED")
    return reasons.most_common(1)[0][0] if reasons else "unknown"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
