"""The tuners: keras-tuner's own, with per-trial progress, MLflow tracking, the time budget,
Ctrl-C and resuming mixed in, and warm starts for the random and Bayesian oracles."""

import math
import re
import resource
import threading
import time

import keras
import keras_tuner as kt
import numpy as np

from autocnn import cost as cost_module
from autocnn import space
from autocnn.config import SearchConfig
from autocnn.control import Budget, format_duration, trial_label
from autocnn.progress import training_progress
from autocnn.tracking import Tracker

ORACLES = {
    "random": kt.oracles.RandomSearchOracle,
    "bayesian": kt.oracles.BayesianOptimizationOracle,
}
OBJECTIVE = "val_accuracy"


class TrackedTrials:
    """Mixin for a keras-tuner Tuner: a progress line and one MLflow child run per trial, the
    time budget, Ctrl-C, failed trials on a non-finite loss, and resuming.

    It uses the tuners' public hooks (on_search_begin, pre_create_trial, on_trial_begin,
    run_trial, on_epoch_end, on_trial_end), so the same mixin serves every tuner.

    ``budget``: the wall-clock Budget (no new trial starts when it would not end in time, the
    running one stops at it); ``stop``: a control.StopRequests (Ctrl-C); ``isolate``: a callable
    that runs a trial in a fresh process (see isolation.py); ``reserve``: seconds to keep for
    retraining, given a trial and its seconds per epoch, kept for the ``finalists`` best trials;
    ``cost``: a cost.TrialCost, with which the oracle passes over configurations too slow for the
    budget.
    """

    def __init__(self, *args, tracker: Tracker, total_trials: int | None, echo=print,
                 budget: Budget | None = None, stop=None, isolate=None, reserve=None,
                 cost=None, finalists: int = 1, **kwargs):
        self.tracker, self.total_trials, self.echo = tracker, total_trials, echo
        self.budget, self.stop, self.isolate, self.reserve = budget, stop, isolate, reserve
        self.cost, self.finalists = cost, finalists
        self.stopped_by = None  # why the search ended before its trials ran out
        self.deadline = None  # a fixed end for trials (an isolated trial's process)
        self.chief = None  # a distributed.Chief: this tuner serves its oracle to workers
        self.local_workers = None  # the distributed.LocalWorkers the chief started
        self.link = None  # a distributed.Link: this tuner is a worker of that chief
        self._runs, self._started, self._logged, self._durations = {}, {}, {}, []
        self._epochs, self.epoch_seconds = {}, {}
        self._epoch_began, self._epoch_times = 0.0, {}
        self.overheads = {}  # trial id -> seconds spent beyond training (see trial_overhead)
        self._gradients = set()
        self._search_started = time.monotonic()
        super().__init__(*args, **kwargs)
        if isinstance(self.oracle, WarmStart) and cost is not None and budget is not None \
                and budget.seconds is not None:
            self.oracle.affordable = self._affordable

    def search(self, *args, **kwargs):
        try:
            if self.chief is not None:
                self.oracle.verbose = kwargs.get("verbose", 1)  # as keras-tuner's chief does
                self._serve()
            else:
                super().search(*args, **kwargs)
        except _StopSearch as stop:
            self.stopped_by = stop.reason
            self.on_search_end()
        except KeyboardInterrupt:
            for run_id in self._runs.values():
                self.tracker.end_trial(run_id, "KILLED", {}, {"status": "KILLED"})
            raise

    def _serve(self):
        """The chief's search: serve the oracle until the workers have run the trials (or the
        budget, Ctrl-C or the workers' silence end it); MLflow then agrees with the oracle."""
        self.save()
        self._resume()
        reason = self.chief.serve(self.budget, self.stop, on_trial_end=self._worker_trial_end,
                                  local_workers=self.local_workers)
        self._resume()  # a trial put back in the queue reruns on resume: no run for it now
        if reason:
            raise _StopSearch(reason)

    def _worker_trial_end(self, trial, seconds, worker):
        self._durations.append(seconds)
        per_epoch = self.chief.epoch_seconds.get(trial.trial_id)
        if per_epoch:
            self.epoch_seconds[trial.trial_id] = per_epoch
        self._update_reserve()
        if isinstance(self.oracle, WarmStart):  # what the oracle passed over meanwhile
            self._say_passed_over()
        self.echo(self._progress_line(trial, outcome(trial), seconds, where=f" on {worker}"))

    def on_search_begin(self):
        super().on_search_begin()
        if self.link is None:  # a worker's oracle is the chief's: the chief reconciles
            self._resume()

    def pre_create_trial(self):
        super().pre_create_trial()
        if self.stop is not None and self.stop.requested:
            raise _StopSearch("interrupted")
        estimate = np.mean(self._durations) if self._durations else 0.0
        if self.budget is not None and not self.budget.fits(estimate):
            raise _StopSearch("time budget")
        if self.link is not None and self.link.deadline is not None and \
                time.time() + estimate > self.link.deadline:
            raise _StopSearch("time budget")

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        if isinstance(self.oracle, WarmStart):
            self._say_passed_over()
        if self.link is not None:
            self.link.trial = trial.trial_id
            # A worker killed in this trial left its run behind; whichever worker runs the
            # trial now logs it afresh. The seed is the trial's, whichever worker runs it.
            for run in self.tracker.trial_runs(trial.trial_id).get(trial.trial_id, []):
                if run.info.status not in ("FINISHED", "FAILED"):
                    self.tracker.delete_run(run.info.run_id)
            keras.utils.set_random_seed(self.link.seed + int(trial.trial_id))
        values = space.active_values(trial.hyperparameters)
        warm = getattr(self.oracle, "warm_names", {}).get(trial.trial_id)
        self._runs[trial.trial_id] = self.tracker.start_trial(
            trial.trial_id, values, tags={"autocnn.warm_start": warm} if warm else None)
        self._logged[trial.trial_id] = set(values)
        self._started[trial.trial_id] = time.monotonic()
        self._epochs[trial.trial_id] = 0
        self._gradients = traced_gradients()

    def run_trial(self, trial, *args, **kwargs):
        deadline = self._trial_deadline()
        if self.isolate is not None:
            histories = self.isolate(trial, self._runs[trial.trial_id], deadline)
            self._epochs[trial.trial_id] = sum(len(h.history.get("loss", [])) for h in histories)
            return histories
        guards = [FailOnNonFinite()] + ([StopAt(deadline)] if deadline else [])
        label = f"trial {trial_label(int(trial.trial_id) + 1, self.total_trials).strip()}"
        shown = training_progress(label, self.echo, self.hypermodel.batch_size(
            trial.hyperparameters), kwargs.get("verbose", 0))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *guards, *shown]
        return super().run_trial(trial, *args, **kwargs)

    @property
    def trials_run(self) -> int:
        """The trials this process ran to their end."""
        return len(self._durations)

    def adopt(self, trial_id: str, run_id: str) -> None:
        """Log the epochs of trial ``trial_id``, run by another process, to ``run_id``."""
        self._runs[trial_id] = run_id

    def _trial_deadline(self) -> float | None:
        """The wall-clock time (time.time()) a trial stops at, or None."""
        if self.deadline is not None:
            return self.deadline
        if self.link is not None:
            return self.link.deadline
        if self.budget is None or self.budget.seconds is None:
            return None
        return time.time() + self.budget.search_remaining

    def on_epoch_begin(self, trial, model, epoch, logs=None):
        super().on_epoch_begin(trial, model, epoch, logs=logs)
        self._epoch_began = time.monotonic()

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self._epoch_times.setdefault(trial.trial_id, []).append(
            time.monotonic() - self._epoch_began)
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self._epochs[trial.trial_id] = self._epochs.get(trial.trial_id, 0) + 1
        self.tracker.log_epoch(self._runs[trial.trial_id], epoch, logs or {})

    def on_trial_end(self, trial):
        if self.link is not None:
            # keras-tuner's protocol carries neither a failure's message nor the time an epoch
            # took (the chief's retraining estimate): tell the chief before ending the trial.
            self.link.send(ended={"trial": trial.trial_id, "message": trial.message,
                                  "epoch_seconds": self._timing(trial.trial_id)[1]})
        try:
            super().on_trial_end(trial)
        finally:
            release_traced_gradients(traced_gradients() - self._gradients)
            ended = self.oracle.get_trial(trial.trial_id)
            ended.message = ended.message or trial.message
            self._record(ended)

    def _timing(self, trial_id) -> tuple[float, float | None]:
        """Seconds since the trial began, and per epoch (None before its first epoch)."""
        seconds = time.monotonic() - self._started[trial_id]
        epochs = self._epochs.get(trial_id, 0)
        return seconds, (seconds / epochs if epochs else None)

    def _record(self, trial):
        seconds, per_epoch = self._timing(trial.trial_id)
        del self._started[trial.trial_id], self._epochs[trial.trial_id]
        self._durations.append(seconds)
        if per_epoch:
            self.epoch_seconds[trial.trial_id] = per_epoch
        run_id = self._runs.pop(trial.trial_id)
        metrics = {"trial_seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        overhead = trial_overhead(seconds, self._epoch_times.pop(trial.trial_id, []))
        if overhead is not None:
            self.overheads[trial.trial_id] = metrics["overhead_seconds"] = overhead
        said = self._log_trial(run_id, trial, self._logged.pop(trial.trial_id), metrics)
        if self.link is not None:
            self.link.trial = None
        self._update_reserve()
        self.echo(self._progress_line(trial, said, seconds))

    def _log_trial(self, run_id, trial, logged=(), metrics=None) -> str:
        """End the trial's MLflow run with its outcome; returns the outcome in words."""
        values = space.active_values(trial.hyperparameters)
        # A branch seen for the first time declares its hyperparameters while the model builds.
        self.tracker.log_params(run_id, {k: v for k, v in values.items() if k not in logged})
        metrics, tags = dict(metrics or {}), {"status": trial.status}
        if trial.status == "COMPLETED":
            metrics.update({"best_val_accuracy": trial.score, "best_epoch": trial.best_step + 1})
        else:
            tags["failure_reason"] = failure_reason(trial)
        self.tracker.end_trial(run_id, trial.status, metrics, tags, message=trial.message)
        return outcome(trial)

    def _update_reserve(self):
        """Keep time for retraining the best trials so far (when the budget is set)."""
        if self.budget is None or self.reserve is None or not self.epoch_seconds or \
                self.link is not None:
            return
        self.budget.reserve = sum(self.reserve(trial, self.seconds_per_epoch(trial))
                                  for trial in distinct_best_trials(self.oracle, self.finalists))

    def seconds_per_epoch(self, trial) -> float:
        """A trial's seconds per epoch: measured, or the mean of those measured (a resumed
        search's trials from before)."""
        return self.epoch_seconds.get(trial.trial_id, np.mean(list(self.epoch_seconds.values())))

    def _affordable(self, values: dict) -> str | None:
        """Why a trial of ``values`` is too slow for the budget, or None when it is not (or
        cannot be predicted yet): its trial must take at most half of the time left for
        trials, and its retraining fit in the time left after it."""
        hp = self.oracle.get_space()
        hp.values = dict(values)
        ran = {tid: (self.oracle.trials[tid].hyperparameters, seconds)
               for tid, seconds in self.epoch_seconds.items() if tid in self.oracle.trials}
        estimate = self.cost.predict(hp, ran)
        if estimate is None:
            return None
        left = max(self.budget.search_remaining, 0)
        after = max(self.budget.training_remaining - estimate.seconds, 0)
        family = values.get("family", "")
        model = (f"{'an' if family[:1] in tuple('aeiou') else 'a'} {family} model "
                 f"({estimate.params:,} parameters, {estimate.macs / 1e6:,.1f}M multiply-adds "
                 "an image)")
        if estimate.seconds > cost_module.AFFORDABLE_SHARE * left:
            return (f"{model}: its trial would take about {format_duration(estimate.seconds)}, "
                    f"more than half of the {format_duration(left)} left for trials")
        if estimate.retrain_seconds is not None and estimate.retrain_seconds > after:
            return (f"{model}: retraining it would take about "
                    f"{format_duration(estimate.retrain_seconds)}, more than the "
                    f"{format_duration(after)} left after its trial")
        return None

    def _say_passed_over(self):
        """One line for the configurations the oracle passed over before this trial."""
        passed, self.oracle.passed_over = self.oracle.passed_over, []
        if len(passed) == 1:
            self.echo(f"passed over {passed[0]}")
        elif passed:
            self.echo(f"passed over {len(passed)} configurations too slow for the budget, "
                      f"the last {passed[-1]}")

    def _resume(self):
        """Make MLflow agree with the tuner's trials after a crash or a kill: one finished run
        per ended trial (created or ended here when the process died before it was), none for
        a trial that will rerun, and interrupted trials queued to run again."""
        runs = self.tracker.trial_runs()
        queue = self.oracle._retry_queue  # a trial that ended runs no more, whatever was saved
        queue[:] = [t for t in queue if self.oracle.trials[t].status == "RUNNING"]
        for trial_id, trial in self.oracle.trials.items():
            found = runs.pop(trial_id, [])
            if trial.status == "RUNNING":
                # Died between writing the trial and the oracle's list of running trials: the
                # oracle has no public way to be told, so queue it as its reload does.
                if trial_id not in self.oracle._retry_queue:
                    self.oracle._retry_queue.append(trial_id)
                stale = found
            else:
                ended = [r for r in found if r.info.status in ("FINISHED", "FAILED")]
                keep = ended[0] if ended else (found[0] if found else None)
                stale = [r for r in found if r is not keep]
                if keep is None:
                    self._log_trial(self.tracker.start_trial(trial_id, {}), trial)
                elif keep.info.status not in ("FINISHED", "FAILED"):
                    self._log_trial(keep.info.run_id, trial, set(keep.data.params))
            for run in stale:
                self.tracker.delete_run(run.info.run_id)
        for leftover in runs.values():  # runs of trials the tuner never saved
            for run in leftover:
                self.tracker.delete_run(run.info.run_id)

    def _progress_line(self, trial, outcome, seconds, where=""):
        number = int(trial.trial_id) + 1
        remaining = float("inf") if self.total_trials is None else \
            max(self.total_trials - number, 0)
        eta = np.mean(self._durations) * remaining if remaining else 0.0
        budget = ""
        if self.budget is not None and self.budget.seconds is not None:
            eta = min(eta, max(self.budget.remaining, 0))
            budget = f", {self.budget.describe()}"
        elapsed = time.monotonic() - self._search_started
        hps = " ".join(f"{k}={_short(v)}"
                       for k, v in space.active_values(trial.hyperparameters).items())
        return (f"trial {trial_label(number, self.total_trials)} {trial.status.lower():<9} "
                f"{outcome}  "
                f"[{seconds:.1f}s{where}, elapsed {format_duration(elapsed)}{budget}, "
                f"ETA {format_duration(eta)}]  {hps}")


class _StopSearch(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite."""


class FailOnNonFinite(keras.callbacks.Callback):
    """Fail the trial when an epoch's loss is NaN or infinite (any bad batch makes the epoch's
    mean so, hence one check per epoch instead of one per batch)."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} in epoch {epoch + 1} (try a lower "
                                "learning rate, batch norm or gradient-friendlier activations)")


class StopAt(keras.callbacks.Callback):
    """Stop training at a wall-clock time (``time.time()``): the batch in progress ends, the
    partial epoch is validated (so the best epoch is still checkpointed) and fit returns.

    A timer thread sets ``model.stop_training``, which Keras checks after every batch: no Python
    work per batch.
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline, self.stopped, self._timer = deadline, False, None

    def on_train_begin(self, logs=None):
        self._timer = threading.Timer(max(self.deadline - time.time(), 0), self._stop)
        self._timer.daemon = True
        self._timer.start()

    def _stop(self):
        self.stopped = True
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._timer is not None:
            self._timer.cancel()


def trial_overhead(seconds: float, epochs: list[float]) -> float | None:
    """What a trial of ``seconds`` spent beyond training at its steady pace (``epochs``: each
    epoch's seconds): building and compiling the model, tracing the first step, checkpoints,
    logging. None with fewer than two epochs (the first one's time includes the tracing)."""
    if len(epochs) < 2:
        return None
    return max(seconds - float(np.median(epochs[1:])) * len(epochs), 0.0)


def traced_gradients() -> set:
    """The names of the custom gradients TensorFlow has registered so far."""
    registry = getattr(_tf_ops(), "_gradient_registry", None)
    return set(getattr(registry, "_registry", {}))


def release_traced_gradients(names) -> None:
    """Forget custom gradients registered while a trial's functions were traced.

    Each trace of a Keras train step registers a custom gradient (the optimizer's all-reduce of
    the gradients) in TensorFlow's global registry, which never lets go of it, and it holds the
    whole traced graph: about 10 MiB a trial on a small CNN, for ever. Once traced, the graph
    no longer needs the entry. A TensorFlow without that private registry is left alone.
    """
    registry = getattr(getattr(_tf_ops(), "_gradient_registry", None), "_registry", None)
    if registry is None:
        return
    for name in names:
        if name.startswith("CustomGradient-"):
            registry.pop(name, None)


def _tf_ops():
    from tensorflow.python.framework import ops

    return ops


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def outcome(trial) -> str:
    """An ended trial's result in words: its score, or why it failed."""
    if trial.status == "COMPLETED":
        return f"val_accuracy {trial.score:.4f}"
    return failure_reason(trial)


def failure_reason(trial) -> str:
    """The last line of a failed trial's traceback, without the exception's class name; out of
    memory is said as such."""
    lines = [line for line in (trial.message or "").strip().splitlines() if line.strip()]
    if not lines:
        return "unknown"
    oom = next((line for line in lines if "OOM when allocating" in line), None)
    if oom or "ResourceExhaustedError" in trial.message or lines[-1] == "MemoryError":
        detail = f" ({oom.strip()[:120]})" if oom else ""
        return (f"out of memory{detail}: lower --max-params or the batch size, or use "
                "--isolate")
    last = lines[-1]
    head, _, rest = last.partition(": ")
    # "ValueError: ..." or "autocnn.tuners.NonFiniteLoss: ...": drop the class's name.
    return rest if rest and re.fullmatch(r"[A-Za-z_][\w.]*", head) else last


class WarmStart:
    """Mixin for a keras-tuner Oracle: the first trials try given configurations, then the
    oracle's own picks; ``affordable(values)`` (the reason values are too slow, or None) can
    pass over either, up to PICKS picks a trial (the last one then runs).

    The first is the space's defaults, a sensible model for the input, so the best trial is
    never worse on validation than the defaults. Uses the oracles' public `populate_space` hook;
    a resumed search that already has those trials goes straight on.
    """

    PICKS = 20

    def __init__(self, *args, warm_start=({},), **kwargs):
        super().__init__(*args, **kwargs)
        # Named configurations ({"defaults": {}, "vgg11": {...}}), or a list of unnamed ones.
        self.warm_start = list(warm_start.items()) if isinstance(warm_start, dict) else \
            [(f"warm start {i + 1}", values) for i, values in enumerate(warm_start)]
        self.affordable = None  # values -> why they are too slow, or None (set by the tuner)
        self.passed_over = []  # the reasons, since the tuner last read them
        self.warm_names = {}  # trial id -> the name of the warm start it tries

    def populate_space(self, trial_id):
        index = len(self.trials)  # this trial is not among them yet
        if index < len(self.warm_start):
            name, start = self.warm_start[index]
            space = self.get_space()
            values = dict(space.values)
            for hp in space.space:
                if hp.name in start:
                    values[hp.name] = nearest(hp, start[hp.name])
            if self._fits(values):
                self.warm_names[trial_id] = name
                return {"status": "RUNNING", "values": values}
        for _ in range(self.PICKS):
            response = super().populate_space(trial_id)
            if response["status"] != "RUNNING" or self._fits(response["values"]):
                break
        return response

    def _fits(self, values) -> bool:
        reason = self.affordable(values) if self.affordable is not None else None
        if reason:
            self.passed_over.append(reason)
        return reason is None


def distinct_best_trials(oracle, n: int) -> list:
    """The ``n`` best completed trials, one per configuration (a configuration the oracle
    picked twice counts once): the last rung's finalists."""
    best, seen = [], set()
    for trial in oracle.get_best_trials(len(oracle.trials)):
        values = tuple(sorted(space.active_values(trial.hyperparameters).items(), key=str))
        if values not in seen:
            seen.add(values)
            best.append(trial)
        if len(best) == n:
            break
    return best


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
                 warm_start=({},), strategy=None, **tracking):
    """The tuner named by ``config.tuner``, with TrackedTrials mixed in (``tracking``: its
    budget, stop, isolate and reserve).

    ``warm_start``: configurations the first trials try, by name (random and Bayesian
    searches);
    ``strategy``: a tf.distribute strategy each trial's model is built and trained under.
    """
    settings = dict(objective=OBJECTIVE, seed=config.seed,
                    max_consecutive_failed_trials=config.max_failed_trials)
    tracked = dict(hypermodel=hypermodel, directory=config.tuner_dir,
                   project_name=config.project_name, overwrite=config.overwrite,
                   tracker=tracker, total_trials=config.trial_limit, echo=echo,
                   distribution_strategy=strategy, **tracking)
    if config.tuner == "hyperband":
        # Hyperband fills its brackets itself (no warm start here); it derives its trial count
        # from max_epochs, so cap it like the other tuners.
        tuner = type("TrackedHyperband", (TrackedTrials, kt.Hyperband), {})(
            max_epochs=config.epochs, factor=3, **settings, **tracked)
        tuner.oracle.max_trials = config.trial_limit
        return tuner
    base = ORACLES[config.tuner]
    oracle = type(f"WarmStart{base.__name__}", (WarmStart, base), {})(
        max_trials=config.trial_limit, warm_start=warm_start, **settings)
    return type("TrackedTuner", (TrackedTrials, kt.Tuner), {})(oracle=oracle, **tracked)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

