"""MLflow tracking, the only module that imports mlflow: runs, metrics, artifacts, the registry.

A search is one parent run; each trial is a child run (tagged ``mlflow.parentRunId``, so the UI
nests it). The retrained best model is logged with MLflow's Keras flavor on the parent run and
registered as a new model version; the alias ``champion`` moves to it only when it beats the
current champion on the chosen test metric.
"""

import functools
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocnn.errors import TrackingError

CHAMPION = "champion"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per download
# With a tracking server MLflow prints each ended run's URL; the progress lines say enough.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Registration:
    model_uri: str  # models:/NAME/VERSION
    name: str
    version: int
    champion: bool  # whether the alias moved to this version
    previous_champion: float | None  # the old champion's score, if there was one


def resolve_tracking_uri(uri: str) -> tuple[str, str | None]:
    """An absolute tracking URI and, for a local SQLite store, the artifact folder beside it."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", (path.parent / "artifacts").as_uri()
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    return uri, None


def _check_server(uri: str) -> None:
    # MLflow's own client retries for minutes; one short request tells at once.
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            return
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}): start it "
            "(`mlflow server`) or pass another --tracking-uri"
        ) from None


class Tracker:
    """One experiment in one tracking store, and the parent run of the search in progress."""

    def __init__(self, tracking_uri: str, experiment: str):
        self.tracking_uri, artifact_root = resolve_tracking_uri(tracking_uri)
        try:
            self.client = MlflowClient(self.tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = f"{artifact_root}/{experiment}" if artifact_root else None
                self.experiment_id = self.client.create_experiment(experiment, location)
            else:
                self.experiment_id = found.experiment_id
        except MlflowException as err:
            message = str(err).splitlines()[0]
            raise TrackingError(f"cannot use tracking URI {tracking_uri!r}: {message}") from None
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

    def start_trial(self, trial_id: str, params: dict) -> str:
        tags = {"mlflow.parentRunId": self.parent_run_id, "trial_id": trial_id}
        if self.search_id:
            tags["autocnn.search_id"] = self.search_id
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_id}", tags=tags)
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
        self.log_metrics(run_id, {k: v for k, v in logs.items() if _is_number(v)}, step=epoch)

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

    def log_dict(self, data: dict, path: str) -> None:
        self.client.log_dict(self.parent_run_id, data, path)

    def register_model(self, model, x_example, name: str, metric: str, score: float,
                       metadata: dict | None = None) -> Registration:
        """Log ``model`` with the Keras flavor on the parent run, register it, maybe crown it.

        ``metadata`` (class names, input shape) goes into the logged model's MLmodel file.
        """
        from mlflow.models import infer_signature

        signature = infer_signature(x_example, model.predict(x_example, verbose=0))
        mlflow.set_tracking_uri(self.tracking_uri)
        log = functools.partial(mlflow.keras.log_model, model, name="model", signature=signature,
                                registered_model_name=name, metadata=metadata)
        with mlflow.start_run(run_id=self.parent_run_id):
            try:
                info = log(input_example=x_example)
                example = "saved"
            except (MlflowException, OSError) as err:
                # Some MLflow releases cannot save an input example with the Keras flavor;
                # drop the half-logged model and log it with its signature alone.
                self._delete_pending_model()
                info = log()
                example = f"not saved ({type(err).__name__} in mlflow {mlflow.__version__})"
            mlflow.set_tag("input_example", example)
        version = int(info.registered_model_version)
        self.client.set_model_version_tag(name, str(version), metric, f"{score:.6f}")
        previous = self.champion_score(name, metric)
        crowned = previous is None or score > previous
        if crowned:
            self.client.set_registered_model_alias(name, CHAMPION, str(version))
        return Registration(f"models:/{name}/{version}", name, version, crowned, previous)

    def _delete_pending_model(self) -> None:
        pending = mlflow.last_logged_model()
        if pending is not None and str(pending.status) == "PENDING":
            self.client.delete_logged_model(pending.model_id)

    def champion_score(self, name: str, metric: str) -> float | None:
        """The champion version's score on ``metric``, or None when there is no champion."""
        try:
            version = self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        if metric in version.tags:
            return float(version.tags[metric])
        value = self.client.get_run(version.run_id).data.metrics.get(metric)
        return None if value is None else float(value)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def load_logged_model(reference: str, tracking_uri: str | None = None):
    """A logged Keras model (``models:/...`` or ``runs:/...``): the model, its metadata and
    the run that logged it; TrackingError saying what is wrong when it cannot be had."""
    if tracking_uri:
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri)[0])
    try:
        info = mlflow.models.get_model_info(reference)
        model = mlflow.keras.load_model(reference)
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0]
        raise TrackingError(f"{reference}: cannot load it from {mlflow.get_tracking_uri()} "
                            f"({first}); `autocnn compare --models` lists what is "
                            "there") from None
    return model, info.metadata or {}, info.run_id


def log_text(tracking_uri: str, run_id: str, text: str, path: str) -> None:
    """``text`` as an artifact of an existing run."""
    MlflowClient(resolve_tracking_uri(tracking_uri)[0]).log_text(run_id, text, path)


def leaderboard(tracking_uri: str, experiment: str | None = None, kind: str = "trials",
                metric: str | None = None) -> tuple[list[str], list[dict]]:
    """Columns and rows, best first: the trials of ``experiment``'s searches (child runs) or
    the registered model versions (of the model named ``experiment``, or of all)."""
    uri, _ = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    if kind == "models":
        return _model_rows(client, experiment, metric or "test_f1_macro")
    found = client.get_experiment_by_name(experiment) if experiment else None
    if experiment and found is None:
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(f"no experiment {experiment!r} in {uri}; there are: "
                            f"{', '.join(names) or 'none'}")
    experiments = [found] if found else client.search_experiments()
    metric = metric or "best_val_accuracy"
    rows = []
    for run in client.search_runs([e.experiment_id for e in experiments], max_results=5000):
        params, metrics = run.data.params, run.data.metrics
        if "trial_id" not in run.data.tags:
            continue
        rows.append({"experiment": next(e.name for e in experiments
                                        if e.experiment_id == run.info.experiment_id),
                     "trial": int(run.data.tags["trial_id"]) + 1,
                     "status": run.data.tags.get("status", run.info.status),
                     metric: metrics.get(metric),
                     "epochs": None if "best_epoch" not in metrics else int(metrics["best_epoch"]),
                     "seconds": metrics.get("trial_seconds"),
                     "family": params.get("family"),
                     "model": params.get("backbone") or _shape(params),
                     "run_id": run.info.run_id,
                     "reason": run.data.tags.get("failure_reason", "")})
    rows.sort(key=lambda r: (r[metric] is None, -(r[metric] or 0)))
    columns = ["experiment", "trial", "status", metric, "epochs", "seconds", "family", "model",
               "run_id", "reason"]
    return columns, rows


def _shape(params: dict) -> str:
    if "num_blocks" not in params:
        return ""
    return (f"{params['num_blocks']}x{params.get('convs_per_block', '?')} blocks, "
            f"{params.get('filters', '?')} filters, k{params.get('kernel_size', '?')}")


def _model_rows(client, name, metric):
    filter_string = f"name = '{name}'" if name else None
    rows = []
    for model in client.search_registered_models(filter_string=filter_string):
        aliases = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for version in client.search_model_versions(f"name = '{model.name}'"):
            run = client.get_run(version.run_id)
            m = run.data.metrics
            rows.append({"model": f"models:/{model.name}/{version.version}",
                         "aliases": ",".join(aliases.get(str(version.version), [])),
                         metric: m.get(metric), "test_accuracy": m.get("test_accuracy"),
                         "params": None if "model_params" not in m else int(m["model_params"]),
                         "family": run.data.params.get("best_family"),
                         "dataset": run.data.params.get("dataset"),
                         "run_id": version.run_id})
    if name and not rows:
        raise TrackingError(f"no registered model {name!r} in {client.tracking_uri}")
    rows.sort(key=lambda r: (r[metric] is None, -(r[metric] or 0)))
    return ["model", "aliases", metric, "test_accuracy", "params", "family", "dataset",
            "run_id"], rows
