"""Exporting a model for serving, and checking that the export predicts what the model does.

Keras writes every format itself (`Model.save`, `Model.export`); this module adds the check: the
exported model runs on real images of the data set and its probabilities are compared with the
Keras model's.
"""

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocnn.errors import ConfigError
from autocnn.trained import reference as models

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
ONNX_INSTALL = "pip install 'autocnn[onnx]'"  # tf2onnx, onnx and onnxruntime
TOLERANCE = 1e-4  # the largest difference in any class probability that counts as the same


@dataclass
class Check:
    images: int
    max_difference: float  # largest absolute difference of a class probability
    agreement: float  # fraction of images whose top class is the same
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_difference <= self.tolerance and self.agreement == 1.0


def export(loaded: models.LoadedModel, fmt: str, output) -> Path:
    """Write ``loaded`` in ``fmt`` to ``output`` (replaced if it exists); the path written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    path = Path(output)
    if fmt == "onnx":
        _require("tf2onnx", "onnx", "onnxruntime")
    if path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "keras":
        if path.suffix != ".keras":
            raise ConfigError(f"--output {output}: a Keras model file must end in .keras")
        return models.save(loaded, path, loaded.class_names)
    keras_format = {"savedmodel": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}[fmt]
    # Keras's exporters trace the model from its first call, and a model just loaded from a
    # file (or the registry) has never been called: call it once on one blank image.
    serving = _inference_only(loaded.model)
    serving(np.zeros((1, *loaded.input_shape), "float32"), training=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tf2onnx probes numpy's removed names
        serving.export(str(path), format=keras_format, verbose=False)
    models.write_classes(path, loaded.class_names)
    return path


def _inference_only(model):
    """``model`` called with ``training=False``, as a model of its own: Keras's SavedModel and
    ONNX exporters trace a plain call, in which the augmentation layers (flips, erasing) run
    as in training, so the export would transform every image it serves at random."""
    import keras

    inputs = keras.Input(model.input_shape[1:], name=model.inputs[0].name)
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def check(loaded: models.LoadedModel, fmt: str, path, images: np.ndarray,
          tolerance: float = TOLERANCE) -> Check:
    """Run the export at ``path`` and the Keras model on ``images`` and compare them."""
    # An export carries the network alone, not the flips averaged at test time (tta.py).
    expected = models.predict_probabilities(loaded.model, images, tta=False)
    got = predict(fmt, path, images)
    return Check(len(images), float(np.abs(got - expected).max()),
                 float(np.mean(got.argmax(-1) == expected.argmax(-1))), tolerance)


def predict(fmt: str, path, images: np.ndarray) -> np.ndarray:
    """Class probabilities from an exported model, through its own runtime."""
    images = images.astype("float32")
    if fmt == "keras":
        return models.predict_probabilities(models.load(str(path)).model, images, tta=False)
    if fmt == "savedmodel":
        import tensorflow as tf

        restored = tf.saved_model.load(str(path))  # kept: its function needs its variables
        return restored.serve(images).numpy()
    if fmt == "tflite":
        return _tflite(path, images)
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def _tflite(path, images):
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its successor
        interpreter = tf.lite.Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _require(*modules):
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {', '.join(missing)}, which this Python lacks: "
                          f"{ONNX_INSTALL}, or export keras, savedmodel or tflite")
