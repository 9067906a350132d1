"""The search: a keras-tuner tuner chosen by name, trials tracked in MLflow, the best retrained."""

import collections
import contextlib
import dataclasses
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src import config as kt_config

from autocnn import (
    backbones,
    data,
    distributed,
    evaluate,
    isolation,
    presets,
    projects,
    sizing,
    space,
)
from autocnn.config import SearchConfig
from autocnn.control import (
    Budget,
    Interrupted,
    StopRequests,
    format_duration,
    share_gpu_memory,
)
from autocnn.cost import VALIDATION_SHARE, TrialCost
from autocnn.errors import ConfigError, SearchError, SizingError
from autocnn.models import predict_probabilities
from autocnn.progress import training_progress
from autocnn.tracking import CHAMPION, Registration, Tracker
from autocnn.tuners import (
    OBJECTIVE,
    StopAt,
    create_tuner,
    distinct_best_trials,
    failure_reason,
)

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
    kept_because: str = ""  # why the best trial's model was kept rather than retrained
    seconds: float = 0.0  # wall-clock time of the whole search
    stopped_by: str | None = None  # "time budget" when it ended the search early
    overhead_seconds: float | None = None  # a trial's mean time beyond training (see tuners)
    retrained_on: str = "train + val"  # or train alone (the last rung: see last_rung)
    # The last rung's finalists: trial id -> validation accuracy after training on all of train.
    finalists: dict = dataclasses.field(default_factory=dict)


@dataclass
class FinalModel:
    """What the final training gave: the trial whose configuration it is, the model, its
    history, the epochs it trained (0: the trial's own model), why the trial's model was kept,
    and the last rung's finalists (trial id -> best validation accuracy)."""
    trial: kt.engine.trial.Trial
    model: keras.Model
    history: dict | None
    epochs: int
    kept_because: str = ""
    finalists: dict = dataclasses.field(default_factory=dict)


def run_search(config: SearchConfig, echo=print,
               dataset: data.Dataset | None = None) -> SearchResult:
    """Search, retrain the best configuration on train + val, evaluate on test, register.

    ``dataset`` is ``config.data`` already loaded, when the caller has it. The same command run
    again resumes the search (see tuners.TrackedTrials); ``config.overwrite`` starts afresh.
    """
    budget = Budget(config.time_budget)
    policy = configure_devices(config.deterministic, config.precision)
    dataset = dataset or data.load(config.data, echo=echo)
    projects.check_resume(config, dataset.fingerprint)  # before anything is touched
    tracker = Tracker(config.tracking_uri, config.project_name)
    if config.register:
        tracker.check_registrable(config.registered_name, dataset.fingerprint)
    echo(dataset.summary())
    if policy != "float32":
        echo(f"precision: {policy} (layers compute in {policy.split('_')[1]}, weights and the "
             "softmax stay float32)")
    if dataset.skipped:
        echo(f"skipped {len(dataset.skipped)} unreadable files: {', '.join(dataset.skipped[:5])}"
             + (" ..." if len(dataset.skipped) > 5 else ""))
    keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy(config.strategy, echo)
    hypermodel = make_hypermodel(config, dataset, strategy)
    check_backbones(hypermodel, hypermodel.weights, echo)
    # keras-tuner prints every failed trial's traceback unless this flag is off (it has no public
    # switch); the progress line gives the reason and the child run keeps the traceback.
    kt_config.DEBUG = config.verbose > 0
    address = distributed.Address.parse(config.oracle_address) if config.chief else None
    with (distributed.keras_tuner_role(address, distributed.CHIEF_ID) if address
          else contextlib.nullcontext()):
        tuner = create_tuner(config, hypermodel, tracker, echo,
                             warm_start=warm_start(config, dataset, search_rules(config, dataset)),
                             budget=budget, strategy=strategy,
                             reserve=_retrain_seconds(config, dataset),
                             finalists=config.finalists if last_rung(config) else 1,
                             cost=TrialCost(hypermodel, len(trial_images(config, dataset)),
                                            len(dataset.val), config.epochs,
                                            _final_images(config, dataset)),
                             isolate=isolation.Isolated(config, tracker) if config.isolate
                             else None)
    tracker.start_run(
        f"search-{config.tuner}", params=config.to_dict(),
        tags={"autocnn.dataset": dataset.name, "autocnn.stage": "search"},
        search_id=projects.record(tuner.project_dir, config, dataset.fingerprint))
    if tuner.oracle.trials:
        echo(f"resuming the search in {tuner.project_dir}: {_finished(tuner)} finished trials "
             "are kept"
             + ("" if tracker.resumed else " (a new MLflow run; the last one had finished)")
             + "; --overwrite starts afresh")
    try:
        _log_data(tracker, dataset)
        serving = (_serve_workers(config, tuner, tracker, address, echo) if address
                   else contextlib.nullcontext())
        result = _search_and_retrain(config, dataset, tracker, tuner, hypermodel, budget, echo,
                                     serving)
    except Interrupted:
        tracker.end_run("KILLED")
        raise
    except KeyboardInterrupt:
        tracker.end_run("KILLED")
        raise Interrupted(_resume_hint(tuner)) from None
    except BaseException:
        tracker.end_run("FAILED")
        raise
    tracker.end_run()
    return result


def search_rules(config: SearchConfig, dataset) -> dict:
    """The user's rules, over a preset's values, with no flips where orientation matters."""
    rules = config.space
    if config.preset:
        rules = {**presets.preset(config.preset, dataset.input_shape), **rules}
    if dataset.orientation_matters:  # a flipped 6 is not a 6
        rules = {"flip": "none", **rules}
    return rules


def make_hypermodel(config: SearchConfig, dataset, strategy=None) -> space.CNNHyperModel:
    """The search space bound to ``dataset`` (batch sizes per replica of ``strategy``)."""
    return space.CNNHyperModel(
        dataset.input_shape, dataset.num_classes, max_params=config.max_params,
        rules=search_rules(config, dataset), weights=backbones.resolve_weights(config.weights),
        strategy=strategy)


def distribution_strategy(name: str, echo=print):
    """The tf.distribute strategy ``--strategy`` names, or None."""
    if name != "mirrored":
        return None
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    devices = ", ".join(strategy.extended.worker_devices)
    echo(f"each trial trains on {strategy.num_replicas_in_sync} replicas ({devices}) with "
         "MirroredStrategy; the batch size searched is per replica")
    return strategy


def run_worker(link, verbose: int | None = None, echo=print) -> int:
    """Run trials for the chief ``link`` reached (see distributed.join) until it says the
    search is over: the trials run."""
    manifest, reason = link.manifest, "error"
    try:
        config = dataclasses.replace(
            SearchConfig.from_dict(manifest["config"]), overwrite=False, workers=0,
            distributed="none", oracle_address="", tuner_dir=link.tuner_dir,
            verbose=manifest["config"]["verbose"] if verbose is None else verbose)
        configure_devices(config.deterministic, config.precision)
        dataset = data.load(config.data, echo=echo)
        tracker = Tracker(link.tracking_uri, config.project_name)
        tracker.parent_run_id, tracker.search_id = manifest["run_id"], manifest["search_id"]
        keras.utils.set_random_seed(config.seed)
        hypermodel = make_hypermodel(config, dataset, distribution_strategy(config.strategy, echo))
        kt_config.DEBUG = config.verbose > 0
        args, kwargs = fit_arguments(config, dataset)
        # keras-tuner reads its settings when the tuner is made and whenever it saves.
        with distributed.keras_tuner_role(link.address, link.worker_id), \
                StopRequests(echo) as stop:
            tuner = create_tuner(config, hypermodel, tracker, echo, strategy=hypermodel.strategy,
                                 stop=stop)
            tuner.link = link
            echo(f"worker {link.worker_id}: running trials of MLflow run "
                 f"{tracker.parent_run_id} for the chief at {link.address}")
            tuner.search(*args, **kwargs)
        reason = tuner.stopped_by or "stopped"
    except KeyboardInterrupt:
        reason = "interrupted"
        raise Interrupted(f"worker {link.worker_id} interrupted; restart it with the same "
                          "--worker-id to take its trial back") from None
    finally:
        link.close(reason)
    echo(f"worker {link.worker_id}: {tuner.trials_run} trials run; the search is over "
         f"({reason})")
    return tuner.trials_run


@contextlib.contextmanager
def _serve_workers(config, tuner, tracker, address, echo):
    """Serve the tuner's oracle at ``address`` to workers (``config.workers`` of them started
    here) for the search within; a local MLflow server for them over a SQLite store."""
    project = Path(tuner.project_dir)
    with contextlib.ExitStack() as stack:
        uri = tracker.tracking_uri
        if uri.startswith("sqlite:"):
            from autocnn.tracking import resolve_tracking_uri

            server = distributed.TrackingServer(uri, resolve_tracking_uri(uri)[1],
                                                project / "mlflow-server.log")
            stack.callback(server.stop)
            uri = server.uri
            echo(f"MLflow tracking server for the workers on {uri} (over {tracker.tracking_uri})")
        chief = distributed.Chief(tuner.oracle, address, _manifest(config, tracker, uri),
                                  config.worker_timeout, config.trial_limit, echo)
        address = chief.listen()
        stack.callback(chief.close)
        tuner.chief = chief
        echo(f"oracle serving on {address}; a worker joins with: autocnn worker "
             f"--oracle-address {address} --worker-id NAME")
        if config.workers:
            tuner.local_workers = distributed.LocalWorkers(
                config.workers, address, project / "workers", distributed.visible_gpus(),
                config.verbose, echo)
            stack.callback(tuner.local_workers.stop)
        yield


def _manifest(config, tracker, tracking_uri) -> dict:
    """What a worker needs to join: the search's settings (paths made absolute), its MLflow
    parent run and the store the workers log to."""
    data_dir = config.data.data_dir
    data_config = dataclasses.replace(config.data,
                                      dataset=data.absolute_source(config.data.dataset),
                                      data_dir=data.absolute_source(data_dir) if data_dir else None)
    settings = dataclasses.replace(config, data=data_config,
                                   tuner_dir=str(Path(config.tuner_dir).resolve()))
    return {"config": dataclasses.asdict(settings), "project_name": config.project_name,
            "search_id": tracker.search_id, "run_id": tracker.parent_run_id,
            "tracking_uri": tracking_uri, "chief_host": socket.gethostname()}


def fit_arguments(config: SearchConfig, dataset) -> tuple[tuple, dict]:
    """What every trial's fit gets: the pipelines, epochs and early stopping."""
    stop_early = keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max",
                                               patience=config.patience)
    train = dataset.pipeline(trial_images(config, dataset), PIPELINE_BATCH, shuffle=True,
                             seed=config.seed)
    val = dataset.pipeline(dataset.val, PIPELINE_BATCH)
    # The pipeline shuffles; Keras's own shuffle flag would only warn on a tf.data input.
    return (train,), dict(validation_data=val, epochs=config.epochs, callbacks=[stop_early],
                          shuffle=False, verbose=config.verbose)


def trial_images(config: SearchConfig, dataset) -> data.Split:
    """The training images every trial trains on: all of them, or ``config.trial_fraction``
    of each class (stratified and seeded, so every trial and worker gets the same ones)."""
    if config.trial_fraction >= 1:
        return dataset.train
    return data.stratified_split(dataset.train, config.trial_fraction, config.seed,
                                 dataset.class_names, dataset.name, "trial subset")[1]


def configure_devices(deterministic: bool = False, precision: str = "float32") -> str:
    """GPU memory grows as needed (control.share_gpu_memory); with ``deterministic``,
    TensorFlow's op determinism (the same numbers from run to run on a GPU too); Keras's dtype
    policy for the models built from now on, ``precision`` resolved (see resolve_precision).
    Returns the policy's name. XLA needs nothing here: Keras's ``jit_compile="auto"`` compiles
    a model that supports it with XLA whenever a GPU is visible."""
    share_gpu_memory()
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resolve_precision(precision: str) -> str:
    """``precision``, with "auto" resolved: mixed_float16 when every visible GPU has Tensor
    Cores (compute capability 7.0 or more), where float16 arithmetic runs several times
    faster; float32 otherwise (on a CPU, mixed precision is slower)."""
    if precision != "auto":
        return precision
    capabilities = gpu_capabilities()
    if capabilities and min(capabilities) >= (7, 0):
        return "mixed_float16"
    return "float32"


def gpu_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each visible GPU."""
    import tensorflow as tf

    return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability",
                                                                     (0, 0)))
            for gpu in tf.config.list_physical_devices("GPU")]


def _search_and_retrain(config, dataset, tracker, tuner, hypermodel, budget, echo,
                        serving=contextlib.nullcontext()):
    limit = f" within {format_duration(config.time_budget)}" if config.time_budget else ""
    if config.trial_fraction < 1:
        echo(f"each trial trains on {len(trial_images(config, dataset))} of the "
             f"{len(dataset.train)} training images (--trial-fraction {config.trial_fraction:g})")
    trials = (f"up to {config.trial_limit} trial{'s' if config.trial_limit > 1 else ''}"
              if config.trial_limit
              else "as many trials as the budget allows")
    echo(f"searching with {config.tuner}: {trials} of up to "
         f"{config.epochs} epochs{limit}; MLflow run {tracker.parent_run_id} in "
         f"{tracker.tracking_uri}")
    args, kwargs = fit_arguments(config, dataset)
    with StopRequests(echo) as tuner.stop, serving:
        try:
            tuner.search(*args, **kwargs)
        except RuntimeError as err:
            if "consecutive failures" not in str(err):
                raise
            raise SearchError(f"{config.max_failed_trials} trials failed in a row; most common "
                              f"reason: {_most_common_reason(tuner)}. Widen the space or raise "
                              "--max-failed-trials") from None
    if tuner.stopped_by == "interrupted":
        raise Interrupted(_resume_hint(tuner))
    trials = tuner.oracle.trials.values()
    completed = [t for t in trials if t.status == "COMPLETED"]
    if tuner.stopped_by == "time budget":
        echo(f"time budget: {len(trials)} trials in {format_duration(budget.elapsed)}, no time "
             "for another")
    elif tuner.stopped_by == "no workers":
        echo(f"the workers left after {len(trials)} trials: the best so far is the result; "
             "start workers and run the same command again to finish the search")
    if not trials and tuner.stopped_by == "time budget":
        raise SearchError(f"the time budget ({format_duration(config.time_budget)}) ended "
                          "before the first trial could start: give --time-budget more time")
    if not trials and tuner.stopped_by == "no workers":
        raise SearchError("no worker ran a trial: start workers (autocnn worker "
                          "--oracle-address ...) and run the same command again")
    if not completed:
        raise SearchError(f"no trial succeeded; most common reason: {_most_common_reason(tuner)}")
    overhead = float(np.mean(list(tuner.overheads.values()))) if tuner.overheads else None
    tracker.log_metrics(tracker.parent_run_id, {
        "trials_completed": len(completed), "trials_failed": len(trials) - len(completed),
        "search_seconds": budget.elapsed,
        **({"mean_overhead_seconds": overhead} if overhead is not None else {})})
    if tuner.stopped_by:
        tracker.set_tag("autocnn.stopped_by", tuner.stopped_by)
    final = _final_model(config, hypermodel, tuner, dataset, echo, budget)
    best, model, history = final.trial, final.model, final.history
    best_values = space.active_values(best.hyperparameters)
    tracker.log_params(tracker.parent_run_id, {f"best_{k}": v for k, v in best_values.items()})
    tracker.log_metrics(tracker.parent_run_id, {
        "best_val_accuracy": best.score,
        **({"final_val_accuracy": final.finalists[best.trial_id]} if final.finalists else {}),
        **{f"finalist_trial_{int(t) + 1}_val_accuracy": v for t, v in final.finalists.items()}})
    trained_on = "train (the epoch validation chose)" if last_rung(config) else "train + val"
    tracker.log_metrics(tracker.parent_run_id, {"model_params": model.count_params()})
    tracker.log_text(model_summary(model, hypermodel, best), "model/summary.txt")
    metrics, registration = None, None
    if config.evaluate:
        test = dataset.pipeline(dataset.test, 256)
        metrics = evaluate.compute_metrics(
            dataset.test.labels, predict_classes(model, test), dataset.class_names)
        _log_evaluation(tracker, metrics, history, trained_on)
    if config.register and metrics is not None:
        registration = _register(config, dataset, tracker, model, metrics, echo)
    tracker.log_metrics(tracker.parent_run_id, {"elapsed_seconds": budget.elapsed})
    return SearchResult(tracker.parent_run_id, best.trial_id, best_values, best.score,
                        len(completed), len(trials) - len(completed), final.epochs,
                        metrics, registration, model, final.kept_because, budget.elapsed,
                        tuner.stopped_by, overhead, trained_on, final.finalists)


def _register(config, dataset, tracker, model, metrics, echo) -> Registration:
    """Register the final model, tagged with its data and headline test metrics; a model no
    better than always answering the most common class is never the champion."""
    example = next(iter(dataset.pipeline(dataset.test.take(range(5)), 5)))[0].numpy()
    chance = evaluate.chance_level(dataset.test.labels, metrics["accuracy"])
    if chance:
        echo(f"warning: {chance}; it is registered without the {CHAMPION} alias")
    return tracker.register_model(
        model, example, config.registered_name, f"test_{config.champion_metric}",
        metrics[config.champion_metric], dataset.fingerprint,
        metadata={"class_names": list(dataset.class_names),
                  "dataset": data.absolute_source(dataset.name),
                  "input_shape": list(dataset.input_shape), "seed": config.data.seed},
        tags={f"test_{k}": f"{metrics[k]:.6f}" for k in ("accuracy", "f1_macro")},
        uncrowned=chance)


def _finished(tuner) -> int:
    """The trials that ended (completed or failed); a running one reruns on resume."""
    return sum(t.status != "RUNNING" for t in tuner.oracle.trials.values())


def _resume_hint(tuner) -> str:
    return (f"search interrupted: {_finished(tuner)} finished trials are kept in "
            f"{tuner.project_dir}; run the same command again to resume (--overwrite starts "
            "afresh)")


def last_rung(config) -> bool:
    """Whether the final training is the search's last rung: trials trained on a share of the
    images (--trial-fraction), so the epoch a trial peaked at says little about training on
    all of them. The best configuration then trains on every training image until validation
    accuracy stalls, rather than on train + val for the trial's best number of epochs."""
    return config.retrain and config.trial_fraction < 1


def _final_images(config, dataset) -> float | None:
    """The final training's images an epoch, in training images (validation costs less)."""
    if not config.retrain:
        return None
    if last_rung(config):
        return len(dataset.train) + VALIDATION_SHARE * len(dataset.val)
    return len(dataset.train) + len(dataset.val)


def _retrain_seconds(config, dataset):
    """How long the final training of a trial's configuration takes, from its seconds per
    epoch (validation included, so a little over); None when there is no retraining. The
    last rung is counted at the trial's best epoch and ``patience`` more."""
    if not config.retrain:
        return None
    if last_rung(config):
        scale = len(dataset.train) / len(trial_images(config, dataset))
        return lambda trial, per_epoch: (per_epoch * scale *
                                         min(config.epochs, trial.best_step + 1 + config.patience))
    scale = (len(dataset.train) + len(dataset.val)) / len(trial_images(config, dataset))
    return lambda trial, per_epoch: per_epoch * (trial.best_step + 1) * scale


def _final_model(config, hypermodel, tuner, dataset, echo, budget) -> FinalModel:
    """The best configuration retrained on train + val (``config.retrain``, when the budget
    leaves time for it), the last rung's winner (see last_rung), or the best trial's own model
    at its best epoch (trained on the trial's images)."""
    best = tuner.oracle.get_best_trials(1)[0]
    head = f"best trial {int(best.trial_id) + 1}: val_accuracy {best.score:.4f}; "
    reason = None if config.retrain else "--no-retrain"
    per_epoch = tuner.epoch_seconds.get(best.trial_id)
    if reason is None and per_epoch and budget.seconds is not None:
        needed = tuner.reserve(best, per_epoch)
        if needed > budget.training_remaining:
            reason = (f"retraining would take about {format_duration(needed)}, the budget has "
                      f"{format_duration(max(budget.training_remaining, 0))} left for it")
    if reason:
        echo(f"{head}its model at epoch {best.best_step + 1} is the result ({reason})")
        return FinalModel(best, tuner.get_best_models(1)[0], None, 0, reason)
    if last_rung(config):
        return _last_rung(config, hypermodel, tuner, dataset, echo, budget)
    echo(f"{head}retraining on train + val for {best.best_step + 1} epochs")
    model, history = retrain(hypermodel, best, dataset, config, _deadline(budget), echo=echo)
    return FinalModel(best, model, history, len(history.get("loss", [])))


def _deadline(budget) -> list:
    return [StopAt(time.time() + budget.training_remaining)] if budget.seconds is not None else []


def _last_rung(config, hypermodel, tuner, dataset, echo, budget) -> FinalModel:
    """The best ``config.finalists`` configurations (distinct), each trained on all the
    training images in turn (see train_in_full) while the budget affords it; the one with the
    best validation accuracy wins."""
    finalists = distinct_best_trials(tuner.oracle, config.finalists)
    names = ", ".join(f"{int(t.trial_id) + 1} ({t.score:.4f})" for t in finalists)
    echo(f"best trial{'s' if len(finalists) > 1 else ''} {names}: training "
         f"{'each' if len(finalists) > 1 else 'it'} on all {len(dataset.train)} training "
         f"images, up to {config.epochs} epochs, stopping {config.patience} epochs after "
         "validation accuracy last improved (the best epoch kept)")
    scores, winner, best_score = {}, None, -1.0
    for rank, trial in enumerate(finalists):
        number = int(trial.trial_id) + 1
        per_epoch = tuner.epoch_seconds.get(trial.trial_id)
        needed = tuner.reserve(trial, per_epoch) if per_epoch else 0.0
        if rank and budget.seconds is not None and needed > budget.training_remaining:
            echo(f"trial {number}: skipped, training it would take about "
                 f"{format_duration(needed)}, the budget has "
                 f"{format_duration(max(budget.training_remaining, 0))} left")
            continue
        started = time.monotonic()
        model, history = train_in_full(hypermodel, trial, dataset, config, _deadline(budget),
                                       label=f"finalist trial {number}", echo=echo)
        score = max(history.get(OBJECTIVE) or [0.0])
        scores[trial.trial_id] = score
        epoch = int(np.argmax(history.get(OBJECTIVE) or [0.0])) + 1
        echo(f"trial {number}: val_accuracy {score:.4f} on all the training images, epoch "
             f"{epoch} of {len(history.get('loss', []))} "
             f"[{format_duration(time.monotonic() - started)}]")
        if score > best_score:  # a tie keeps the better-ranked trial
            winner, best_score = FinalModel(trial, model, history, len(history["loss"])), score
    if len(scores) > 1:
        echo(f"trial {int(winner.trial.trial_id) + 1}'s configuration is the result")
    winner.finalists = scores
    return winner


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


def warm_start(config, dataset, rules) -> dict[str, dict]:
    """The configurations the first trials try, by name: the defaults; a backbone's defaults
    when backbones join a search of scratch families; then (when the space is not the user's
    own) a few classic presets that fit the input and the trial budget."""
    configurations = {"defaults": {}}
    families = space.allowed(space.with_defaults(rules), "family")
    if "backbone" in families and len(families) > 1:
        configurations["backbone defaults"] = {"family": "backbone"}
    if config.space or config.preset:
        return configurations
    starts = presets.WARM_START if config.trial_limit is None else \
        presets.WARM_START[:config.trial_limit // 4]
    for name, changes in starts:
        values = {**presets.preset(name, dataset.input_shape), **changes}
        try:
            space.size_model(kt.HyperParameters(), dataset.input_shape, dataset.num_classes,
                             config.max_params, {**values, **rules})
        except SizingError:
            continue
        shifted = f" with translation {changes['translation']}" if "translation" in changes else ""
        configurations[f"{name}{shifted}"] = values
    return configurations


def _fresh_model(hypermodel, trial, config) -> keras.Model:
    keras.utils.set_random_seed(config.seed)
    keras.backend.clear_session()
    strategy = hypermodel.strategy
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return hypermodel.build(trial.hyperparameters)


def retrain(hypermodel, trial, dataset, config, callbacks=(), echo=print):
    """Train the trial's configuration afresh on train + val for its best number of epochs,
    its progress shown through ``echo`` (see progress.training_progress)."""
    model = _fresh_model(hypermodel, trial, config)
    both = dataset.pipeline(dataset.train.concat(dataset.val), PIPELINE_BATCH, shuffle=True,
                            seed=config.seed)
    callbacks = [*callbacks, *_progress("retraining", trial, hypermodel, config, echo)]
    history = hypermodel.fit(trial.hyperparameters, model, both, epochs=trial.best_step + 1,
                             shuffle=False, verbose=config.verbose, callbacks=callbacks)
    return model, history.history


def train_in_full(hypermodel, trial, dataset, config, callbacks=(), label="training",
                  echo=print):
    """The last rung (see last_rung): the trial's configuration trained afresh on all the
    training images for up to ``config.epochs`` epochs, stopped ``config.patience`` epochs
    after validation accuracy last improved, with the weights of its best epoch; its progress
    shown through ``echo`` as ``label``."""
    callbacks = [*callbacks, *_progress(label, trial, hypermodel, config, echo)]
    model = _fresh_model(hypermodel, trial, config)
    train = dataset.pipeline(dataset.train, PIPELINE_BATCH, shuffle=True, seed=config.seed)
    val = dataset.pipeline(dataset.val, PIPELINE_BATCH)
    stop = keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max", patience=config.patience,
                                         restore_best_weights=True)
    history = hypermodel.fit(trial.hyperparameters, model, train, validation_data=val,
                             epochs=config.epochs, shuffle=False, verbose=config.verbose,
                             callbacks=[stop, *callbacks])
    return model, history.history


def _progress(label, trial, hypermodel, config, echo) -> list:
    return training_progress(label, echo, hypermodel.batch_size(trial.hyperparameters),
                             config.verbose)


def predict_classes(model, batches) -> np.ndarray:
    return np.argmax(predict_probabilities(model, batches), axis=-1)


def _log_evaluation(tracker, metrics, history, trained_on: str):
    tracker.log_metrics(tracker.parent_run_id, evaluate.flatten_metrics(metrics))
    fig = evaluate.plot_confusion_matrix(metrics)
    tracker.log_figure(fig, "plots/confusion_matrix.png")
    if history:
        for epoch, values in enumerate(zip(*history.values())):
            tracker.log_metrics(tracker.parent_run_id,
                                {f"retrain_{k}": v for k, v in zip(history, values)}, step=epoch)
        title = f"The best configuration's final training, on {trained_on}"
        tracker.log_figure(evaluate.plot_history(history, title), "plots/retrain_curves.png")
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
