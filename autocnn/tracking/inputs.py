"""What a run was fed and on what machine: its data sets as MLflow dataset inputs (the UI's
Dataset column) and its system metrics (CPU, memory, disk, network, GPU when present)."""

import contextlib
import json
import os

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

SAMPLING_SECONDS = 10  # MLflow's default; a demo of a minute still gets a handful of samples


def dataset_inputs(source: str, splits: list[tuple[str, str, str, int]]) -> list[DatasetInput]:
    """``splits`` (context, name, digest, images) as dataset inputs of ``source``: a file or
    folder as a local source, a named one (digits, tfds:NAME) as made by code."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    path = source.removeprefix("idx:")
    origin = (_local_source(os.path.abspath(path)) if os.path.exists(path)
              else CodeDatasetSource({"autocnn.dataset": source}))
    return [DatasetInput(Dataset(name=name, digest=digest, source_type=origin._get_source_type(),
                                 source=origin.to_json(),
                                 profile=json.dumps({"num_images": images})),
                         tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
            for context, name, digest, images in splits]


def _local_source(path: str):
    """MLflow's source for a local file or folder (its class is made when MLflow loads)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": all are local
        warnings.simplefilter("ignore")
        return resolve_dataset_source(path)


@contextlib.contextmanager
def system_metrics(tracking_uri: str, run_id: str, resumed: bool = False):
    """MLflow's system metrics (system/cpu_utilization_percentage, ...) logged on ``run_id``
    every SAMPLING_SECONDS while the block runs; continuing the run's steps when ``resumed``."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SAMPLING_SECONDS,
                                   resume_logging=resumed, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
