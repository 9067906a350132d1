"""Array sources: digits (embedded), Fashion-MNIST and any IDX folder, .npz files, tfds:NAME."""

import gzip
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from autocnn.config import DataConfig
from autocnn.data.splits import Loaded, Split
from autocnn.errors import DataError

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def load_digits(config: DataConfig) -> Loaded:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # 8x8 images with values 0..16: scale to [0, 1] and add the channel axis.
    x = (bunch.images / 16.0).astype("float32")[..., np.newaxis]
    names = tuple(str(n) for n in bunch.target_names)
    return _in_memory({"train": (x, bunch.target)}, names, config)


def fashion_mnist_dirs(config: DataConfig) -> list[Path]:
    """Where Fashion-MNIST's IDX files are looked for, in order."""
    found = [config.data_dir, os.environ.get("AUTOCNN_DATA_DIR")]
    dirs = []
    for base in filter(None, found):
        dirs += [Path(base), Path(base) / "fashion-mnist", Path(base) / "fashion_mnist"]
    return dirs + [Path(DEBIAN_FASHION_DIR), Path.home() / ".keras/datasets/fashion-mnist"]


def find_idx_dir(dirs) -> Path | None:
    return next((d for d in dirs if all(_idx_path(d, f) for f in _all_idx_files())), None)


def load_fashion_mnist(config: DataConfig) -> Loaded:
    folder = find_idx_dir(fashion_mnist_dirs(config))
    if folder is not None:
        return _load_idx(folder, FASHION_CLASSES, config)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as err:  # any download failure: no network, proxy, bad cache
        looked = ", ".join(str(d) for d in fashion_mnist_dirs(config))
        raise DataError(
            f"fashion_mnist: the IDX files are not in {looked} and the download failed "
            f"({type(err).__name__}): install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or put the four *-ubyte.gz files in "
            "--data-dir") from None
    return _in_memory({"train": (x_train, y_train), "test": (x_test, y_test)},
                      FASHION_CLASSES, config)


def load_idx_dir(folder: str, config: DataConfig) -> Loaded:
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"idx:{folder}: no such folder")
    missing = [f for f in _all_idx_files() if not _idx_path(path, f)]
    if missing:
        raise DataError(f"idx:{folder}: missing {', '.join(missing)} (.gz or not); an IDX "
                        "folder holds MNIST's four files")
    return _load_idx(path, None, config)


def _load_idx(folder: Path, class_names, config) -> Loaded:
    arrays = {}
    for split, (images_file, labels_file) in IDX_FILES.items():
        x = read_idx(_idx_path(folder, images_file))
        y = read_idx(_idx_path(folder, labels_file))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {images_file} has shape {x.shape} and {labels_file} "
                            f"{y.shape}; expected (n, height, width) images and n labels")
        arrays[split] = (x, y)
    if class_names is None:
        top = max(int(y.max()) for _, y in arrays.values())
        class_names = tuple(str(i) for i in range(top + 1))
    return _in_memory(arrays, class_names, config)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not, with its magic number and length checked."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path}: cannot read it ({err}); the file is truncated or corrupt, "
                        "download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, "
                        "expected 0x0000 then a type code and the number of dimensions)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes where its header promises {expected} "
                        f"(shape {shape}); the file is truncated or corrupt")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_npz(file: str, config: DataConfig) -> Loaded:
    path = Path(file)
    if not path.is_file():
        raise DataError(f"{file}: no such file")
    x, y, names = _read_npz(path, file)
    if y.dtype.kind in "US" and names is None:
        names = np.unique(y)
        y = np.searchsorted(names, y)
    if names is None:
        names = np.arange(int(y.max()) + 1 if len(y) else 0)
    return _in_memory({"train": (x, y)}, tuple(str(n) for n in names), config, where=file)


def _read_npz(path: Path, file: str):
    """The x, y and class_names arrays of a .npz file (class_names None when absent)."""
    fix = "write one with numpy.savez(FILE, x=images, y=labels)"
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array
            raise DataError(f"{file}: a single array, not a .npz archive of x and y; {fix}")
        with archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise DataError(f"{file}: missing array(s) {', '.join(sorted(missing))}; a "
                                ".npz data set holds x (images), y (labels), optional "
                                f"class_names; it has {', '.join(archive.files) or 'nothing'}")
            names = archive["class_names"] if "class_names" in archive.files else None
            return archive["x"], archive["y"], names
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # numpy reads anything that is neither a zip nor an .npy header as a pickle.
        reason = "not a zip archive" if "pickle" in str(err) else str(err).splitlines()[0]
        raise DataError(f"{file}: not a readable .npz file ({reason}); {fix}") from None


def load_tfds(name: str, config: DataConfig) -> Loaded:
    """A tensorflow-datasets image classification set, read into memory as uint8."""
    import tensorflow_datasets as tfds

    data_dir = config.data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"tfds:{name}: tensorflow-datasets has no data set of that name; see "
                        "https://www.tensorflow.org/datasets/catalog/overview") from None
    try:
        if not builder.is_prepared():
            builder.download_and_prepare()
    except Exception as err:  # not found, no network, or a broken download
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"tfds:{name}: not prepared in {data_dir} and it cannot be downloaded ({first}); "
            f"run `tfds build {name} --data_dir DIR` where there is internet, copy DIR here and "
            "pass --data-dir DIR") from None
    keys = builder.info.supervised_keys
    label = builder.info.features[keys[1]] if keys else None
    if not keys or not hasattr(label, "names"):
        raise DataError(f"tfds:{name}: not an image classification set (no (image, label) keys)")
    arrays = {}
    available = list(builder.info.splits) or ["train", "validation", "test"]
    for split in ("train", "validation", "test"):
        if split in available:
            arrays["val" if split == "validation" else split] = _tfds_arrays(builder, split, config)
    return _in_memory(arrays, tuple(label.names), config, where=f"tfds:{name}")


def _tfds_arrays(builder, split, config):
    import tensorflow as tf

    shape = builder.info.features[builder.info.supervised_keys[0]].shape
    size = config.image_size
    if size is None and None in shape[:2]:
        raise DataError(f"tfds:{builder.name} has images of different sizes: pass "
                        "--image-size HxW")
    ds = builder.as_dataset(split=split, as_supervised=True)
    if size is not None:
        ds = ds.map(lambda x, y: (tf.cast(tf.image.resize(x, size, antialias=True), tf.uint8), y))
    xs, ys = [], []
    for x, y in ds.batch(1024).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _in_memory(arrays: dict, class_names, config, where: str | None = None) -> Loaded:
    checked = {split: from_arrays(x, y, where or split) for split, (x, y) in arrays.items()}
    from autocnn.data.inputs import fit_arrays  # TensorFlow: only once the arrays are known good

    splits = {}
    for split, (x, y) in checked.items():
        x = fit_arrays(x, config.image_size, config.channels)
        splits[split] = Split(check_labels(y, len(class_names), where or split), x)
    return Loaded(splits, tuple(class_names), tuple(splits["train"].images.shape[1:]))


def _all_idx_files():
    return [f for pair in IDX_FILES.values() for f in pair]


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


NAMED = {"digits": load_digits, "fashion_mnist": load_fashion_mnist}


def describe_sources(config: DataConfig) -> list[tuple[str, str, str]]:
    """(name, what it is, what is found on this machine) for every kind of source."""
    fashion = find_idx_dir(fashion_mnist_dirs(config))
    tfds_dir = Path(config.data_dir or os.environ.get("TFDS_DATA_DIR")
                    or "~/tensorflow_datasets").expanduser()
    prepared = sorted(p.name for p in tfds_dir.iterdir() if p.is_dir()) if tfds_dir.is_dir() else []
    return [
        ("digits", "scikit-learn's handwritten digits: 1,797 8x8 grayscale images, 10 classes",
         "available (embedded)"),
        ("fashion_mnist", "Zalando's Fashion-MNIST: 60,000 + 10,000 28x28 grayscale images, "
                          "10 classes",
         f"found in {fashion}" if fashion else
         "not found: apt-get install dataset-fashion-mnist, or pass --data-dir"),
        ("idx:DIR", "any folder holding MNIST's four IDX files (.gz or not)", ""),
        ("PATH/", "a folder with one sub-folder of images per class (jpg, png, bmp, gif); "
                  "its train/, val/ and test/ sub-folders are used when present", ""),
        ("FILE.npz", "arrays x (images) and y (labels), optional class_names", ""),
        ("tfds:NAME", "a tensorflow-datasets image classification set",
         f"prepared in {tfds_dir}: {', '.join(prepared)}" if prepared
         else f"none prepared in {tfds_dir}"),
    ]


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
