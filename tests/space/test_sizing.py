import pytest

from autocnn.errors import SizingError
from autocnn.space import sizing


@pytest.mark.parametrize("size, kernel, stride, padding, expected", [
    (8, 3, 1, "valid", 6),       # (8 - 3 + 0) / 1 + 1
    (8, 5, 1, "same", 8),        # same keeps the size at stride 1
    (7, 2, 2, "same", 4),        # ceil(7 / 2)
    (28, 2, 2, "valid", 14),     # 2x2 pooling halves
    (32, 5, 1, 2, 32),           # explicit P = 2 with F = 5 keeps 32
    (227, 11, 4, 0, 55),         # AlexNet's first layer
    (13, 3, 2, "valid", 6),      # AlexNet's overlapping pooling
    (2, 3, 1, "valid", 0),       # the window no longer fits
])
def test_output_size(size, kernel, stride, padding, expected):
    assert sizing.output_size(size, kernel, stride, padding) == expected


def test_check_output_returns_both_dimensions():
    assert sizing.check_output("conv", (8, 6), 3, 1, "valid") == (6, 4)


def test_check_output_rejects_an_empty_map_and_names_the_layer():
    with pytest.raises(SizingError, match=r"block 2 conv 1: a 5x5 window.*on a 2x2 input gives"):
        sizing.check_output("block 2 conv 1", (2, 2), 5, 1, "valid")


@pytest.mark.parametrize("kernel, stride, padding", [(0, 1, "valid"), (3, 0, "valid"),
                                                     (3, 1, "full"), (3, 1, -1)])
def test_output_size_rejects_bad_arguments(kernel, stride, padding):
    with pytest.raises(SizingError):
        sizing.output_size(8, kernel, stride, padding)


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, expected", [
    (8, 3, 1, "valid", 2, 4),  # floor((8 + 0 - 2*2 - 1) / 1) + 1
    (28, 5, 1, 2, 2, 24),  # floor((28 + 4 - 2*4 - 1) / 1) + 1
    (9, 3, 2, "valid", 3, 2),  # floor((9 - 3*2 - 1) / 2) + 1
    (8, 3, 1, "same", 2, 8),
])
def test_a_dilated_window_spans_d_times_f_minus_one_plus_one(size, kernel, stride, padding,
                                                             dilation, expected):
    assert sizing.output_size(size, kernel, stride, padding, dilation) == expected

