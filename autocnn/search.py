"""The search: a keras-tuner tuner chosen by name, trials tracked in MLflow, the best retrained."""

import collections
from dataclasses import dataclass

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src import config as kt_config

from autocnn import backbones, data, evaluate, presets, sizing, space
from autocnn.config import SearchConfig
from autocnn.errors import ConfigError, SearchError, SizingError
from autocnn.tracking import Registration, Tracker
from autocnn.tuners import OBJECTIVE, create_tuner, failure_reason

PIPELINE_BATCH = 64  # what the input pipeline yields; each trial rebatches to its batch_size


@dataclass
class SearchResult:
    run_id: str  # the MLflow parent run
    best_trial_id: str
    best_hyperparameters: dict
    best_val_accuracy: float
    trials_completed: int
    trials_failed: int
    retrain_epochs: int  # 0 when the best trial's own model was kept
    metrics: dict | None  # evaluate.compute_metrics on the test split (None: not evaluated)
    registration: Registration | None
    model: keras.Model


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
    model, history, epochs = _final_model(config, hypermodel, tuner, best, dataset, echo)
    tracker.log_metrics(tracker.parent_run_id, {"model_params": model.count_params()})
    tracker.log_text(model_summary(model, hypermodel, best), "model/summary.txt")
    metrics, registration = None, None
    if config.evaluate:
        test = dataset.pipeline(dataset.test, 256)
        metrics = evaluate.compute_metrics(
            dataset.test.labels, predict_classes(model, test), dataset.class_names)
        _log_evaluation(tracker, metrics, history)
    if config.register and metrics is not None:
        example = next(iter(dataset.pipeline(dataset.test.take(range(5)), 5)))[0].numpy()
        registration = tracker.register_model(
            model, example, config.registered_name,
            f"test_{config.champion_metric}", metrics[config.champion_metric],
            metadata={"class_names": list(dataset.class_names), "dataset": dataset.name,
                      "input_shape": list(dataset.input_shape)})
    return SearchResult(tracker.parent_run_id, best.trial_id, best_values, best.score,
                        len(completed), len(trials) - len(completed), epochs,
                        metrics, registration, model)


def _final_model(config, hypermodel, tuner, best, dataset, echo):
    """The best configuration retrained on train + val (``config.retrain``), or the best
    trial's own model at its best epoch (trained on train alone): model, history, epochs."""
    if not config.retrain:
        echo(f"best trial {int(best.trial_id) + 1}: val_accuracy {best.score:.4f}; its model "
             f"at epoch {best.best_step + 1} is the result (--no-retrain)")
        return tuner.get_best_models(1)[0], None, 0
    echo(f"best trial {int(best.trial_id) + 1}: val_accuracy {best.score:.4f}; retraining on "
         f"train + val for {best.best_step + 1} epochs")
    model, history = retrain(hypermodel, best, dataset, config)
    return model, history, best.best_step + 1


def model_summary(model, hypermodel, trial) -> str:
    """The per-layer sizing table (shapes, parameters, receptive fields) and Keras's summary."""
    hp = kt.HyperParameters.from_config(trial.hyperparameters.get_config())
    sized = space.size_model(hp, hypermodel.input_shape, hypermodel.num_classes,
                             rules=hypermodel.rules)
    lines = []
    model.summary(print_fn=lambda line, *_, **__: lines.append(line), line_length=100)
    return (f"{sizing.format_table(sized)}\n\nKeras summary\n\n" + "\n".join(lines) + "\n")


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
    fig = evaluate.plot_confusion_matrix(metrics)
    tracker.log_figure(fig, "plots/confusion_matrix.png")
    if history:
        for epoch, values in enumerate(zip(*history.values())):
            tracker.log_metrics(tracker.parent_run_id,
                                {f"retrain_{k}": v for k, v in zip(history, values)}, step=epoch)
        tracker.log_figure(evaluate.plot_history(history,
                                                 "Retraining the best model (train + val)"),
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
