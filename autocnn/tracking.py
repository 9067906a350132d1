"""MLflow tracking, the only module that imports mlflow: runs, metrics, artifacts, the registry.

A search is one parent run; each trial is a child run (tagged ``mlflow.parentRunId``, so the UI
nests it). The retrained best model is logged with MLflow's Keras flavor on the parent run and
registered as a new model version; the alias ``champion`` moves to it only when it beats the
current champion on the chosen test metric.
"""

import contextlib
import io
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocnn.config import DEFAULT_TRACKING_URI
from autocnn.errors import TrackingError

CHAMPION = "champion"
# MLflow 3 opens an experiment of this kind in its "Model training" view (not the GenAI one).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
STORE_HINT = "point to the store with --tracking-uri or MLFLOW_TRACKING_URI"
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
    # Why the alias stayed where it was without a better score to compare with (the model is
    # no better than chance, or the champion was trained on other data); "" when compared.
    not_compared: str = ""


def resolve_tracking_uri(uri: str, create: bool = True) -> tuple[str, str | None]:
    """An absolute tracking URI and, for a local SQLite store, the artifact folder beside it.

    With ``create`` False (commands that only read), a SQLite store that does not exist is a
    TrackingError saying where it was looked for, instead of a new empty store there.
    """
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        if not create and not path.is_file():
            if uri == DEFAULT_TRACKING_URI:
                raise TrackingError(f"no MLflow store at {path} (the default {uri}, relative to "
                                    "the working directory): run from the folder you searched "
                                    f"in, or {STORE_HINT}")
            raise TrackingError(f"no MLflow store at {path} ({uri}): check the path, or "
                                f"{STORE_HINT}")
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
                       fingerprint: dict, metadata: dict | None = None, tags: dict | None = None,
                       uncrowned: str = "") -> Registration:
        """Log ``model`` with the Keras flavor on the parent run, register it, maybe crown it.

        ``fingerprint`` (data.Dataset.fingerprint) is tagged on the version: the champion
        alias moves to it only when the champion was trained on the same data and scored less
        on ``metric``, or there is none; a registered model of other classes or input shape
        is refused (see check_registrable). ``uncrowned``: why the version must not be the
        champion whatever it scores (it is no better than chance). ``metadata`` (class names,
        input shape, data set) goes into the logged model's MLmodel file; ``tags`` (headline
        test metrics) onto the version.
        """
        from mlflow.models import infer_signature

        self.check_registrable(name, fingerprint)
        # Called eagerly: model.predict would trace one more tf.function (see
        # models.predict_probabilities).
        signature = infer_signature(x_example, np.asarray(model(x_example, training=False)))
        mlflow.set_tracking_uri(self.tracking_uri)
        said = io.StringIO()  # MLflow prints "Successfully registered ..."; the summary says it
        try:
            with mlflow.start_run(run_id=self.parent_run_id), contextlib.redirect_stderr(said):
                info = mlflow.keras.log_model(model, name="model", signature=signature,
                                              registered_model_name=name, metadata=metadata)
        except BaseException:
            sys.stderr.write(said.getvalue())
            raise
        version = str(info.registered_model_version)
        for key, value in {**(tags or {}), metric: f"{score:.6f}",
                           **fingerprint_tags(fingerprint)}.items():
            self.client.set_model_version_tag(name, version, key, str(value))
        champion = self._champion(name)
        previous = None if champion is None else _score(self.client, champion, metric)
        if not uncrowned and champion is not None and \
                champion.tags.get(DIGEST_TAG) != fingerprint["digest"]:
            uncrowned = (f"the champion (version {champion.version}) was trained on other data "
                         f"(digest {champion.tags.get(DIGEST_TAG, 'not recorded')}), so the "
                         "two cannot be compared; move the alias in the MLflow UI if this "
                         "one should serve")
        crowned = not uncrowned and (previous is None or score > previous)
        if crowned:
            self.client.set_registered_model_alias(name, CHAMPION, version)
        return Registration(f"models:/{name}/{version}", name, int(version), crowned, previous,
                            uncrowned)

    def check_registrable(self, name: str, fingerprint: dict) -> None:
        """TrackingError when registered model ``name`` holds versions of other classes or
        another input shape than ``fingerprint``'s: a registered model serves one task."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'", max_results=1,
                                                         order_by=["version_number DESC"])
        except MlflowException:
            return
        if not versions:
            return
        tags, mine = versions[0].tags, fingerprint_tags(fingerprint)
        for key in (CLASSES_TAG, SHAPE_TAG):
            if key in tags and tags[key] != mine[key]:
                raise TrackingError(
                    f"registered model {name!r} holds models of {_task(tags)}; this one is of "
                    f"{_task(mine)}: register it under another name (--model-name NAME)")

    def _champion(self, name: str):
        try:
            return self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None

    def champion_score(self, name: str, metric: str) -> float | None:
        """The champion version's score on ``metric``, or None when there is no champion."""
        champion = self._champion(name)
        return None if champion is None else _score(self.client, champion, metric)


DIGEST_TAG, CLASSES_TAG, SHAPE_TAG = "data_digest", "data_classes", "data_input_shape"


def fingerprint_tags(fingerprint: dict) -> dict:
    """A data fingerprint as model version tags."""
    return {DIGEST_TAG: fingerprint["digest"], "data_source": fingerprint["source"],
            CLASSES_TAG: json.dumps(fingerprint["classes"]),
            SHAPE_TAG: "x".join(map(str, fingerprint["input_shape"])),
            "data_splits": "/".join(map(str, fingerprint["splits"].values()))}


def _task(tags: dict) -> str:
    classes = tags.get(CLASSES_TAG, "?")
    shown = classes if len(classes) <= 60 else classes[:57] + "..."
    return f"classes {shown} on {tags.get(SHAPE_TAG, '?')} images"


def _score(client, version, metric: str) -> float | None:
    if metric in version.tags:
        return float(version.tags[metric])
    value = client.get_run(version.run_id).data.metrics.get(metric)
    return None if value is None else float(value)


def trial_run_name(trial_id: str) -> str:
    """A trial's run name, numbered from 1 as the console counts: trial-01 for id "00"."""
    return f"trial-{int(trial_id) + 1:02d}"


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
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri, create=False)[0])
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
    uri, _ = resolve_tracking_uri(tracking_uri, create=False)
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
