"""The model registry: a version per search, tagged with its data and headline test metrics; the
champion alias moved only to a better model of the same data."""

import contextlib
import io
import json
import sys
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from autocnn.errors import TrackingError

CHAMPION = "champion"


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


def register_model(tracker, model, x_example, name: str, metric: str, score: float,
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

    check_registrable(tracker.client, name, fingerprint)
    # Called eagerly: model.predict would trace one more tf.function (see
    # models.predict_probabilities).
    signature = infer_signature(x_example, np.asarray(model(x_example, training=False)))
    mlflow.set_tracking_uri(tracker.tracking_uri)
    said = io.StringIO()  # MLflow prints "Successfully registered ..."; the summary says it
    try:
        with mlflow.start_run(run_id=tracker.parent_run_id), contextlib.redirect_stderr(said):
            info = mlflow.keras.log_model(model, name="model", signature=signature,
                                          registered_model_name=name, metadata=metadata)
    except BaseException:
        sys.stderr.write(said.getvalue())
        raise
    version = str(info.registered_model_version)
    for key, value in {**(tags or {}), metric: f"{score:.6f}",
                       **fingerprint_tags(fingerprint)}.items():
        tracker.client.set_model_version_tag(name, version, key, str(value))
    current = champion(tracker.client, name)
    previous = None if current is None else _score(tracker.client, current, metric)
    if not uncrowned and current is not None and \
            current.tags.get(DIGEST_TAG) != fingerprint["digest"]:
        uncrowned = (f"the champion (version {current.version}) was trained on other data "
                     f"(digest {current.tags.get(DIGEST_TAG, 'not recorded')}), so the "
                     "two cannot be compared; move the alias in the MLflow UI if this "
                     "one should serve")
    crowned = not uncrowned and (previous is None or score > previous)
    if crowned:
        tracker.client.set_registered_model_alias(name, CHAMPION, version)
    return Registration(f"models:/{name}/{version}", name, int(version), crowned, previous,
                        uncrowned)

def check_registrable(client, name: str, fingerprint: dict) -> None:
    """TrackingError when registered model ``name`` holds versions of other classes or
    another input shape than ``fingerprint``'s: a registered model serves one task."""
    try:
        versions = client.search_model_versions(f"name = '{name}'", max_results=1,
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

def champion(client, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None

def champion_score(client, name: str, metric: str) -> float | None:
    """The champion version's score on ``metric``, or None when there is no champion."""
    found = champion(client, name)
    return None if found is None else _score(client, found, metric)


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
