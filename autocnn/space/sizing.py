"""Layer-sizing arithmetic, used to reject impossible architectures before they are built.

For a convolution or pooling window of size F, stride S, padding P and dilation D on an input of
width W, the output width is ``floor((W + 2P - D(F - 1) - 1) / S) + 1``: a dilated window spans
D(F - 1) + 1 pixels with the F x F weights of an undilated one. Keras's ``padding="same"`` pads
so that the output is ``ceil(W / S)``; ``padding="valid"`` means P = 0.

`SizingOps` runs an architecture (see `blocks.py`) on sizes instead of tensors: it computes
every layer's output shape, parameter count and receptive field, the same numbers Keras reports
once the model is built, and raises `SizingError` at the first layer whose map would be empty.
"""

import math
from dataclasses import dataclass

from autocnn import tables
from autocnn.errors import SizingError
from autocnn.space import backbones
from autocnn.space.rules import CLOSED

PADDINGS = CLOSED["padding"]
_POOL_NAMES = {"max": "Max", "avg": "Average"}  # as Keras names its layers


def output_size(size: int, kernel: int, stride: int = 1, padding: str | int = "valid",
                dilation: int = 1) -> int:
    """Width of a conv or pooling output; ``padding`` is "same", "valid" or an explicit P."""
    if kernel < 1 or stride < 1 or dilation < 1:
        raise SizingError(f"kernel ({kernel}), stride ({stride}) and dilation ({dilation}) "
                          "must be at least 1")
    if padding == "same":
        return math.ceil(size / stride)
    pad = 0 if padding == "valid" else padding
    if not isinstance(pad, int) or pad < 0:
        raise SizingError(f"padding must be one of {PADDINGS} or an integer >= 0, got {padding!r}")
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def check_output(layer: str, size: tuple[int, int], kernel: int, stride: int = 1,
                 padding: str | int = "valid", dilation: int = 1) -> tuple[int, int]:
    """The (height, width) after ``layer``, or a SizingError when either would be below 1."""
    out = tuple(output_size(s, kernel, stride, padding, dilation) for s in size)
    if min(out) < 1:
        dilated = f", dilation {dilation}" if dilation > 1 else ""
        raise SizingError(
            f"{layer}: a {kernel}x{kernel} window{dilated}, stride {stride}, padding "
            f"{padding!r} on a {size[0]}x{size[1]} input gives {out[0]}x{out[1]}"
        )
    return out


@dataclass(frozen=True)
class Size:
    """A feature map's size, or a vector's (height and width None), and its receptive field."""

    height: int | None
    width: int | None
    channels: int
    receptive_field: int = 1  # input pixels (per side) one output unit sees
    jump: int = 1  # input pixels between neighbouring output units

    @property
    def shape(self) -> tuple:
        return (self.channels,) if self.height is None else (self.height, self.width,
                                                              self.channels)


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    shape: tuple
    params: int
    receptive_field: int


class SizingOps:
    """The layer vocabulary of `blocks.py`, computed on sizes: shapes, parameters, fields."""

    def __init__(self, input_shape, strict: bool = True):
        self.input_shape = tuple(input_shape)
        self.strict = strict  # False: let vanishing maps pass (to explore a space's names)
        self.rows: list[Row] = []
        self.macs = 0  # multiply-accumulates per image, a forward pass's cost (backbones: 0)

    @property
    def params(self) -> int:
        return sum(row.params for row in self.rows)

    def _add(self, name, kind, size: Size, params: int = 0) -> Size:
        self.rows.append(Row(name, kind, size.shape, params, size.receptive_field))
        return size

    def _window(self, x: Size, name, kernel, stride, padding, channels, dilation=1) -> Size:
        if self.strict:
            h, w = check_output(name, (x.height, x.width), kernel, stride, padding, dilation)
        else:
            h, w = (max(1, output_size(s, kernel, stride, padding, dilation))
                    for s in (x.height, x.width))
        span = dilation * (kernel - 1) + 1
        return Size(h, w, channels, x.receptive_field + (span - 1) * x.jump, x.jump * stride)

    def input(self) -> Size:
        h, w, c = self.input_shape
        return self._add("input", "Input", Size(h, w, c))

    def channels(self, x: Size) -> int:
        return x.channels

    def conv(self, x, name, filters, kernel, stride=1, padding="same", use_bias=True,
             dilation=1, **_):
        out = self._window(x, name, kernel, stride, padding, filters, dilation)
        self.macs += out.height * out.width * kernel * kernel * x.channels * filters
        return self._add(name, "Conv2D", out, kernel * kernel * x.channels * filters
                         + (filters if use_bias else 0))

    def depthwise(self, x, name, kernel, stride=1, padding="same", use_bias=True, dilation=1,
                  **_):
        out = self._window(x, name, kernel, stride, padding, x.channels, dilation)
        self.macs += out.height * out.width * kernel * kernel * x.channels
        return self._add(name, "DepthwiseConv2D", out, kernel * kernel * x.channels
                         + (x.channels if use_bias else 0))

    def pool(self, x, name, kind, size, stride, padding="valid"):
        out = self._window(x, name, size, stride, padding, x.channels)
        return self._add(name, f"{_POOL_NAMES[kind]}Pooling2D", out)

    def batch_norm(self, x, name):
        return self._add(name, "BatchNormalization", x, 4 * x.channels)

    def activation(self, x, name, kind):
        return x  # no shape change, no parameters: left out of the table

    def dropout(self, x, name, rate):
        return x

    def augment(self, x, settings):
        return x  # random transformations keep the shape and have no parameters

    def global_pool(self, x, name, kind):
        field = x.receptive_field + (max(x.height, x.width) - 1) * x.jump
        return self._add(name, f"Global{_POOL_NAMES[kind]}Pooling2D",
                         Size(None, None, x.channels, field, x.jump))

    def flatten(self, x, name):
        field = x.receptive_field + (max(x.height, x.width) - 1) * x.jump
        return self._add(name, "Flatten", Size(None, None, x.height * x.width * x.channels,
                                               field, x.jump))

    def dense(self, x, name, units, **_):
        out = Size(None, None, units, x.receptive_field, x.jump)
        self.macs += x.channels * units
        return self._add(name, "Dense", out, x.channels * units + units)

    def backbone(self, x, entry, size):
        """The resizing input layer and the pretrained network as one row each. Strict sizing
        builds the network once (randomly initialised) for its exact output shape."""
        self._add("backbone_input", "BackboneInput", Size(*size, 3, 1))
        if self.strict:
            shape = backbones.feature_shape(entry.name, tuple(size))
        else:
            shape = (*(backbones.feature_side(s) for s in size), entry.features)
        # Its field covers the whole (resized) image.
        out = Size(*shape, receptive_field=max(size), jump=math.ceil(max(size) / shape[0]))
        return self._add("backbone", entry.constructor, out, entry.params)

    def add(self, xs, name):
        shapes = {x.shape for x in xs}
        if len(shapes) > 1:
            raise SizingError(f"{name}: cannot add maps of shapes {sorted(shapes)}")
        field = max(x.receptive_field for x in xs)
        return self._add(name, "Add", Size(xs[0].height, xs[0].width, xs[0].channels, field,
                                           max(x.jump for x in xs)))

    def concat(self, xs, name):
        sizes = {(x.height, x.width) for x in xs}
        if len(sizes) > 1:
            raise SizingError(f"{name}: cannot concatenate maps of sizes {sorted(sizes)}")
        field = max(x.receptive_field for x in xs)
        return self._add(name, "Concatenate", Size(xs[0].height, xs[0].width,
                                                   sum(x.channels for x in xs), field,
                                                   max(x.jump for x in xs)))


def format_table(ops: SizingOps) -> str:
    """The per-layer table: layer, kind, output shape, parameters, receptive field."""
    header = ("layer", "kind", "output shape", "params", "receptive field")
    rows = [(r.name, r.kind, "x".join(map(str, r.shape)), f"{r.params:,}",
             f"{r.receptive_field}x{r.receptive_field}") for r in ops.rows]
    return f"{tables.format_table(header, rows, rule=True)}\ntotal parameters: {ops.params:,}"
