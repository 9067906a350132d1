"""Image folders: one sub-folder per class, optionally already split into train/, val/, test/.

Every image is opened and fully decoded once (in threads) before training starts, so a corrupt,
truncated or non-image file is named up front instead of failing a trial half-way; training then
streams the files through `tf.data`.
"""

import collections
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from autocnn.config import DataConfig
from autocnn.data.splits import Loaded, Split
from autocnn.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def load_folder(folder: str, config: DataConfig) -> Loaded:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: no such folder")
    layout = _split_folders(root)
    if layout and "train" not in layout:
        raise DataError(f"{root}: has {', '.join(sorted(layout))}/ but no train/ sub-folder")
    class_names = _class_names(layout.get("train", root))
    files = {split: _list_images(path, class_names, split_root=split != "all")
             for split, path in (layout or {"all": root}).items()}
    info, bad = check_images([p for paths, _ in files.values() for p in paths], progress=True)
    if bad and not config.skip_bad_files:
        path, reason = next(iter(bad.items()))
        more = f" ({len(bad)} unreadable files in all)" if len(bad) > 1 else ""
        raise DataError(f"{path}: cannot read this image ({reason}){more}; fix or remove it, "
                        "or pass --skip-bad-files")
    splits, sizes, modes = {}, collections.Counter(), set()
    for split, (paths, labels) in files.items():
        keep = [i for i, p in enumerate(paths) if p not in bad]
        for i in keep:
            sizes[info[paths[i]][0]] += 1
            modes.add(info[paths[i]][1])
        splits["train" if split == "all" else split] = Split(
            np.asarray([labels[i] for i in keep], "int64"), paths=tuple(paths[i] for i in keep))
    _check_classes(root, splits["train"], class_names)
    height, width = config.image_size or sizes.most_common(1)[0][0]
    channels = config.channels or (1 if modes <= GRAY_MODES else 3)
    return Loaded(splits, class_names, (height, width, channels), tuple(sorted(bad)))


def _split_folders(root: Path) -> dict[str, Path]:
    return {SPLIT_FOLDERS[p.name]: p for p in _subdirs(root) if p.name in SPLIT_FOLDERS}


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_names(root: Path) -> tuple[str, ...]:
    names = tuple(p.name for p in _subdirs(root))
    if not names:
        raise DataError(f"{root}: no class sub-folders; put each class's images in a folder "
                        "named after the class (PATH/cat/1.jpg, PATH/dog/2.jpg, ...)")
    if len(names) == 1:
        raise DataError(f"{root}: only one class folder ({names[0]}); a classifier needs at "
                        "least two")
    return names


def _list_images(root: Path, class_names, split_root: bool):
    unknown = [p.name for p in _subdirs(root) if p.name not in class_names]
    if unknown and split_root:
        raise DataError(f"{root}: class folder(s) {', '.join(unknown)} are not in train/; "
                        "every split must use the training classes")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files and not split_root:
            raise DataError(f"{folder}: empty class folder; add images or remove the folder")
        for f in files:
            paths.append(str(f))
            labels.append(label)
    return paths, labels


def check_images(paths: list[str], progress: bool = False):
    """({path: ((height, width), PIL mode)} for readable images, {path: reason} for the rest)."""
    info, bad = {}, {}
    started, last = time.monotonic(), time.monotonic()
    workers = min(32, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for done, (path, result) in enumerate(zip(paths, pool.map(_inspect, paths)), 1):
            if isinstance(result, str):
                bad[path] = result
            else:
                info[path] = result
            if progress and time.monotonic() - last > 5:
                last = time.monotonic()
                log.info(f"checking images: {done}/{len(paths)} "
                         f"({done / (last - started):.0f} images/s)")
    return info, bad


def _inspect(path: str):
    from PIL import Image, UnidentifiedImageError

    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file: expected {', '.join(e[1:] for e in IMAGE_EXTENSIONS)}"
    try:
        with Image.open(path) as image:
            image.load()  # a full decode: catches truncated files, not only bad headers
            return (image.height, image.width), image.mode
    except UnidentifiedImageError:
        return "not an image, or a format Pillow cannot identify"
    except (OSError, SyntaxError, ValueError) as err:
        return str(err) or type(err).__name__


def _check_classes(root, train: Split, class_names):
    counts = np.bincount(train.labels, minlength=len(class_names))
    if counts.min() == 0:
        empty = class_names[int(counts.argmin())]
        raise DataError(f"{root}: class {empty!r} has no readable training images; add images "
                        "or remove the folder")
