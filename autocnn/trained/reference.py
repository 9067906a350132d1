"""A trained model by reference: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/...``
or a ``.keras`` file, with the class names it predicts.

Registered models carry their class names and input shape as MLflow model metadata (see
`tracking.Tracker.register_model`); a ``.keras`` file carries them in a ``NAME.classes.json``
beside it (`save`). Files are loaded in Keras's safe mode: a model that would run arbitrary code
on loading is refused.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocnn.errors import ConfigError
from autocnn.trained.tta import averaged, flip_axes

URI_SCHEMES = ("models:/", "runs:/")


@dataclass
class LoadedModel:
    model: object  # a keras.Model
    class_names: tuple[str, ...]
    reference: str  # as the user gave it
    run_id: str | None = None  # the MLflow run that logged it, when there is one
    dataset: str | None = None  # the data set it was trained on, when recorded
    seed: int | None = None  # the seed its data was split with, when recorded

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape[1:])


def load(reference: str, tracking_uri: str | None = None) -> LoadedModel:
    """The model ``reference`` names; ConfigError saying what is wrong when it cannot be had.

    What can be checked without TensorFlow (the file, the store) is checked before it loads.
    """
    if reference.startswith(URI_SCHEMES):
        return _load_logged(reference, tracking_uri)
    path = Path(reference).expanduser()
    if path.suffix != ".keras":
        raise ConfigError(f"{reference}: give models:/NAME@ALIAS, models:/NAME/VERSION, "
                          "runs:/RUN_ID/model or a .keras file")
    if not path.is_file():
        raise ConfigError(f"{reference}: no such model file")
    import keras

    import autocnn.space.blocks  # noqa: F401  (registers autocnn's layers with Keras)

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except ValueError as err:
        first = str(err).strip().splitlines()[0]
        if "safe_mode" in str(err) or "lambda" in str(err).lower():
            raise ConfigError(f"{reference}: refused, loading it would run arbitrary code "
                              f"(Keras safe mode): {first}") from None
        raise ConfigError(f"{reference}: not a Keras model file this Keras can load: "
                          f"{first}") from None
    except (OSError, KeyError) as err:
        raise ConfigError(f"{reference}: not a Keras model file ({err})") from None
    return LoadedModel(model, _classes_beside(path, model), reference)


def _load_logged(reference: str, tracking_uri: str | None) -> LoadedModel:
    from autocnn.tracking import load_logged_model, resolve_tracking_uri

    if tracking_uri:
        resolve_tracking_uri(tracking_uri, create=False)  # no store: say so before TensorFlow
    import autocnn.space.blocks  # noqa: F401  (registers autocnn's layers with Keras)

    model, metadata, run_id = load_logged_model(reference, tracking_uri)
    names = metadata.get("class_names") or _numbered(model)
    return LoadedModel(model, tuple(names), reference, run_id, metadata.get("dataset"),
                       metadata.get("seed"))


def predict_probabilities(model, inputs, batch_size: int = 256, tta: bool = True) -> np.ndarray:
    """``model``'s class probabilities for ``inputs``: an array of images, or a tf.data
    dataset of (images, labels) batches; with ``tta``, averaged over the image and the flips
    the model was trained with (see `tta.py`; a model trained without flips is unaffected).

    The model is called eagerly, batch by batch, rather than through ``model.predict``: that
    traces a new tf.function for every model (and again for a smaller last batch), so a process
    that predicts with many models (a search, a pipeline) makes TensorFlow warn of excessive
    retracing, and for one pass over a split the tracing costs more than it saves.
    """
    if isinstance(inputs, np.ndarray):
        batches = (inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size))
    else:
        batches = (batch[0] if isinstance(batch, tuple) else batch for batch in inputs)
    axes = flip_axes(model) if tta else ()
    outputs = [averaged(model, images, axes) for images in batches]
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), "float32")
    return np.concatenate(outputs)


def save(loaded_or_model, path, class_names) -> Path:
    """``model`` as a ``.keras`` file with its class names beside it; the path written."""
    path = Path(path)
    model = getattr(loaded_or_model, "model", loaded_or_model)
    model.save(path)
    write_classes(path, class_names)
    return path


def write_classes(path, class_names) -> Path:
    """The class names, in output order, as JSON beside the model at ``path``."""
    file = classes_file(path)
    file.write_text(json.dumps(list(class_names), indent=1) + "\n")
    return file


def classes_file(path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.classes.json")


def _classes_beside(path: Path, model) -> tuple[str, ...]:
    file = classes_file(path)
    if file.is_file():
        names = json.loads(file.read_text())
        if len(names) == model.output_shape[-1]:
            return tuple(str(n) for n in names)
    return _numbered(model)


def _numbered(model) -> tuple[str, ...]:
    return tuple(str(i) for i in range(model.output_shape[-1]))
