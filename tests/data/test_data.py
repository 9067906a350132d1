import numpy as np
import pytest

from autocnn import data
from autocnn.config import DataConfig
from autocnn.data import Split
from autocnn.errors import DataError


def test_digits_split_is_stratified_seeded_and_disjoint():
    ds = data.load(DataConfig("digits", seed=0))
    assert ds.input_shape == (8, 8, 1)
    assert ds.num_classes == 10
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    assert len(ds.test) == 360
    assert ds.train.images.dtype == np.float32
    assert 0.0 <= ds.train.images.min() and ds.train.images.max() <= 1.0
    # Stratified: every class has close to a tenth of the test split.
    assert min(ds.counts()["test"]) >= 35
    again = data.load(DataConfig("digits", seed=0))
    np.testing.assert_array_equal(ds.test.images, again.test.images)
    other = data.load(DataConfig("digits", seed=1))
    assert not np.array_equal(ds.test.labels, other.test.labels)
    train = {x.tobytes() for x in ds.train.images}
    assert not train & {x.tobytes() for x in ds.test.images}


def test_unknown_data_set_lists_the_valid_names():
    with pytest.raises(DataError, match=r"unknown data set 'mnist3' \(no such file or folder\): "
                                        r"choose one of digits, fashion_mnist, a folder"):
        data.load("mnist3")


def test_a_class_too_small_to_split_is_named():
    split = Split(np.array([0] * 10 + [1]), np.zeros((11, 4, 4, 1), "float32"))
    with pytest.raises(DataError, match=r"tiny: class 'cat' has 1 image\(s\) left, too few to "
                                        r"split off a test split"):
        data.stratified_split(split, 0.2, 0, ("dog", "cat"), "tiny", "test")


def test_pipeline_scales_uint8_and_shuffles_reproducibly():
    images = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2, 1) * 6
    split = Split(np.arange(10), images)
    ds = data.Dataset("t", split, split, split, tuple("abcdefghij"), (2, 2, 1))
    x, y = next(iter(ds.batches(split, 4)))
    assert x.shape == (4, 2, 2, 1) and x.dtype.name == "float32"
    np.testing.assert_allclose(x.numpy(), images[:4] / 255.0, rtol=1e-6)
    first = [b[1].numpy().tolist() for b in ds.batches(split, 10, shuffle=True, seed=3)]
    second = [b[1].numpy().tolist() for b in ds.batches(split, 10, shuffle=True, seed=3)]
    assert first == second and first[0] != list(range(10))


def test_the_pipeline_yields_the_arrays_batches():
    """What a trial trains on is the arrays themselves: every image once an epoch, scaled to
    [0, 1], with its own label, in batches of the size asked for (also once rebatched)."""
    from autocnn.space.transfer import rebatch

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 3, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(10) * 20  # each image names its index in one pixel
    labels = rng.integers(0, 4, 10)
    split = Split(labels, images)
    ds = data.Dataset("t", split, split, split, tuple("abcd"), (3, 3, 1))
    batches = list(ds.batches(split, 4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]),
                                  images.astype("float32") / 255.0)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    rebatched = list(rebatch(ds.batches(split, 4), 3))
    assert [len(b[1]) for b in rebatched] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in rebatched]),
                                  images.astype("float32") / 255.0)
    shuffled = ds.batches(split, 4, shuffle=True, seed=1)
    orders = []
    for _ in range(2):  # two epochs: each a permutation, image and label kept together
        epoch = list(shuffled)
        x, y = (np.concatenate([b[i] for b in epoch]) for i in (0, 1))
        order = np.round(x[:, 0, 0, 0] * 255 / 20).astype(int)
        assert sorted(order) == list(range(10))
        np.testing.assert_array_equal(x, images[order].astype("float32") / 255.0)
        np.testing.assert_array_equal(y, labels[order])
        orders.append(order.tolist())
    assert orders[0] != orders[1]
