"""What commands read back from the store: a logged model, and the leaderboards of runs and
registered models (`autocnn compare`); a text artifact added to a finished run."""

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocnn.errors import TrackingError
from autocnn.tracking.store import resolve_tracking_uri


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
