"""Seeing the data: counts per class and split, pixel range, and a grid of samples per class."""

import numpy as np

from autocnn.data.splits import Dataset, Split
from autocnn.tables import format_table

MAX_GRID_CLASSES = 20


def describe(dataset: Dataset, sample: int = 512) -> str:
    """A plain-text summary: shape, value range, images per class in each split."""
    images = _images(dataset, dataset.train.take(np.arange(min(sample, len(dataset.train)))))
    lines = [dataset.summary(),
             f"pixel values: {images.min():.3f} .. {images.max():.3f} (mean {images.mean():.3f}), "
             f"on the first {len(images)} training images as the model sees them",
             ""]
    counts = dataset.counts()
    rows = [(name, *(c[i] for c in counts.values()))
            for i, name in enumerate(dataset.class_names)]
    rows.append(("total", *(sum(c) for c in counts.values())))
    lines.append(format_table(("class", *counts), rows, right=range(1, len(counts) + 1)))
    if dataset.skipped:
        lines += ["", f"{len(dataset.skipped)} unreadable files skipped:", *dataset.skipped]
    return "\n".join(lines)


def plot_samples(dataset: Dataset, per_class: int = 8, seed: int = 0):
    """A figure with one row per class (up to 20) of ``per_class`` training images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    classes = list(range(min(dataset.num_classes, MAX_GRID_CLASSES)))
    picks = []
    for label in classes:
        where = np.flatnonzero(dataset.train.labels == label)
        picks.append(np.sort(rng.choice(where, min(per_class, len(where)), replace=False)))
    images = _images(dataset, dataset.train.take(np.concatenate(picks)))
    fig, axes = plt.subplots(len(classes), per_class, squeeze=False,
                             figsize=(1.1 * per_class + 1.5, 1.1 * len(classes) + 0.6))
    start = 0
    for row, label in enumerate(classes):
        for col in range(per_class):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(picks[row]):
                image = images[start + col]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                          vmin=0, vmax=1)
        axes[row][0].text(-0.1, 0.5, dataset.class_names[label], transform=axes[row][0].transAxes,
                          ha="right", va="center", fontsize=9)
        start += len(picks[row])
    title = f"{dataset.name}: training samples per class"
    if dataset.num_classes > len(classes):
        title += f" (first {len(classes)} of {dataset.num_classes} classes)"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _images(dataset: Dataset, split: Split) -> np.ndarray:
    """The split's images exactly as the model sees them (decoded, resized, in [0, 1])."""
    batches = dataset.batches(split, 256)
    return np.concatenate([x.numpy() for x, _ in batches])
