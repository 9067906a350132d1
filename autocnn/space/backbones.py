"""The registry of pretrained backbones: keras.applications networks without their top.

Each entry names its keras.applications constructor and preprocessing module, its native and
minimum input side, and its size without the top (convolutional parameters do not depend on the
input size). The table itself imports nothing heavy, so the command line can check a name before
TensorFlow starts; `Backbone.build` and `Backbone.preprocess` import Keras when called.

Weights: ``"imagenet"`` (Keras downloads the file once into ``$KERAS_HOME/models``, by default
``~/.keras/models``), a local weights file, or ``None`` for random initialisation.
"""

import functools
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from autocnn import tables
from autocnn.errors import ConfigError, WeightsError

PREPROCESSING = {
    "caffe": "RGB to BGR, ImageNet channel means subtracted (0-255 scale)",
    "tf": "scaled to [-1, 1]",
    "torch": "scaled to [0, 1], ImageNet channel means and deviations normalised",
    "in-model": "the network rescales 0-255 input itself",
}


@dataclass(frozen=True)
class Backbone:
    name: str
    constructor: str  # the keras.applications function
    module: str  # the keras.applications module whose preprocess_input the network expects
    native: int  # the input side it was trained at
    minimum: int  # the smallest input side Keras accepts
    params: int  # without the top
    features: int  # channels of its last feature map
    preprocessing: str  # a key of PREPROCESSING

    def input_size(self, size, upscale: int = 1) -> tuple[int, int]:
        """The side the images are resized to: ``upscale`` times theirs, at least the minimum,
        and not beyond the native size unless the images are already larger."""
        return tuple(max(self.minimum, min(side * upscale, max(side, self.native)))
                     for side in size)

    def build(self, input_shape, weights=None, name: str = "backbone"):
        """The network without its top, on ``input_shape`` (height, width, 3), named ``name``.

        ``weights``: "imagenet", a weights file's path, or None. A download that fails, or a
        file that does not fit, raises WeightsError saying what to do.
        """
        import keras

        constructor = getattr(keras.applications, self.constructor)
        with warnings.catch_warnings():
            # MobileNets warn when the input is not one of their pretrained sizes and load the
            # 224 weights, which suit any size.
            warnings.filterwarnings("ignore", message=".*`input_shape` is undefined or non-square")
            warnings.filterwarnings("ignore", message=".*input shape .* will be loaded")
            try:
                # Named afterwards: EfficientNet and ConvNeXt derive their weights file's
                # name from the name they are given.
                network = constructor(include_top=False, weights=weights,
                                      input_shape=tuple(input_shape))
            except Exception as err:  # Keras raises plain Exception on a failed download
                error = weights_error(self, weights, err)
                if error is None:
                    raise
                raise error from None
        network.name = name
        return network

    def preprocess(self, images):
        """Images on the 0-255 scale as this network expects them (Keras's own function)."""
        import keras

        return getattr(keras.applications, self.module).preprocess_input(images)


def _entry(name, constructor, module, params, features, preprocessing, native=224, minimum=32):
    return Backbone(name, constructor, module, native, minimum, params, features, preprocessing)


REGISTRY = {b.name: b for b in (
    _entry("vgg16", "VGG16", "vgg16", 14_714_688, 512, "caffe"),
    _entry("resnet50", "ResNet50", "resnet50", 23_587_712, 2048, "caffe"),
    _entry("resnet50v2", "ResNet50V2", "resnet_v2", 23_564_800, 2048, "tf"),
    _entry("densenet121", "DenseNet121", "densenet", 7_037_504, 1024, "torch"),
    _entry("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 2_257_984, 1280, "tf"),
    _entry("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 939_120, 576, "in-model"),
    _entry("efficientnet_b0", "EfficientNetB0", "efficientnet", 4_049_571, 1280, "in-model"),
    _entry("inception_v3", "InceptionV3", "inception_v3", 21_802_784, 2048, "tf",
           native=299, minimum=75),
    _entry("xception", "Xception", "xception", 20_861_480, 2048, "tf", native=299, minimum=71),
    _entry("convnext_tiny", "ConvNeXtTiny", "convnext", 27_820_128, 768, "in-model"),
)}
NAMES = tuple(REGISTRY)
DEFAULT = "mobilenet_v2"  # small, fast, and good at small inputs
WEIGHTS = ("imagenet", "none")  # or a path to a weights file


def get(name: str) -> Backbone:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}: choose one of {', '.join(NAMES)}") from None


def parse_names(text: str) -> list[str]:
    """``"all"`` or comma-separated names, each checked against the registry."""
    if text.strip() == "all":
        return list(NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--backbone needs a name, a comma-separated list or 'all'")
    return [get(n).name for n in names]


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, by default ~/.keras/models."""
    if "keras" in sys.modules:  # Keras's own answer (it falls back to /tmp when home is not
        try:                    # writable), without importing it just for this
            from keras.src.backend.config import keras_home

            return Path(keras_home()) / "models"
        except ImportError:
            pass
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def weights_error(backbone: Backbone, weights, err: Exception) -> WeightsError | None:
    """The clear error for weights that failed to load, or None when weights were not the
    cause."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if weights == "imagenet":
        url = re.search(r"https?://\S+?\.h5", str(err))
        if not url:
            return None
        filename = url.group(0).rsplit("/", 1)[-1]
        reason = first.rsplit(" -- ", 1)[-1] if " -- " in first else first
        return WeightsError(
            f"ImageNet weights for {backbone.name} could not be downloaded ({reason}): place "
            f"{filename} from {url.group(0)} in {keras_cache()}/, or pass --weights PATH (a local "
            "weights file) or --weights none")
    if weights is not None:
        return WeightsError(f"--weights {weights} does not fit {backbone.name} without its top: "
                            f"{first}")
    return None


def describe() -> str:
    """The registry as a table: parameters, input sizes, preprocessing."""
    header = ("backbone", "keras.applications", "params", "native", "min", "features",
              "preprocessing")
    rows = [(b.name, b.constructor, f"{b.params / 1e6:.1f}M", f"{b.native}x{b.native}",
             f"{b.minimum}x{b.minimum}", str(b.features), PREPROCESSING[b.preprocessing])
            for b in REGISTRY.values()]
    return tables.format_table(header, rows)


def feature_side(side: int) -> int:
    """A rough side of the last feature map (most of these networks halve the input 5 times)."""
    return max(1, math.ceil(side / 32))


@functools.cache
def feature_shape(name: str, size: tuple[int, int]) -> tuple[int, int, int]:
    """The shape of ``name``'s last feature map on ``size`` inputs (built once, unweighted)."""
    return tuple(get(name).build((*size, 3), None).output.shape[1:])
