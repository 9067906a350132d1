"""Test-time augmentation: the flips a model trained with, averaged in at prediction."""

import keras
import numpy as np
import pytest

from autocnn.trained import export, tta
from autocnn.trained import reference as models


def _model(flip: str | None):
    """A tiny classifier that tells where in an 4x4 image the light is, so a flip changes its
    answer; with a RandomFlip named as the space names it when ``flip``."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.RandomFlip(flip, name="aug_flip")(inputs) if flip else inputs
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


@pytest.mark.parametrize("flip, axes", [(None, ()), ("horizontal", (2,)), ("vertical", (1,)),
                                        ("horizontal_and_vertical", (2, 1))])
def test_the_axes_are_those_the_model_flipped_in_training(flip, axes):
    assert tta.flip_axes(_model(flip)) == axes


def test_a_model_trained_with_flips_is_scored_on_the_image_and_its_mirror():
    model = _model("horizontal")
    images = np.random.default_rng(0).random((5, 4, 4, 1)).astype("float32")
    alone = np.asarray(model(images, training=False))
    mirrored = np.asarray(model(images[:, :, ::-1], training=False))
    assert not np.allclose(alone, mirrored)  # else the test could not tell them apart
    got = models.predict_probabilities(model, images, batch_size=2)
    np.testing.assert_allclose(got, (alone + mirrored) / 2, rtol=1e-5)
    np.testing.assert_allclose(got.sum(axis=-1), 1, rtol=1e-5)
    np.testing.assert_allclose(models.predict_probabilities(model, images, tta=False), alone,
                               rtol=1e-5)


def test_a_model_trained_without_flips_is_scored_on_the_image_alone():
    model = _model(None)
    images = np.random.default_rng(1).random((3, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(models.predict_probabilities(model, images),
                               np.asarray(model(images, training=False)), rtol=1e-5)


@pytest.mark.parametrize("fmt, name", [("savedmodel", "tiny"), ("onnx", "tiny.onnx"),
                                       ("tflite", "tiny.tflite")])
def test_an_export_serves_the_network_alone_without_its_random_flips(fmt, name, tmp_path):
    """The export neither flips images at random, as in training, nor averages their flips,
    and its check expects neither."""
    loaded = models.LoadedModel(_model("horizontal"), ("a", "b", "c"), "tiny")
    path = export.export(loaded, fmt, tmp_path / name)
    images = np.random.default_rng(2).random((16, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(export.predict(fmt, path, images),
                               np.asarray(loaded.model(images, training=False)), atol=1e-5)
    assert export.check(loaded, fmt, path, images).passed


def test_predict_averages_the_flips_unless_told_not_to(tmp_path, capsys):
    """`autocnn predict` on image files: with flips averaged by default, the network alone
    with --no-tta, each as computed here from the images themselves."""
    import json

    from conftest import run_cli, write_images
    from PIL import Image

    model = _model("horizontal")
    path = models.save(model, tmp_path / "tiny.keras", ("a", "b", "c"))
    files = write_images(tmp_path / "images", 3, size=(4, 4), mode="L")
    images = np.stack([np.asarray(Image.open(f), "float32")[..., None] / 255 for f in files])
    alone = np.asarray(model(images, training=False))
    expected = {"--tta": (alone + np.asarray(model(images[:, :, ::-1], training=False))) / 2,
                "--no-tta": alone}
    assert not np.allclose(*expected.values(), atol=1e-3)  # else the flag could not show
    for flag, probabilities in expected.items():
        code, out, _ = run_cli(["predict", str(path), *map(str, files), "--top-k", "3",
                                "--format", "json", flag], capsys)
        assert code == 0
        for row, want in zip(json.loads(out), probabilities):
            got = {p["class"]: p["probability"] for p in row["predictions"]}
            np.testing.assert_allclose([got[c] for c in "abc"], want, atol=1e-5)
