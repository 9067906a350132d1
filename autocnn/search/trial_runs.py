"""One MLflow child run per trial: started, fed each epoch, ended with its outcome, and made to
agree with the tuner's trials when a search resumes after a crash or a kill."""

import re

from autocnn.errors import TrackingLost
from autocnn.space.hypermodel import active_values

ENDED = ("FINISHED", "FAILED")


class TrialRuns:
    """The child runs of the trials this process runs, under ``tracker``'s parent run."""

    def __init__(self, tracker):
        self.tracker = tracker
        self._runs, self._logged = {}, {}  # trial id -> run id; -> the params logged
        self.lost = set()  # trials whose epochs the tracking server stopped taking
        self._abandoned = {}  # trial id -> its run left unfinished when its tracking was lost

    def start(self, trial, warm_start: str | None = None) -> str:
        if trial.trial_id in self._abandoned:  # it runs again: its unfinished run goes
            self.tracker.delete_run(self._abandoned.pop(trial.trial_id))
        self.lost.discard(trial.trial_id)
        values = active_values(trial.hyperparameters)
        run_id = self.tracker.start_trial(
            trial.trial_id, values, tags={"autocnn.warm_start": warm_start} if warm_start
            else None)
        self._runs[trial.trial_id], self._logged[trial.trial_id] = run_id, set(values)
        return run_id

    def adopt(self, trial_id: str, run_id: str) -> None:
        """Log the epochs of trial ``trial_id``, begun by another process, to ``run_id``."""
        self._runs[trial_id], self._logged[trial_id] = run_id, set()

    def run_id(self, trial_id: str) -> str:
        return self._runs[trial_id]

    def log_epoch(self, trial_id: str, epoch: int, logs: dict) -> None:
        try:
            self.tracker.log_epoch(self._runs[trial_id], epoch, logs)
        except TrackingLost:
            self.lost.add(trial_id)
            raise

    def abandon(self, trial_id: str) -> None:
        """Leave the run of a trial that lost its tracking (it runs again with a new one)."""
        self._abandoned[trial_id] = self._runs.pop(trial_id)
        self._logged.pop(trial_id, None)

    def end(self, trial, metrics: dict) -> str:
        """End the trial's run with its outcome and ``metrics``; the outcome in words."""
        run_id = self._runs.pop(trial.trial_id)
        return self._end(run_id, trial, self._logged.pop(trial.trial_id, set()), metrics)

    def kill_all(self) -> None:
        """Ctrl-C: every run in progress ends KILLED."""
        for run_id in self._runs.values():
            self.tracker.end_trial(run_id, "KILLED", {}, {"status": "KILLED"})

    def forget_earlier(self, trial_id: str) -> None:
        """A worker killed in this trial left its run behind; whichever worker runs the trial
        now logs it afresh."""
        for run in self.tracker.trial_runs(trial_id).get(trial_id, []):
            if run.info.status not in ENDED:
                self.tracker.delete_run(run.info.run_id)

    def _end(self, run_id, trial, logged=(), metrics=None) -> str:
        values = active_values(trial.hyperparameters)
        # A branch seen for the first time declares its hyperparameters while the model builds.
        self.tracker.log_params(run_id, {k: v for k, v in values.items() if k not in logged})
        metrics, tags = dict(metrics or {}), {"status": trial.status}
        if trial.status == "COMPLETED":
            metrics.update({"best_val_accuracy": trial.score, "best_epoch": trial.best_step + 1})
        else:
            tags["failure_reason"] = failure_reason(trial)
        self.tracker.end_trial(run_id, trial.status, metrics, tags, message=trial.message)
        return outcome(trial)

    def reconcile(self, oracle, running=()) -> None:
        """Make MLflow agree with the oracle's trials after a crash or a kill: one finished run
        per ended trial (created or ended here when the process died before it was), none for
        a trial that will rerun, and interrupted trials queued to run again. ``running``: trials
        still running on workers (a restarted chief's), whose runs are theirs to end."""
        runs = self.tracker.trial_runs()
        queue = oracle._retry_queue  # a trial that ended runs no more, whatever was saved
        rerun = ("RUNNING", "INVALID")  # INVALID and queued: its tracking was lost, it reruns
        queue[:] = list(dict.fromkeys(t for t in queue if oracle.trials[t].status in rerun))
        for trial_id, trial in oracle.trials.items():
            found = runs.pop(trial_id, [])
            if trial_id in running:
                continue
            if trial.status == "RUNNING" or trial_id in queue:
                # Died between writing the trial and the oracle's list of running trials: the
                # oracle has no public way to be told, so queue it as its reload does.
                if trial_id not in queue:
                    queue.append(trial_id)
                stale = found
            else:
                stale = self._keep_one(trial_id, trial, found)
            for run in stale:
                self.tracker.delete_run(run.info.run_id)
        for leftover in runs.values():  # runs of trials the tuner never saved
            for run in leftover:
                self.tracker.delete_run(run.info.run_id)

    def _keep_one(self, trial_id, trial, found) -> list:
        """An ended trial's one run, ended with its outcome (created when there is none); the
        runs to delete."""
        ended = [r for r in found if r.info.status in ENDED]
        keep = ended[0] if ended else (found[0] if found else None)
        if keep is None:
            self._end(self.tracker.start_trial(trial_id, {}), trial)
        elif keep.info.status not in ENDED:
            self._end(keep.info.run_id, trial, set(keep.data.params))
        return [r for r in found if r is not keep]


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
