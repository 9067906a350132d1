"""A search as the store keeps it, read back for its report and model card: the parent run, its
trials, its registered versions, and the artifacts a report shows, downloaded to a folder."""

from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocnn.errors import TrackingError
from autocnn.tracking.store import resolve_tracking_uri

# The artifact folders a report shows.
SHOWN = ("plots", "explain", "data", "evaluation")


@dataclass
class SearchRecord:
    run_id: str
    run_name: str
    experiment: str
    status: str
    start_ms: int
    end_ms: int | None
    params: dict
    metrics: dict
    tags: dict
    trials: list[dict]  # see trial_rows
    versions: list[dict]  # {"name", "version", "aliases", "description"} of the registered ones
    artifacts: Path | None = None  # where SHOWN was downloaded (see download)
    tracking_uri: str = ""
    missing: list[str] = field(default_factory=list)  # SHOWN paths the run has not got

    def artifact(self, path: str) -> Path | None:
        """A downloaded artifact's local path, None when the run has not got it."""
        found = self.artifacts / path if self.artifacts else None
        return found if found is not None and found.is_file() else None


def read_search(tracking_uri: str, reference: str) -> SearchRecord:
    """The search of ``reference``: a parent run's id, or a registered version
    (models:/NAME/VERSION or models:/NAME@ALIAS); TrackingError when the store has no such
    search."""
    uri, _ = resolve_tracking_uri(tracking_uri, create=False)
    client = MlflowClient(uri)
    run_id = _run_id(client, reference)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise TrackingError(f"no run {run_id!r} in {uri}; `autocnn compare --models` lists the "
                            "registered models, the MLflow UI the runs") from None
    if run.data.tags.get("autocnn.role") != "search":
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent is None:
            raise TrackingError(f"run {run_id} is not a search's run: give the id of a search "
                                "(its parent run in the MLflow UI) or a registered model")
        return read_search(tracking_uri, parent)  # a trial's run: its search
    return SearchRecord(
        run_id=run_id, run_name=run.info.run_name, status=run.info.status,
        experiment=client.get_experiment(run.info.experiment_id).name,
        start_ms=run.info.start_time, end_ms=run.info.end_time, params=dict(run.data.params),
        metrics=dict(run.data.metrics), tags=dict(run.data.tags),
        trials=trial_rows(client, run), versions=_versions(client, run_id), tracking_uri=uri)


def download(record: SearchRecord, folder: Path) -> SearchRecord:
    """Download the artifacts a report shows into ``folder``; the record, pointing at them."""
    client = MlflowClient(record.tracking_uri)
    record.artifacts = Path(folder)
    for path in SHOWN:
        try:
            client.download_artifacts(record.run_id, path, str(folder))
        except (MlflowException, OSError):
            record.missing.append(path)
    return record


def trial_rows(client, run) -> list[dict]:
    """The search's trials, each the latest run of its trial id (a trial rerun after a
    resume replaces its earlier run), in the order they started: trial number, status, score,
    best epoch, seconds, start and end (ms), hyperparameters, warm start, failure reason."""
    search_id = run.data.tags.get("autocnn.search_id")
    query = (f"tags.`autocnn.search_id` = '{search_id}'" if search_id
             else f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    latest = {}
    for child in client.search_runs([run.info.experiment_id], filter_string=query,
                                    max_results=50000, order_by=["attributes.start_time ASC"]):
        if "trial_id" in child.data.tags:
            latest[child.data.tags["trial_id"]] = child
    rows = [_trial_row(child) for child in latest.values()]
    return sorted(rows, key=lambda row: row["start_ms"])


def _trial_row(child) -> dict:
    metrics, tags = child.data.metrics, child.data.tags
    return {"trial": int(tags["trial_id"]) + 1, "status": tags.get("status", child.info.status),
            "score": metrics.get("best_val_accuracy"),
            "epochs": int(metrics["best_epoch"]) if "best_epoch" in metrics else None,
            "seconds": metrics.get("trial_seconds"), "start_ms": child.info.start_time,
            "end_ms": child.info.end_time, "hyperparameters": dict(child.data.params),
            "warm_start": tags.get("autocnn.warm_start", ""),
            "reason": tags.get("failure_reason", ""), "run_id": child.info.run_id}


def _run_id(client, reference: str) -> str:
    if not reference.startswith("models:/"):
        return reference
    name, at, alias = reference.removeprefix("models:/").partition("@")
    try:
        if at:
            return client.get_model_version_by_alias(name, alias).run_id
        name, _, version = name.rpartition("/")
        return client.get_model_version(name, version).run_id
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise TrackingError(f"{reference}: no such registered model version ({first}); "
                            "`autocnn compare --models` lists them") from None


def _versions(client, run_id: str) -> list[dict]:
    found = []
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        model = client.get_registered_model(version.name)
        aliases = sorted(a for a, v in (model.aliases or {}).items() if str(v) == version.version)
        found.append({"name": version.name, "version": int(version.version), "aliases": aliases,
                      "description": version.description or ""})
    return found

