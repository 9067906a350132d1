"""The training loss: cross-entropy on integer labels, with label smoothing when asked."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="autocnn")
class SmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy against integer labels smoothed by ``label_smoothing`` (Szegedy et al.
    2016): of K classes the true one gets 1 - s + s/K and every other s/K, so the network is
    not pushed towards ever more confident outputs. Keras's sparse cross-entropy has no such
    option and its categorical one wants one-hot labels; this takes the pipeline's labels."""

    def __init__(self, label_smoothing: float = 0.1, name: str = "smoothed_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def loss(label_smoothing: float):
    """The loss a model compiles with: Keras's own unless labels are smoothed."""
    if label_smoothing:
        return SmoothedCrossentropy(label_smoothing)
    return "sparse_categorical_crossentropy"
