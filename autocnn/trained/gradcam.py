"""Class activation maps: where in an image a trained model looked for a class.

Grad-CAM (Selvaraju et al. 2017) weighs each channel of the last convolutional feature map by
the gradient of the class's score averaged over the map's positions. Here each position keeps
its own gradient: the map is the channels' sum of gradient times activation, with its negative
part cut off (HiResCAM, Draelos and Carin 2020). For a model that averages its last map before
the classifier the two are the same map; for one that flattens it (autocnn's default head) the
averaged gradient mixes evidence from every position, and the element-wise form stays what the
model computed. On the corner-square test (tests/trained/test_gradcam.py, three seeds) the
averaged form put the map's largest quadrant on the square that decides the class for 68-79% of
the images, the element-wise form for all of them. The map is scaled to [0, 1] and resized to
the image, to be drawn over it.

It works on every model autocnn builds: the feature map is the output of the last layer whose
output is still an image (height, width, channels), found by `feature_layer`; for a backbone
model that is the backbone itself, so its last feature map.
"""

import numpy as np

from autocnn.errors import ConfigError


def feature_layer(model):
    """The last layer of ``model`` whose output is a feature map (4-D: batch, height, width,
    channels), before the classifier flattens or pools it away; a pooling layer's input
    rather than its output, which keeps twice the resolution and the same information."""
    maps = [layer for layer in model.layers[1:] if len(layer.output.shape) == 4]
    if not maps:
        raise ConfigError(f"model {model.name!r} has no convolutional feature map to explain; "
                          "leave out --explain")
    unpooled = [layer for layer in maps if "Pooling" not in type(layer).__name__]
    return (unpooled or maps)[-1]


def heatmaps(model, images: np.ndarray, classes=None, batch_size: int = 64) -> np.ndarray:
    """Class activation maps of ``images`` (float32 in [0, 1], the model's input shape): one
    (height, width) map in [0, 1] per image, for ``classes`` (one class index per image;
    default: the class the model predicts)."""
    import keras
    import tensorflow as tf

    layer = feature_layer(model)
    probe = keras.Model(model.input, [output_in(model, layer), model.output])
    maps = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        with tf.GradientTape() as tape:
            features, probabilities = probe(batch, training=False)
            wanted = (tf.argmax(probabilities, axis=-1) if classes is None else
                      tf.constant(np.asarray(classes[start:start + batch_size]), tf.int64))
            scores = tf.gather(probabilities, wanted, axis=1, batch_dims=1)
        gradients = tape.gradient(scores, features)
        products = tf.cast(gradients, tf.float32) * tf.cast(features, tf.float32)
        cam = tf.nn.relu(tf.reduce_sum(products, axis=-1))
        maps.append(_scaled(cam.numpy()))
    maps = np.concatenate(maps) if maps else np.zeros((0, 1, 1), "float32")
    return np.asarray(tf.image.resize(maps[..., None], images.shape[1:3]))[..., 0]


def output_in(model, layer):
    """``layer``'s output in ``model``'s graph. A nested model's own ``output`` is its inner
    graph's, unconnected to ``model``'s inputs, and Keras has no public name for the tensor its
    call in ``model`` made: that call's node holds it."""
    import keras

    if isinstance(layer, keras.Model):
        return layer._inbound_nodes[-1].output_tensors[0]
    return layer.output


def _scaled(cam: np.ndarray) -> np.ndarray:
    """Each map divided by its largest value (an all-zero map stays zero)."""
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0).astype("float32")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """The image (height, width, 1 or 3, in [0, 1]) as RGB with the heat map drawn over it in
    the 'jet' colours, an RGB array in [0, 1]. The colour covers the image in proportion to the
    heat (at most ``alpha``), so the image shows through where the model did not look."""
    from matplotlib import colormaps

    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    heat = np.clip(heatmap, 0, 1)[..., None]
    colours = colormaps["jet"](heat[..., 0])[..., :3]
    return np.clip((1 - alpha * heat) * rgb + alpha * heat * colours, 0, 1).astype("float32")


def show_image(axes, image: np.ndarray) -> None:
    """Draw an image (height, width, 1 or 3, in [0, 1]) on matplotlib ``axes``, grayscale in
    grey; nearest-neighbour, so an 8x8 or 28x28 image shows its pixels, not a blur."""
    gray = image.shape[-1] == 1
    axes.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=1,
                interpolation="nearest")


def save_figure(image: np.ndarray, heatmap: np.ndarray, title: str, path) -> None:
    """The image and the heat map over it side by side, titled, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(5, 2.9))
    show_image(left, image)
    right.imshow(overlay(image, heatmap), interpolation="nearest")
    left.set_title("image", fontsize=9)
    right.set_title("where the model looked", fontsize=9)
    for axes in (left, right):
        axes.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
