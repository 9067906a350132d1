import numpy as np
import pytest

from autocnn import data
from autocnn.errors import DataError


def test_digits_split_is_stratified_seeded_and_disjoint():
    ds = data.load("digits", seed=0)
    assert ds.input_shape == (8, 8, 1)
    assert ds.num_classes == 10
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 1797
    assert len(ds.y_test) == 360
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.x_train.dtype == np.float32
    # Stratified: every class has close to a tenth of the test split.
    assert np.bincount(ds.y_test, minlength=10).min() >= 35
    again = data.load("digits", seed=0)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = data.load("digits", seed=1)
    assert not np.array_equal(ds.y_test, other.y_test)
    train = {x.tobytes() for x in ds.x_train}
    assert not train & {x.tobytes() for x in ds.x_test}


def test_unknown_data_set_lists_the_valid_names():
    with pytest.raises(DataError, match=r"unknown data set 'mnist3': choose one of digits"):
        data.load("mnist3")


def test_a_class_too_small_to_split_is_named():
    x = np.zeros((12, 4, 4, 1), "float32")
    y = np.array([0] * 10 + [1] * 2)
    with pytest.raises(DataError, match=r"class 'cat' has 2 images"):
        data.split("tiny", x, y, ("dog", "cat"), seed=0, val_fraction=0.2, test_fraction=0.2)
