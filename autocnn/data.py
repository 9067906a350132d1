"""Data sources, each loaded into one `Dataset` with a seeded, stratified train/val/test split."""

from dataclasses import dataclass

import numpy as np

from autocnn.errors import DataError


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # float32, (n, height, width, channels), values in [0, 1]
    y_train: np.ndarray  # int labels in [0, len(class_names))
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        h, w, c = self.input_shape
        return (f"{self.name}: {h}x{w}x{c} images, {self.num_classes} classes, "
                f"{len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test")


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 images with values 0..16; scale to [0, 1] and add the channel axis.
    x = (bunch.images / 16.0).astype("float32")[..., np.newaxis]
    return x, bunch.target.astype("int64"), tuple(str(n) for n in bunch.target_names)


SOURCES = {"digits": _load_digits}


def list_sources() -> list[str]:
    return sorted(SOURCES)


def load(name: str, *, seed: int = 42, val_fraction: float = 0.2,
         test_fraction: float = 0.2) -> Dataset:
    """Load data set ``name`` and split it, stratified by class and seeded."""
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(list_sources())}")
    x, y, class_names = SOURCES[name]()
    return split(name, x, y, class_names, seed=seed, val_fraction=val_fraction,
                 test_fraction=test_fraction)


def split(name, x, y, class_names, *, seed, val_fraction, test_fraction) -> Dataset:
    """Stratified train/val/test split: the test split first, then val from what is left."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(class_names))
    if counts.min() < 3:
        raise DataError(
            f"{name}: class {class_names[int(counts.argmin())]!r} has {counts.min()} images; "
            "each class needs at least 3 to be split into train, val and test"
        )
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction, stratify=y_rest, random_state=seed)
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, tuple(class_names))
