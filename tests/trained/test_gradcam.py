"""Grad-CAM is checked, not just drawn: on images whose class is a bright square's corner, the
heat map's mass must sit in that corner."""

import keras
import keras_tuner as kt
import numpy as np
import pytest

from autocnn.space.hypermodel import build_model
from autocnn.trained import gradcam

SIZE = 16


def corner_squares(count: int, seed: int = 0):
    """Dim noise, a bright 4x4 square in one of the four quadrants, whose quadrant is the
    class (0 top left, 1 top right, 2 bottom left, 3 bottom right), and as bright and as large
    a bar (2x8) in a quadrant drawn at random: a map that only follows brightness lands on
    either."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.3, (count, SIZE, SIZE, 1)).astype("float32")
    labels = rng.integers(0, 4, count)
    half = SIZE // 2
    for image, label, bar in zip(images, labels, rng.integers(0, 4, count)):
        bar_row, bar_col = divmod(int(bar), 2)
        top, left = bar_row * half + rng.integers(0, half - 1), bar_col * half
        image[top:top + 2, left:left + half] = 1.0
        row, col = divmod(int(label), 2)
        top, left = row * half + rng.integers(0, 5), col * half + rng.integers(0, 5)
        image[top:top + 4, left:left + 4] = 1.0
    return images, labels


def quadrant_shares(heatmap: np.ndarray) -> list[float]:
    half = SIZE // 2
    quadrants = [heatmap[:half, :half], heatmap[:half, half:], heatmap[half:, :half],
                 heatmap[half:, half:]]
    total = heatmap.sum() or 1.0
    return [q.sum() / total for q in quadrants]


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(3)
    model = build_model(kt.HyperParameters(), (SIZE, SIZE, 1), 4)
    images, labels = corner_squares(600)
    model.fit(images, labels, epochs=6, batch_size=32, verbose=0)
    return model


def test_the_heat_map_sits_on_the_square_that_decides_the_class(trained):
    images, labels = corner_squares(80, seed=1)
    predicted = trained.predict(images, verbose=0).argmax(axis=-1)
    assert (predicted == labels).mean() > 0.9  # the model learned the task
    maps = gradcam.heatmaps(trained, images, labels)
    assert maps.shape == (80, SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
    assert on_the_square(maps, labels) >= 0.9
    # The same model untrained looks at whatever is bright, bar or square: the check can fail.
    keras.utils.set_random_seed(3)
    untrained = build_model(kt.HyperParameters(), (SIZE, SIZE, 1), 4)
    assert on_the_square(gradcam.heatmaps(untrained, images, labels), labels) < 0.75


def on_the_square(maps, labels) -> float:
    """The share of maps whose largest quadrant is the one of the class's square."""
    return float(np.mean([np.argmax(quadrant_shares(m)) == label
                          for m, label in zip(maps, labels)]))


def test_the_feature_map_is_the_last_convolutional_one_before_its_pooling(trained):
    layer = gradcam.feature_layer(trained)
    assert len(layer.output.shape) == 4 and "Pooling" not in type(layer).__name__
    later = trained.layers[trained.layers.index(layer) + 1:]
    assert all("Pooling" in type(x).__name__ or len(x.output.shape) < 4 for x in later)


def test_the_overlay_is_rgb_for_grayscale_and_colour_images():
    heat = np.zeros((4, 4), "float32")
    heat[0, 0] = 1.0
    gray = gradcam.overlay(np.full((4, 4, 1), 0.5, "float32"), heat)
    colour = gradcam.overlay(np.full((4, 4, 3), 0.5, "float32"), heat)
    assert gray.shape == colour.shape == (4, 4, 3)
    assert 0 <= gray.min() and gray.max() <= 1
    # Red where the model looked most; the image itself, grey, where it did not look.
    assert gray[0, 0, 0] - gray[0, 0, 2] > 0.2 and np.allclose(gray[3, 3], 0.5)


def test_a_model_without_a_feature_map_is_a_clear_error():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="no convolutional feature map"):
        gradcam.feature_layer(model)


def test_a_backbone_models_map_is_the_backbones_last_feature_map():
    from conftest import backbone_model

    model, _, _ = backbone_model("mobilenet_v3_small", input_shape=(32, 32, 3), classes=3)
    assert gradcam.feature_layer(model).name == "backbone"
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    maps = gradcam.heatmaps(model, images)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.max() <= 1


def test_each_class_shows_its_surest_right_images_and_its_surest_mistake():
    from autocnn.trained import explanations

    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55],
                              [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1, 1, 0])
    # Class 0: right at 0.9 and 0.7 (0.6 is third), and image 5 taken for 1 at 0.7.
    assert explanations.class_examples(probabilities, labels, 0) == [0, 2, 5]
    # Class 1: one right image, no mistake.
    assert explanations.class_examples(probabilities, labels, 1) == [3, 4, None]
    assert explanations.confident_mistakes(probabilities, labels) == [5]
    labels[4] = 0  # now also wrong, at 0.55: the surer mistake comes first
    assert explanations.confident_mistakes(probabilities, labels, top=5) == [5, 4]


def test_the_first_layers_filters_are_found_in_scratch_and_backbone_models(trained):
    from conftest import backbone_model

    from autocnn.trained import explanations

    kernels = explanations.first_kernels(trained)
    first = next(layer for layer in trained.layers if type(layer).__name__ == "Conv2D")
    assert kernels.shape == (first.filters, 3, 3, 1)
    assert np.allclose(kernels[0], np.asarray(first.kernel)[..., 0])
    figure = explanations.plot_filters(kernels)
    assert len([a for a in figure.axes if a.images]) == min(32, first.filters)
    model, _, _ = backbone_model("resnet50", input_shape=(32, 32, 3), classes=3)
    assert explanations.first_kernels(model).shape == (64, 7, 7, 3)  # ResNet's 7x7 stem


def test_each_stage_shows_its_last_feature_maps_before_downsampling(trained):
    from conftest import backbone_model

    from autocnn.trained import explanations

    images, labels = corner_squares(4, seed=1)
    stages = explanations.feature_maps(trained, images)
    sizes = [maps.shape[1] for _, maps in stages]
    assert sizes[0] == SIZE and sizes == sorted(set(sizes), reverse=True)  # each stage smaller
    first = next(layer for layer in trained.layers if layer.name == stages[0][0])
    assert "Pooling" not in type(first).__name__
    direct = keras.Model(trained.inputs, first.output)(images, training=False)
    assert np.allclose(stages[0][1], np.asarray(direct), atol=1e-5)
    figure = explanations.plot_feature_maps(trained, dict(enumerate(images[:3])), list("abcd"))
    assert len([a for a in figure.axes if a.images]) == 3 * (1 + len(stages))
    model, _, _ = backbone_model("mobilenet_v3_small", input_shape=(32, 32, 3), classes=3)
    assert [layer.name for layer in explanations.stage_layers(model)] == ["backbone"]


def test_the_strongest_channels_are_tiled_each_to_its_own_range():
    from autocnn.trained import explanations

    maps = np.zeros((2, 3, 5), "float32")
    for channel, level in enumerate([1.0, 5.0, 3.0, 0.0, 4.0]):
        maps[..., channel] = level * np.arange(6).reshape(2, 3)
    tile = explanations.strongest_channels(maps)
    assert tile.shape == (2 * 2 + 1, 2 * 3 + 1)
    assert np.isnan(tile[2]).all() and np.isnan(tile[:, 3]).all()  # the gaps
    # Channels 1, 4, 2, 0 by mean activation, each scaled to [0, 1]: the same ramp in each.
    ramp = np.arange(6).reshape(2, 3) / 5
    for top, left in [(0, 0), (0, 4), (3, 0), (3, 4)]:
        assert np.allclose(tile[top:top + 2, left:left + 3], ramp)


@pytest.mark.parametrize("family", ["plain", "residual", "dense", "inception", "separable",
                                    "nin"])
def test_every_family_has_a_class_map_and_feature_maps_per_stage(family):
    from autocnn.space.blocks import FAMILIES
    from autocnn.trained import explanations

    assert family in FAMILIES
    hp = kt.HyperParameters()
    hp.Fixed("family", family)
    hp.Fixed("num_blocks", 2)
    keras.utils.set_random_seed(0)
    model = build_model(hp, (SIZE, SIZE, 3), 4)  # RGB, as most folders of photos are
    images = np.random.default_rng(0).uniform(0, 1, (3, SIZE, SIZE, 3)).astype("float32")
    maps = gradcam.heatmaps(model, images)
    assert maps.shape == (3, SIZE, SIZE) and np.isfinite(maps).all()
    stages = explanations.feature_maps(model, images)
    assert len(stages) >= 2 and stages[0][1].shape[1] == SIZE
    assert all(np.isfinite(m).all() for _, m in stages)
