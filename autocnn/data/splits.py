"""The shared types of the data layer: a `Split`, a `Dataset` of three, what a source returns
(`Loaded`), the stratified split and the data fingerprint.

A `Split` holds its labels in memory and its images either in memory (small sets: digits,
Fashion-MNIST, .npz, tensorflow-datasets) or as file paths that `tf.data` decodes on the fly in
parallel (image folders), so a folder far larger than memory still trains.
"""

import functools
import hashlib
import os
from dataclasses import dataclass

import numpy as np

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

    def inputs(self, splits=("train", "val", "test")) -> list[tuple[str, str, str, int]]:
        """The splits as a tracking store records its inputs: (context, name, digest, images),
        the context MLflow's (training, validation, test)."""
        contexts = {"train": "training", "val": "validation", "test": "test"}
        stem = os.path.basename(self.name.removeprefix("idx:").rstrip("/" + os.sep)) or self.name
        return [(contexts[name], f"{stem}-{name}", fingerprint_digest({name: split}), len(split))
                for name, split in self.splits.items() if name in splits]

    def batches(self, split: Split, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0):
        """Batches of (float32 images in [0, 1], int labels) for Keras, prefetched."""
        from autocnn.data import inputs

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


@dataclass
class Loaded:
    """What a source returns: its own splits (at least train) and what describes them."""

    splits: dict[str, Split]
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    skipped: tuple[str, ...] = ()


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
