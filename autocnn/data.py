"""Every data source loaded into one `Dataset`: seeded, stratified splits and `tf.data` pipelines.

A `Split` holds its labels in memory and its images either in memory (small sets: digits,
Fashion-MNIST, .npz, tensorflow-datasets) or as file paths that `tf.data` decodes on the fly in
parallel (image folders), so a folder far larger than memory still trains.
"""

import functools
import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np

from autocnn.config import DataConfig
from autocnn.errors import DataError

AUTO_CACHE_BYTES = 1 << 30  # decoded uint8 images up to 1 GiB are cached in memory


@dataclass(frozen=True)
class Split:
    """One split's labels, with its images in memory or as files decoded by `tf.data`."""

    labels: np.ndarray  # int64, (n,)
    images: np.ndarray | None = None  # (n, h, w, c): uint8 in 0..255 or float32 in [0, 1]
    paths: tuple[str, ...] | None = None  # image files, decoded and resized on the fly

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> "Split":
        indices = np.asarray(indices)
        return Split(self.labels[indices],
                     None if self.images is None else self.images[indices],
                     None if self.paths is None else tuple(self.paths[i] for i in indices))

    def concat(self, other: "Split") -> "Split":
        labels = np.concatenate([self.labels, other.labels])
        if self.images is not None:
            return Split(labels, np.concatenate([self.images, other.images]))
        return Split(labels, paths=self.paths + other.paths)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (height, width, channels) the model sees
    skipped: tuple[str, ...] = ()  # unreadable files left out with --skip-bad-files
    cache: str = "auto"
    orientation_matters: bool = False  # True for digits and letters: no flips

    @functools.cached_property
    def fingerprint(self) -> dict:
        """What identifies this data: its source, classes, input shape, split sizes and a
        digest of the contents (see fingerprint_digest). A project and every model version
        registered from it record it, so other data never resumes the project or competes
        with its models."""
        return {"source": absolute_source(self.name), "classes": list(self.class_names),
                "input_shape": list(self.input_shape),
                "splits": {name: len(split) for name, split in self.splits.items()},
                "digest": fingerprint_digest(self.splits)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def summary(self) -> str:
        h, w, c = self.input_shape
        text = (f"{self.name}: {h}x{w}x{c} images, {self.num_classes} classes, "
                f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test")
        if self.skipped:
            text += f" ({len(self.skipped)} unreadable files skipped)"
        return text

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each split."""
        return {name: np.bincount(split.labels, minlength=self.num_classes).tolist()
                for name, split in self.splits.items()}

    def pipeline(self, split: Split, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0):
        """Batches of (float32 images in [0, 1], int labels) for Keras, prefetched."""
        from autocnn import inputs

        return inputs.batches(split, self.input_shape, batch_size, shuffle=shuffle,
                                 seed=seed, cache=self._cache_for(split))

    def _cache_for(self, split: Split) -> bool:
        if split.paths is None:
            return False
        if self.cache != "auto":
            return self.cache == "memory"
        return len(split) * int(np.prod(self.input_shape)) <= AUTO_CACHE_BYTES


def fingerprint_digest(splits: dict[str, Split]) -> str:
    """A short SHA-256 of every split's labels and images: the arrays' bytes for images in
    memory; for image files, each file's path (relative to the files' common folder, so a
    moved folder keeps its digest), size and modification time, which is cheap for folders of
    any size and changes whenever a file does."""
    digest = hashlib.sha256()
    paths = [p for split in splits.values() for p in split.paths or ()]
    root = os.path.commonpath(paths) if len(paths) > 1 else ""
    for name, split in splits.items():
        digest.update(name.encode() + np.ascontiguousarray(split.labels, "int64").tobytes())
        if split.images is not None:
            digest.update(str(split.images.shape).encode() + split.images.dtype.str.encode())
            digest.update(np.ascontiguousarray(split.images).data)
        for path in split.paths or ():
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, root or None)}|{stat.st_size}|"
                          f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def absolute_source(dataset: str) -> str:
    """``dataset`` as a source that means the same from any folder: a file or folder that
    exists made absolute; a named source (digits, tfds:NAME) as it is."""
    kind, sep, rest = dataset.partition(":")
    if sep and kind == "idx":
        return f"idx:{absolute_source(rest)}"
    found = os.path.expanduser(dataset)
    if sep and kind == "tfds" or not os.path.exists(found):
        return dataset
    return os.path.abspath(found) + (os.sep if os.path.isdir(found) else "")


def describe_fingerprint(fingerprint: dict) -> str:
    """A fingerprint in one phrase: source, classes, shape, split sizes and digest."""
    classes = fingerprint["classes"]
    names = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    splits = "/".join(str(n) for n in fingerprint["splits"].values())
    return (f"{fingerprint['source']} ({len(classes)} classes: {names}; "
            f"{'x'.join(map(str, fingerprint['input_shape']))} images; {splits} train/val/test; "
            f"digest {fingerprint['digest']})")


def load(config: DataConfig | str, echo=None) -> Dataset:
    """Load the data set ``config.dataset`` and split it, stratified by class and seeded."""
    from autocnn import folders, sources

    if isinstance(config, str):
        config = DataConfig(dataset=config)
    name = config.dataset
    if name in sources.NAMED:
        loaded = sources.NAMED[name](config)
    elif name.startswith("idx:"):
        loaded = sources.load_idx_dir(name[4:], config)
    elif name.startswith("tfds:"):
        loaded = sources.load_tfds(name[5:], config)
    elif name.lower().endswith(".npz"):
        loaded = sources.load_npz(name, config)
    elif name.endswith(os.sep) or os.path.isdir(name):
        loaded = folders.load_folder(name, config, echo=echo)
    else:
        hint = "a file of an unknown kind" if os.path.exists(name) else "no such file or folder"
        raise DataError(f"unknown data set {name!r} ({hint}): choose one of "
                        f"{', '.join(sources.NAMED)}, a folder of class sub-folders (PATH/), "
                        "a .npz file, idx:DIR or tfds:NAME (see `autocnn datasets`)")
    return _finish(name, loaded, config)


@dataclass
class Loaded:
    """What a source returns: its own splits (at least train) and what describes them."""

    splits: dict[str, Split]
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    skipped: tuple[str, ...] = ()


def _finish(name, loaded: Loaded, config: DataConfig) -> Dataset:
    splits = dict(loaded.splits)
    names = loaded.class_names
    if "test" not in splits:
        splits["train"], splits["test"] = stratified_split(
            splits["train"], config.test_fraction, config.seed, names, name, "test")
    if "val" not in splits:
        splits["train"], splits["val"] = stratified_split(
            splits["train"], config.val_fraction, config.seed, names, name, "validation")
    return Dataset(name, splits["train"], splits["val"], splits["test"], tuple(names),
                   loaded.input_shape, loaded.skipped, config.cache,
                   orientation_matters=name == "digits" or name.startswith("idx:"))


def stratified_split(split: Split, fraction: float, seed: int, class_names, name: str,
                     what: str) -> tuple[Split, Split]:
    """(rest, held out): ``fraction`` of each class held out, seeded."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(split.labels, minlength=len(class_names))
    present = counts[counts > 0]
    if len(present) < 2:
        raise DataError(f"{name}: only one class has images; a classifier needs at least two")
    if counts.min() < 2:
        small = class_names[int(counts.argmin())]
        raise DataError(f"{name}: class {small!r} has {counts.min()} image(s) left, too few to "
                        f"split off a {what} split; add images (at least 3 per class) or "
                        "remove the class")
    try:
        rest, held = train_test_split(np.arange(len(split)), test_size=fraction,
                                      stratify=split.labels, random_state=seed)
    except ValueError as err:
        raise DataError(f"{name}: cannot split off a {what} split of {fraction:.0%}: {err}; "
                        "add images or change the fraction") from None
    return split.take(np.sort(rest)), split.take(np.sort(held))


def from_arrays(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked image and label arrays: (n, h, w, c) images, int64 labels, no NaN pixels."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise DataError(f"{where}: x has {len(x)} images but y has {len(y)} labels; "
                        "they must have the same length")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise DataError(f"{where}: images must have shape (n, height, width[, channels]) with "
                        f"1 or 3 channels, got {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{where}: x has NaN or infinite pixels; clean or drop those images")
        x = x.astype("float32")
    elif x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{where}: integer pixels must lie in 0..255, got {x.min()}..{x.max()}")
        x = x.astype("uint8")
    if x.shape[-1] == 4:
        x = x[..., :3]
    return x, y


def check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1} for {num_classes} "
                        f"classes, got {y.min()}..{y.max()}")
    return y.astype("int64")


def slug(dataset: str) -> str:
    """A short name for a data set, fit for an experiment: flowers for ~/data/flowers/."""
    base = dataset.split(":", 1)[-1].rstrip("/\\")
    base = os.path.splitext(os.path.basename(base))[0] if dataset.endswith(".npz") else \
        os.path.basename(base)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "data"
