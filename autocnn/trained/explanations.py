"""Figures of what a trained model learned: its first layer's filters, the feature maps each
stage makes of an image, and from its predictions on a split, where it looked for each class
(class activation maps, see gradcam.py) and the mistakes it was surest of."""

import numpy as np

from autocnn.trained import gradcam

MAX_CLASSES = 10  # columns of the class-map grid; more would be too small to read
MISTAKES = 16


def class_examples(probabilities: np.ndarray, labels: np.ndarray, klass: int,
                   correct: int = 2) -> list[int | None]:
    """For class ``klass``: its ``correct`` most confidently right images, then the image of
    it the model was surest was something else; None where there is none."""
    predicted = probabilities.argmax(axis=-1)
    confidence = probabilities.max(axis=-1)
    right = np.flatnonzero((labels == klass) & (predicted == klass))
    wrong = np.flatnonzero((labels == klass) & (predicted != klass))
    right = right[np.argsort(-confidence[right], kind="stable")][:correct].tolist()
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:1].tolist()
    return right + [None] * (correct - len(right)) + (wrong or [None])


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray,
                       top: int = MISTAKES) -> list[int]:
    """The ``top`` misclassified images the model was surest of, surest first."""
    wrong = np.flatnonzero(probabilities.argmax(axis=-1) != labels)
    return wrong[np.argsort(-probabilities.max(axis=-1)[wrong], kind="stable")][:top].tolist()


def class_picks(probabilities: np.ndarray, labels: np.ndarray,
                num_classes: int) -> list[list[int | None]]:
    """`class_examples` of the first MAX_CLASSES classes: the class-map grid's columns."""
    return [class_examples(probabilities, labels, k)
            for k in range(min(num_classes, MAX_CLASSES))]


def plot_class_maps(model, images: dict, picks, probabilities, class_names):
    """A column per class of ``picks`` (see `class_picks`): two images it got right and the one
    of the class it was surest was another, each with where the model looked for its
    prediction. ``images``: index -> image array, for every index of ``picks``."""
    plt = _pyplot()
    classes = list(range(len(picks)))
    wanted = sorted({i for column in picks for i in column if i is not None})
    maps = dict(zip(wanted, gradcam.heatmaps(model, np.stack([images[i] for i in wanted]))
                    if wanted else []))
    figure, axes = plt.subplots(3, len(classes), figsize=(1.55 * len(classes) + 0.8, 5.4),
                                squeeze=False)
    for column, (klass, indices) in enumerate(zip(classes, picks)):
        axes[0, column].set_title(class_names[klass], fontsize=8, fontweight="bold", pad=12)
        for row, index in enumerate(indices):
            cell = axes[row, column]
            cell.axis("off")
            if index is None:
                cell.text(0.5, 0.5, "none", ha="center", va="center", fontsize=7,
                          transform=cell.transAxes)
                continue
            cell.imshow(gradcam.overlay(images[index], maps[index]), interpolation="nearest")
            guess = int(probabilities[index].argmax())
            said = "" if guess == klass else f"as {class_names[guess]} "
            cell.text(0.5, -0.08, f"{said}{probabilities[index, guess]:.2f}", ha="center",
                      va="top", fontsize=7, transform=cell.transAxes)
    for row, label in enumerate(("right, surest", "right", "wrong, surest")):
        axes[row, 0].text(-0.12, 0.5, label, rotation=90, ha="right", va="center", fontsize=8,
                          transform=axes[row, 0].transAxes)
    figure.suptitle("Where the model looked (red: the evidence for its prediction)",
                    fontsize=10)
    figure.tight_layout()
    return figure


def plot_mistakes(images: dict, indices: list[int], probabilities, labels, class_names):
    """The mistakes the model was surest of, each titled with its true and predicted class."""
    plt = _pyplot()
    columns = 4
    rows = max(1, -(-len(indices) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows),
                                squeeze=False)
    for cell in axes.flat:
        cell.axis("off")
    for cell, index in zip(axes.flat, indices):
        gradcam.show_image(cell, images[index])
        guess = int(probabilities[index].argmax())
        cell.set_title(f"{class_names[int(labels[index])]}\ntaken for {class_names[guess]} "
                       f"({probabilities[index, guess]:.2f})", fontsize=7)
    if not indices:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle("The mistakes the model was surest of (true class, then its answer)",
                    fontsize=10)
    figure.tight_layout()
    return figure


def first_kernels(model) -> np.ndarray | None:
    """The first convolution's kernels as (filters, height, width, input channels), looking
    inside a backbone too; None when the model has no convolution with a kernel of its own
    (a depthwise one has a kernel per channel, not per filter)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = first_kernels(layer)
            if found is not None:
                return found
        elif type(layer).__name__ == "Conv2D":
            kernel = np.asarray(layer.kernel)  # (height, width, in, out)
            return np.transpose(kernel, (3, 0, 1, 2))
    return None


def plot_filters(kernels: np.ndarray, limit: int = 32):
    """The first ``limit`` kernels as small images, each scaled to its own range: the edge and
    line detectors a first layer learns show as light-dark stripes."""
    plt = _pyplot()
    shown = kernels[:limit]
    columns = min(8, len(shown))
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows + 0.6),
                                squeeze=False)
    for cell in axes.flat:
        cell.axis("off")
    for cell, kernel in zip(axes.flat, shown):
        low, high = kernel.min(), kernel.max()
        scaled = (kernel - low) / (high - low) if high > low else np.zeros_like(kernel)
        rgb = scaled.shape[-1] == 3
        cell.imshow(scaled if rgb else scaled[..., 0], cmap=None if rgb else "gray",
                    interpolation="nearest")
    size = f"{kernels.shape[1]}x{kernels.shape[2]}"
    figure.suptitle(f"The first layer's filters ({len(shown)} of {len(kernels)}, {size}; "
                    "each to its own range; light: its largest weights)", fontsize=9)
    figure.tight_layout()
    return figure


def stage_layers(model) -> list:
    """The layers that end each stage of ``model``: the last feature map at each resolution,
    counted from the first layer with weights (the input and its augmentations are not
    features). A block's maps are those before its downsampling; a backbone is one stage."""
    layers = model.layers[1:]
    first = next((i for i, layer in enumerate(layers) if layer.weights), len(layers))
    stages = []
    for layer in layers[first:]:
        if len(layer.output.shape) != 4:
            continue
        if stages and stages[-1].output.shape[1:3] == layer.output.shape[1:3]:
            stages[-1] = layer
        else:
            stages.append(layer)
    return stages


def feature_maps(model, images: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each stage's feature maps of ``images``: (layer name, maps of shape (images, height,
    width, channels)), first stage first."""
    import keras

    stages = stage_layers(model)
    if not stages:
        return []
    probe = keras.Model(model.input, [gradcam.output_in(model, layer) for layer in stages])
    outputs = probe(np.asarray(images, "float32"), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [(layer.name, np.asarray(out, "float32")) for layer, out in zip(stages, outputs)]


def strongest_channels(maps: np.ndarray, count: int = 4) -> np.ndarray:
    """The ``count`` channels of one image's ``maps`` (height, width, channels) with the
    largest mean activation, each scaled to its own range, tiled two to a row with a gap of
    one NaN pixel (drawn blank)."""
    order = np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:count]
    height, width = maps.shape[:2]
    columns = min(2, len(order))
    rows = -(-len(order) // columns)
    tile = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan, "float32")
    for slot, channel in enumerate(order):
        m = maps[..., channel]
        low, high = m.min(), m.max()
        r, c = divmod(slot, columns)
        tile[r * (height + 1):r * (height + 1) + height,
             c * (width + 1):c * (width + 1) + width] = (m - low) / (high - low) \
            if high > low else 0.0
    return tile


def plot_feature_maps(model, images: dict, class_names):
    """For one image per class (``images``: class index -> image), the image and, for each
    stage of the model, the four feature maps it activates most: the first stage's follow
    edges and strokes, the deeper ones are coarser and respond to larger parts."""
    plt = _pyplot()
    classes = sorted(images)[:MAX_CLASSES]
    stages = feature_maps(model, np.stack([images[k] for k in classes]))
    figure, axes = plt.subplots(len(classes), 1 + len(stages), squeeze=False,
                                figsize=(1.5 * (1 + len(stages)) + 1.0, 1.45 * len(classes) + 1.0))
    for cell in axes.flat:
        cell.axis("off")
    for row, klass in enumerate(classes):
        gradcam.show_image(axes[row, 0], images[klass])
        axes[row, 0].text(-0.1, 0.5, class_names[klass], rotation=90, ha="right", va="center",
                          fontsize=8, transform=axes[row, 0].transAxes)
        for column, (_, maps) in enumerate(stages, start=1):
            axes[row, column].imshow(strongest_channels(maps[row]), cmap="viridis",
                                     interpolation="nearest")
    axes[0, 0].set_title("image", fontsize=8)
    for column, (name, maps) in enumerate(stages, start=1):
        axes[0, column].set_title(f"{name}\n{maps.shape[1]}x{maps.shape[2]}, "
                                  f"{maps.shape[3]} maps", fontsize=7)
    figure.suptitle("Feature maps: each stage's four most active (yellow: strong)", fontsize=10)
    figure.tight_layout()
    return figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
