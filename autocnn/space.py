"""The CNN search space: a keras-tuner `build(hp)` with each hyperparameter next to its layer.

`build_model(keras_tuner.HyperParameters(), ...)` gives a sensible fixed model: every
hyperparameter has an explicit default. Architectures that cannot exist for the input (a window
larger than the feature map it slides over) raise `SizingError` before the offending layer is
created; in a search, the trial is then marked failed with the reason and the search goes on.
"""

import keras
import keras_tuner as kt
from keras import layers

from autocnn import sizing
from autocnn.errors import SizingError

POOLING_LAYERS = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}


def build_model(hp: kt.HyperParameters, input_shape: tuple[int, int, int],
                num_classes: int) -> keras.Model:
    """A compiled VGG-style CNN: blocks of convolutions, each block ending in a 2x2 pooling."""
    inputs = keras.Input(shape=input_shape)
    x, size = inputs, tuple(input_shape[:2])
    num_blocks = hp.Int("num_blocks", 1, 3, default=2)
    convs_per_block = hp.Int("convs_per_block", 1, 2, default=1)
    filters = hp.Choice("filters", [16, 32, 64], default=32)
    kernel_size = hp.Choice("kernel_size", [3, 5], default=3)
    padding = hp.Choice("padding", list(sizing.PADDINGS), default="same")
    batch_norm = hp.Boolean("batch_norm", default=True)
    pooling = hp.Choice("pooling", list(POOLING_LAYERS), default="max")
    for block in range(1, num_blocks + 1):
        for conv in range(1, convs_per_block + 1):
            size = sizing.check_output(f"block {block} conv {conv}", size, kernel_size, 1, padding)
            # Filters double as the feature map halves (VGG); the bias is redundant before BN.
            x = layers.Conv2D(filters * 2 ** (block - 1), kernel_size, padding=padding,
                              use_bias=not batch_norm)(x)
            if batch_norm:
                x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        size = sizing.check_output(f"block {block} {pooling} pooling", size, 2, 2, "valid")
        x = POOLING_LAYERS[pooling](pool_size=2)(x)
    x = layers.Flatten()(x)
    dense_units = hp.Choice("dense_units", [0, 64, 128], default=64)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
    dropout = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.2)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="autocnn")
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class CNNHyperModel(kt.HyperModel):
    """The search space bound to one data set's input shape and class count.

    An impossible architecture does not raise in `build`: keras-tuner also builds while it
    explores the space (with default values, before any trial), where an exception would end the
    search. `build` returns a tiny stand-in that carries the reason instead, and `fit` fails the
    trial with it before any training.
    """

    def __init__(self, input_shape, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def build(self, hp):
        try:
            return build_model(hp, self.input_shape, self.num_classes)
        except SizingError as err:
            return _rejected_model(self.input_shape, self.num_classes, str(err))

    def fit(self, hp, model, *args, **kwargs):
        if getattr(model, "rejection", None):
            raise kt.errors.FailedTrialError(f"rejected by sizing: {model.rejection}")
        return super().fit(hp, model, *args, **kwargs)


def _rejected_model(input_shape, num_classes, reason: str) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    outputs = layers.Dense(num_classes)(layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs, name="rejected")
    model.rejection = reason
    return model


def active_values(hp: kt.HyperParameters) -> dict:
    """The values of the hyperparameters that shaped this model (inactive branches left out)."""
    return {name: value for name, value in hp.values.items() if hp.is_active(name)}
