"""Fashion-MNIST and IDX folders, .npz files and tensorflow-datasets."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx, write_mnist_folder

from autocnn import data
from autocnn.config import DataConfig
from autocnn.data import sources
from autocnn.errors import DataError

REAL_FASHION = Path(sources.DEBIAN_FASHION_DIR)


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array, gz=False)
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "a"), array)


def test_idx_folder_loads_both_splits(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=False)
    ds = data.load(DataConfig(f"idx:{folder}", seed=0))
    assert ds.input_shape == (6, 5, 1)
    assert ds.class_names == ("0", "1", "2", "3")
    assert len(ds.test) == 20 and len(ds.train) + len(ds.val) == 40
    assert ds.train.images.dtype == np.uint8


def test_wrong_magic_number_is_named(tmp_path):
    folder = write_mnist_folder(tmp_path / "m")
    bad = folder / "train-images-idx3-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not an IDX file "
                                        r"\(magic number 12340803"):
        data.load(f"idx:{folder}")


def test_truncated_gz_is_named(tmp_path):
    folder = write_mnist_folder(tmp_path / "m")
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: cannot read it .*truncated"):
        data.load(f"idx:{folder}")


def test_idx_shorter_than_its_header_is_named(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=False)
    bad = folder / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: 43 bytes where its header "
                                        r"promises 48 \(shape \(40,\)\); the file is truncated"):
        data.load(f"idx:{folder}")


def test_idx_folder_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"idx:.*empty: missing train-images-idx3-ubyte"):
        data.load(f"idx:{tmp_path / 'empty'}")


def test_fashion_mnist_looks_in_data_dir_first(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOCNN_DATA_DIR", str(write_mnist_folder(tmp_path / "env", classes=10,
                                                                  n_train=60, n_test=30)))
    write_mnist_folder(tmp_path / "mine" / "fashion-mnist", classes=10, n_train=80, n_test=30)
    ds = data.load(DataConfig("fashion_mnist", data_dir=str(tmp_path / "mine")))
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"
    assert len(ds.train) + len(ds.val) == 80
    ds = data.load(DataConfig("fashion_mnist"))  # then $AUTOCNN_DATA_DIR
    assert len(ds.train) + len(ds.val) == 60


def test_fashion_mnist_missing_everywhere_says_where_to_put_it(tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AUTOCNN_DATA_DIR", raising=False)

    def offline():
        raise ConnectionError("no network")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DataError, match=r"fashion_mnist: the IDX files are not in .* and the "
                                        r"download failed \(ConnectionError\): install Debian's "
                                        r"dataset-fashion-mnist"):
        data.load("fashion_mnist")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_files():
    x = sources.read_idx(REAL_FASHION / "train-images-idx3-ubyte.gz")
    y = sources.read_idx(REAL_FASHION / "train-labels-idx1-ubyte.gz")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10
    assert sources.read_idx(REAL_FASHION / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
    ds = data.load("fashion_mnist")
    assert ds.input_shape == (28, 28, 1)
    assert len(ds.test) == 10000 and len(ds.train) + len(ds.val) == 60000
    assert ds.counts()["test"] == [1000] * 10


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_with_class_names_and_resizing(tmp_path):
    rng = np.random.default_rng(0)
    file = write_npz(tmp_path / "d.npz", x=rng.integers(0, 256, (30, 6, 6), dtype=np.uint8),
                     y=np.arange(30) % 3, class_names=np.array(["a", "b", "c"]))
    ds = data.load(DataConfig(file, image_size=(4, 4), channels=3))
    assert ds.class_names == ("a", "b", "c")
    assert ds.input_shape == (4, 4, 3)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 30


def test_npz_string_labels_become_class_names(tmp_path):
    file = write_npz(tmp_path / "s.npz", x=np.zeros((30, 4, 4), "float32"),
                     y=np.array(["dog", "cat", "eel"] * 10))
    assert data.load(file).class_names == ("cat", "dog", "eel")


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((5, 4, 4)), "y": np.zeros(4, int)},
     r"x has 5 images but y has 4 labels; they must have the same length"),
    ({"x": np.zeros((4, 4, 4)), "y": np.array([0, 1, 2, 7]), "class_names": np.array(["a", "b"])},
     r"labels must lie in 0..1 for 2 classes, got 0..7"),
    ({"x": np.full((4, 4, 4), np.nan), "y": np.array([0, 1, 0, 1])},
     r"x has NaN or infinite pixels"),
    ({"images": np.zeros((4, 4, 4))}, r"missing array\(s\) x, y"),
])
def test_bad_npz_is_named(tmp_path, arrays, message):
    file = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        data.load(file)


def test_tfds_loads_a_prepared_set(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=30):
        ds = data.load(DataConfig("tfds:mnist", data_dir=str(tmp_path)))
    assert ds.input_shape == (28, 28, 1)
    assert ds.num_classes == 10
    assert len(ds.test) == 30 and len(ds.val) == 30  # mnist's own splits, as mocked


def test_tfds_not_prepared_and_offline_says_where_to_put_it(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def offline(self, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(DataError, match=r"tfds:mnist: not prepared in .* and it cannot be "
                                        r"downloaded \(no network\); run `tfds build mnist "
                                        r"--data_dir DIR`"):
        data.load(DataConfig("tfds:mnist", data_dir=str(tmp_path)))


def test_tfds_unknown_name(tmp_path):
    with pytest.raises(DataError, match=r"tfds:no_such_set: tensorflow-datasets has no data set "
                                        r"of that name"):
        data.load(DataConfig("tfds:no_such_set", data_dir=str(tmp_path)))


def test_a_split_too_small_for_every_class_is_explained(tmp_path):
    file = write_npz(tmp_path / "s.npz", x=np.zeros((12, 4, 4), "float32"),
                     y=np.array(["cat", "dog", "eel"] * 4))
    with pytest.raises(DataError, match=r"cannot split off a validation split of 20%: .*add "
                                        r"images or change the fraction"):
        data.load(file)
