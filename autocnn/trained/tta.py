"""Test-time augmentation: a model's class probabilities averaged over the image and its flips,
the flips it was trained with (its ``aug_flip`` layer's), none for a model trained without.

Only flips: a flipped image is as real a view as the image itself, where a rotated, zoomed or
erased one is a damaged copy. A model that learnt that a left-facing shoe is a shoe gives two
opinions of each test image this way, and their mean is the steadier one.
"""

import numpy as np

# The image axes each RandomFlip mode reverses, of (batch, height, width, channels).
FLIP_AXES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (2, 1)}


def flips(model) -> str:
    """The flips ``model`` saw in training, as RandomFlip names them, or "none"."""
    layer = next((layer for layer in model.layers if layer.name == "aug_flip"), None)
    return getattr(layer, "mode", "none")


def flip_axes(model) -> tuple[int, ...]:
    """The image axes ``model`` saw flipped in training; () when it saw none."""
    return FLIP_AXES.get(flips(model), ())


def averaged(model, images, axes=()) -> np.ndarray:
    """``model``'s probabilities for a batch of ``images``, averaged over the flips of
    ``axes`` (the image alone when there are none)."""
    import keras

    views = [images, *(keras.ops.flip(images, axis) for axis in axes)]
    return np.mean([np.asarray(model(view, training=False), "float32") for view in views],
                   axis=0)
