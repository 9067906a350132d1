"""Layer-sizing arithmetic, used to reject impossible architectures before they are built.

For a convolution or pooling window of size F, stride S and padding P on an input of width W,
the output width is ``floor((W - F + 2P) / S) + 1``. Keras's ``padding="same"`` pads so that the
output is ``ceil(W / S)``; ``padding="valid"`` means P = 0.
"""

import math

from autocnn.errors import SizingError

PADDINGS = ("same", "valid")


def output_size(size: int, kernel: int, stride: int = 1, padding: str | int = "valid") -> int:
    """Width of a conv or pooling output; ``padding`` is "same", "valid" or an explicit P."""
    if kernel < 1 or stride < 1:
        raise SizingError(f"kernel ({kernel}) and stride ({stride}) must be at least 1")
    if padding == "same":
        return math.ceil(size / stride)
    pad = 0 if padding == "valid" else padding
    if not isinstance(pad, int) or pad < 0:
        raise SizingError(f"padding must be one of {PADDINGS} or an integer >= 0, got {padding!r}")
    return (size - kernel + 2 * pad) // stride + 1


def check_output(layer: str, size: tuple[int, int], kernel: int, stride: int = 1,
                 padding: str | int = "valid") -> tuple[int, int]:
    """The (height, width) after ``layer``, or a SizingError when either would be below 1."""
    out = tuple(output_size(s, kernel, stride, padding) for s in size)
    if min(out) < 1:
        raise SizingError(
            f"{layer}: a {kernel}x{kernel} window, stride {stride}, padding {padding!r} "
            f"on a {size[0]}x{size[1]} input gives {out[0]}x{out[1]}"
        )
    return out
