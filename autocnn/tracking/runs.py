"""MLflow tracking, the only module that imports mlflow: runs, metrics, artifacts, the registry.

A search is one parent run; each trial is a child run (tagged ``mlflow.parentRunId``, so the UI
nests it). The retrained best model is logged with MLflow's Keras flavor on the parent run and
registered as a new model version; the alias ``champion`` moves to it only when it beats the
current champion on the chosen test metric.
"""

import logging
import os
import time

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocnn.errors import TrackingError
from autocnn.tracking import inputs, outages, registry
from autocnn.tracking.store import redact, resolve_tracking_uri

# MLflow 3 opens an experiment of this kind in its "Model training" view (not the GenAI one).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per download
# With a tracking server MLflow prints each ended run's URL; the progress lines say enough.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class Tracker:
    """One experiment in one tracking store, and the parent run of the search in progress."""

    def __init__(self, tracking_uri: str, experiment: str, create_store: bool = True):
        self.tracking_uri, artifact_root = resolve_tracking_uri(tracking_uri, create_store)
        try:
            self.client = MlflowClient(self.tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = f"{artifact_root}/{experiment}" if artifact_root else None
                self.experiment_id = self.client.create_experiment(experiment, location,
                                                                   tags=EXPERIMENT_KIND)
            else:
                self.experiment_id = found.experiment_id
                for key, value in EXPERIMENT_KIND.items():
                    if found.tags.get(key) != value:
                        self.client.set_experiment_tag(self.experiment_id, key, value)
        except MlflowException as err:
            message = str(err).splitlines()[0].replace(tracking_uri, redact(tracking_uri))
            raise TrackingError(f"cannot use tracking URI {redact(tracking_uri)!r}: "
                                f"{message}") from None
        self.parent_run_id: str | None = None
        self.search_id: str | None = None
        self.resumed = False

    def start_run(self, run_name: str, params: dict, tags: dict,
                  search_id: str | None = None) -> str:
        """Start the search's parent run, or reopen the unfinished one of search ``search_id``
        (killed, interrupted or crashed; ``resumed`` says so): its id."""
        self.search_id, self.resumed = search_id, False
        previous = self._unfinished_run(search_id) if search_id else None
        if previous is not None:
            self.parent_run_id = previous.info.run_id
            self.client.update_run(self.parent_run_id, status="RUNNING")
            resumes = int(previous.data.tags.get("autocnn.resumes", "0")) + 1
            self.client.set_tag(self.parent_run_id, "autocnn.resumes", str(resumes))
            # A param keeps its first value in MLflow; a changed one is noted as a tag.
            changed = {k: v for k, v in params.items()
                       if k in previous.data.params and previous.data.params[k] != str(v)}
            self.log_params(self.parent_run_id, {k: v for k, v in params.items()
                                                 if k not in previous.data.params})
            for key, value in changed.items():
                self.client.set_tag(self.parent_run_id, f"autocnn.resumed.{key}", str(value))
            self.resumed = True
            return self.parent_run_id
        tags = {**tags, "autocnn.role": "search",
                **({"autocnn.search_id": search_id} if search_id else {})}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.parent_run_id = run.info.run_id
        self.log_params(self.parent_run_id, params)
        return self.parent_run_id

    def _unfinished_run(self, search_id: str):
        runs = self.client.search_runs(
            [self.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`autocnn.search_id` = '{search_id}' and "
                          "attributes.status != 'FINISHED' and tags.`autocnn.role` = 'search'")
        return runs[0] if runs else None

    def end_run(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status)

    def start_trial(self, trial_id: str, params: dict, tags: dict | None = None) -> str:
        """A child run for trial ``trial_id`` (keras-tuner's "00" is the console's trial 1,
        run ``trial-01``)."""
        tags = {**(tags or {}), "mlflow.parentRunId": self.parent_run_id, "trial_id": trial_id}
        if self.search_id:
            tags["autocnn.search_id"] = self.search_id
        run = self.client.create_run(self.experiment_id, run_name=trial_run_name(trial_id),
                                     tags=tags)
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def trial_runs(self, trial_id: str | None = None) -> dict[str, list]:
        """The search's trial runs (of every parent run it had) by trial id, oldest first;
        those of trial ``trial_id`` alone when it is given."""
        if not self.search_id:
            return {}
        found, query = {}, f"tags.`autocnn.search_id` = '{self.search_id}'"
        if trial_id is not None:
            query += f" and tags.trial_id = '{trial_id}'"
        for run in self.client.search_runs(
                [self.experiment_id], max_results=50000, order_by=["attributes.start_time ASC"],
                filter_string=query):
            if "trial_id" in run.data.tags:
                found.setdefault(run.data.tags["trial_id"], []).append(run)
        return found

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def log_epoch(self, run_id: str, epoch: int, logs: dict) -> None:
        with outages.lost_when_unreachable(self.tracking_uri):  # TrackingLost: see outages
            self.log_metrics(run_id, {k: v for k, v in logs.items() if _is_number(v)}, epoch)

    def end_trial(self, run_id: str, status: str, metrics: dict, tags: dict,
                  message: str | None = None) -> None:
        self.log_metrics(run_id, metrics)
        if message:
            self.client.log_text(run_id, message, "failure.txt")
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        ended = {"COMPLETED": "FINISHED", "KILLED": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(run_id, ended, now)

    def log_params(self, run_id: str, params: dict) -> None:
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.parent_run_id, figure, path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.parent_run_id, key, value)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.parent_run_id, text, path)

    def log_inputs(self, run_id: str, source: str, splits: list[tuple[str, str, str, int]]):
        """The data of ``run_id``: splits (context, name, digest, images) of ``source``."""
        self.client.log_inputs(run_id, inputs.dataset_inputs(source, splits))

    def system_metrics(self):
        """A context in which the parent run logs the machine's system metrics."""
        return inputs.system_metrics(self.tracking_uri, self.parent_run_id, self.resumed)

    def log_artifacts(self, folder, path: str) -> None:  # every file of local ``folder``
        self.client.log_artifacts(self.parent_run_id, str(folder), path)

    def log_dict(self, data: dict, path: str) -> None:
        self.client.log_dict(self.parent_run_id, data, path)

    def register_model(self, model, x_example, name: str, metric: str, score: float,
                       fingerprint: dict, **details) -> "registry.Registration":
        """See registry.register_model."""
        return registry.register_model(self, model, x_example, name, metric, score,
                                       fingerprint, **details)

    def describe_version(self, name: str, version: int, description: str) -> None:  # markdown
        self.client.update_model_version(name, str(version), description=description)

    def check_registrable(self, name: str, fingerprint: dict) -> None:
        registry.check_registrable(self.client, name, fingerprint)

    def champion_score(self, name: str, metric: str) -> float | None:
        return registry.champion_score(self.client, name, metric)


def trial_run_name(trial_id: str) -> str:
    """A trial's run name, numbered from 1 as the console counts: trial-01 for id "00"."""
    return f"trial-{int(trial_id) + 1:02d}"


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
