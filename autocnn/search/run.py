"""The search from start to end: the bootstrap, a keras-tuner tuner chosen by name with its
trials tracked in MLflow, the final training of the best configuration, its evaluation on the
test split and its registration."""

import collections
import contextlib
import dataclasses
import logging
from dataclasses import dataclass

import keras
import numpy as np

from autocnn import data
from autocnn import metrics as evaluate
from autocnn.config import SearchConfig
from autocnn.control import StopRequests, format_duration
from autocnn.devices import describe_machine
from autocnn.distributed import protocol
from autocnn.errors import Interrupted, SearchError
from autocnn.search import budget as budgets
from autocnn.search import isolation, projects
from autocnn.search.callbacks import release_traced_gradients, traced_gradients
from autocnn.search.final import final_model, model_summary
from autocnn.search.outcome import (
    log_data,
    log_evaluation,
    log_explanations,
    log_report,
    probabilities_on_test,
    register,
)
from autocnn.search.prepare import (
    bootstrap,
    check_backbones,
    describe_class_weights,
    fit_arguments,
    search_rules,
    trial_images,
    warm_start,
)
from autocnn.search.roles import ChiefRole
from autocnn.search.trial_runs import failure_reason
from autocnn.search.tuners import create_tuner
from autocnn.space.hypermodel import active_values
from autocnn.tracking import Registration, Tracker
from autocnn.tracking.store import redact

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    run_id: str  # the MLflow parent run
    best_trial_id: str
    best_hyperparameters: dict
    best_val_accuracy: float
    trials_completed: int
    trials_failed: int
    retrain_epochs: int  # 0 when the best trial's own model was kept
    metrics: dict | None  # metrics.compute_metrics on the test split (None: not evaluated)
    registration: Registration | None
    model: keras.Model
    kept_because: str = ""  # why the best trial's model was kept rather than retrained
    seconds: float = 0.0  # wall-clock time of the whole search
    stopped_by: str | None = None  # "time budget" when it ended the search early
    overhead_seconds: float | None = None  # a trial's mean time beyond training (see timing)
    retrained_on: str = "train + val"  # or train alone (the last rung: see budget.final_on_val)
    # The last rung's finalists: trial id -> validation accuracy after training on all of train.
    finalists: dict = dataclasses.field(default_factory=dict)
    report: str = ""  # the HTML report's path on disk


def run_search(config: SearchConfig, dataset: data.Dataset | None = None) -> SearchResult:
    """Search, retrain the best configuration on train + val, evaluate on test, register.

    ``dataset`` is ``config.data`` already loaded, when the caller has it. The same command run
    again resumes the search (see tuners.TrackedTrials); ``config.overwrite`` starts afresh.
    """
    clock = budgets.Clock(config.time_budget)  # the budget counts from the command's start
    prepared = bootstrap(config, dataset)
    dataset, hypermodel = prepared.dataset, prepared.hypermodel
    projects.check_resume(config, dataset.fingerprint)  # before anything is touched
    tracker = Tracker(config.tracking_uri, config.project_name)
    if config.register:
        tracker.check_registrable(config.registered_name, dataset.fingerprint)
    _describe(prepared)
    check_backbones(hypermodel, hypermodel.weights)
    stop = StopRequests()
    tuner = _tuner(prepared, tracker, clock, stop)
    tracker.start_run(
        f"search-{config.tuner}", params={**config.to_dict(),
                                          "tracking_uri": redact(config.tracking_uri)},
        tags={"autocnn.dataset": dataset.name, "autocnn.stage": "search",
              "autocnn.machine": describe_machine(),
              "autocnn.class_weights": _weights_tag(hypermodel.class_weight)},
        search_id=projects.record(tuner.project_dir, config, dataset.fingerprint))
    if tuner.oracle.trials:
        log.info(f"resuming the search in {tuner.project_dir}: {_finished(tuner)} finished trials "
                 "are kept"
                 + ("" if tracker.resumed else " (a new MLflow run; the last one had finished)")
                 + "; --overwrite starts afresh")
    try:
        with tracker.system_metrics():
            log_data(tracker, dataset)
            with stop:
                _search(config, dataset, tracker, tuner)
            result = _finish(config, dataset, tracker, tuner, hypermodel)
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


def _weights_tag(weights: dict | None) -> str:
    """The class weights every training used, for the MLflow UI ("none": all alike)."""
    if weights is None:
        return "none"
    return ", ".join(f"{index}: {weight:.3f}" for index, weight in weights.items())


def _describe(prepared) -> None:
    dataset, precision = prepared.dataset, prepared.precision
    log.info(dataset.summary())
    if precision != "float32":
        log.info(f"precision: {precision} (layers compute in {precision.split('_')[1]}, weights "
                 "and the softmax stay float32)")
    weighed = describe_class_weights(prepared.hypermodel.class_weight, dataset)
    if weighed:
        log.info(weighed)
    if dataset.skipped:
        shown = ", ".join(dataset.skipped[:5]) + (" ..." if len(dataset.skipped) > 5 else "")
        log.info(f"skipped {len(dataset.skipped)} unreadable files: {shown}")


def _tuner(prepared, tracker, clock, stop):
    """The search process's tuner: the search alone, or the chief of ``config.oracle_address``
    (keras-tuner reads its role from the environment when the tuner is made)."""
    config, dataset, hypermodel = prepared.config, prepared.dataset, prepared.hypermodel
    images = len(trial_images(config, dataset))
    budget = budgets.for_search(config, dataset, hypermodel, images, clock)
    address = protocol.Address.parse(config.oracle_address) if config.chief else None
    with (protocol.keras_tuner_role(address, protocol.CHIEF_ID) if address
          else contextlib.nullcontext()):
        return create_tuner(
            config, hypermodel, tracker,
            warm_start=warm_start(config, dataset, search_rules(config, dataset)),
            budget=budget, stop=stop, strategy=prepared.strategy,
            isolate=isolation.Isolated(config, tracker) if config.isolate else None,
            role=ChiefRole(config, tracker, address) if address else None)


def _search(config, dataset, tracker, tuner):
    limit = f" within {format_duration(config.time_budget)}" if config.time_budget else ""
    if config.trial_fraction < 1:
        log.info(f"each trial trains on {len(trial_images(config, dataset))} of the "
                 f"{len(dataset.train)} training images (--trial-fraction "
                 f"{config.trial_fraction:g})")
    trials = (f"up to {config.trial_limit} trial{'s' if config.trial_limit > 1 else ''}"
              if config.trial_limit
              else "as many trials as the budget allows")
    log.info(f"searching with {config.tuner}: {trials} of up to "
             f"{config.epochs} epochs{limit}; MLflow run {tracker.parent_run_id} in "
             f"{redact(tracker.tracking_uri)}")
    args, kwargs = fit_arguments(config, dataset)
    try:
        tuner.search(*args, **kwargs)
    except RuntimeError as err:
        if "consecutive failures" not in str(err):
            raise
        raise SearchError(f"{config.max_failed_trials} trials failed in a row; most common "
                          f"reason: {_most_common_reason(tuner)}. Widen the space or raise "
                          "--max-failed-trials") from None


def _finish(config, dataset, tracker, tuner, hypermodel) -> SearchResult:
    """After the trials: the final training, its evaluation on the test split and its
    registration, all logged to the parent run."""
    trials, completed = _ended_trials(config, tuner)
    budget = tuner.budget
    overhead = float(np.mean(list(tuner.overheads.values()))) if tuner.overheads else None
    tracker.log_metrics(tracker.parent_run_id, {
        "trials_completed": len(completed), "trials_failed": len(trials) - len(completed),
        "search_seconds": budget.elapsed,
        **({"mean_overhead_seconds": overhead} if overhead is not None else {})})
    if tuner.stopped_by:
        tracker.set_tag("autocnn.stopped_by", tuner.stopped_by)
    traced = traced_gradients()
    final = final_model(config, hypermodel, tuner, dataset, budget)
    # As after each trial: a process that searches again (a pipeline, a notebook) keeps none
    # of this training's graphs.
    release_traced_gradients(traced_gradients() - traced)
    trained_on = _trained_on(config)
    _log_final(tracker, final, hypermodel, trained_on)
    metrics, registration = None, None
    if config.evaluate:
        probabilities = probabilities_on_test(final.model, dataset)
        metrics = evaluate.compute_metrics(
            dataset.test.labels, probabilities.argmax(axis=-1), dataset.class_names)
        log_evaluation(tracker, metrics, final.history, trained_on)
        if config.explain:
            log_explanations(tracker, final.model, dataset, probabilities)
    if config.register and metrics is not None:
        registration = register(config, dataset, tracker, final.model, metrics)
    tracker.log_metrics(tracker.parent_run_id, {"elapsed_seconds": budget.elapsed})
    report = log_report(tracker, tuner.project_dir)
    best = final.trial
    return SearchResult(
        run_id=tracker.parent_run_id, best_trial_id=best.trial_id,
        best_hyperparameters=active_values(best.hyperparameters), best_val_accuracy=best.score,
        trials_completed=len(completed), trials_failed=len(trials) - len(completed),
        retrain_epochs=final.epochs, metrics=metrics, registration=registration,
        model=final.model, kept_because=final.kept_because, seconds=budget.elapsed,
        stopped_by=tuner.stopped_by, overhead_seconds=overhead, retrained_on=trained_on,
        finalists=final.finalists, report=str(report))


def _trained_on(config) -> str:
    if budgets.final_on_val(config):
        return "train + val (its last epoch)"
    return "train (the epoch validation chose)" if budgets.last_rung(config) else "train + val"


def _ended_trials(config, tuner) -> tuple[list, list]:
    """The trials and the completed ones; what stopped the search said, or SearchError when
    nothing came of it."""
    if tuner.stopped_by == "interrupted":
        raise Interrupted(_resume_hint(tuner))
    trials = list(tuner.oracle.trials.values())
    completed = [t for t in trials if t.status == "COMPLETED"]
    if tuner.stopped_by == "time budget":
        log.info(f"time budget: {len(trials)} trials in {format_duration(tuner.budget.elapsed)}, "
                 "no time for another")
    elif tuner.stopped_by == "no workers":
        log.info(f"the workers left after {len(trials)} trials: the best so far is the result; "
                 "start workers and run the same command again to finish the search")
    if not trials and tuner.stopped_by == "time budget":
        raise SearchError(f"the time budget ({format_duration(config.time_budget)}) left no "
                          f"time for a first trial after {format_duration(tuner.budget.elapsed)} "
                          "of set-up: give --time-budget more time")
    if not trials and tuner.stopped_by == "no workers":
        raise SearchError("no worker ran a trial: start workers (autocnn worker "
                          "--oracle-address ...) and run the same command again")
    if not completed:
        raise SearchError(f"no trial succeeded; most common reason: {_most_common_reason(tuner)}")
    return trials, completed


def _log_final(tracker, final, hypermodel, trained_on: str) -> None:
    best, run = final.trial, tracker.parent_run_id
    values = active_values(best.hyperparameters)
    tracker.log_params(run, {f"best_{k}": v for k, v in values.items()}
                       | ({"final_lr_schedule": final.lr_schedule} if final.lr_schedule else {})
                       | ({"final_trained_on": trained_on} if final.epochs else {}))
    tracker.log_metrics(run, {
        "best_val_accuracy": best.score, "model_params": final.model.count_params(),
        **({"final_val_accuracy": final.finalists[best.trial_id]} if final.finalists else {}),
        **{f"finalist_trial_{int(t) + 1}_val_accuracy": v for t, v in final.finalists.items()}})
    tracker.log_text(model_summary(final.model, hypermodel, best), "model/summary.txt")


def _finished(tuner) -> int:
    """The trials that ended (completed or failed); a running one reruns on resume."""
    return sum(t.status != "RUNNING" for t in tuner.oracle.trials.values())


def _resume_hint(tuner) -> str:
    return (f"search interrupted: {_finished(tuner)} finished trials are kept in "
            f"{tuner.project_dir}; run the same command again to resume (--overwrite starts "
            "afresh)")


def _most_common_reason(tuner) -> str:
    reasons = collections.Counter(
        failure_reason(t) for t in tuner.oracle.trials.values() if t.status != "COMPLETED")
    return reasons.most_common(1)[0][0] if reasons else "unknown"
