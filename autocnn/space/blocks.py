"""The block families of the classic architectures, written once against a small layer vocabulary.

Each family is a function ``(ops, x, block, settings) -> x``. ``ops`` is either `KerasOps`
(which builds Keras layers) or `sizing.SizingOps` (which computes shapes, parameters and receptive
fields), so the same code that builds a model can size it first, and the two always agree.

- plain (VGG): stacks of convolutions.
- residual (ResNet): basic or bottleneck units with identity or projection shortcuts.
- dense (DenseNet): layers whose outputs are concatenated, growth rate k; 1x1 transitions.
- inception (GoogLeNet): parallel 1x1, 3x3, 5x5 and pooling branches with 1x1 reductions.
- separable (MobileNet): depthwise then pointwise convolutions, with a width multiplier.
- nin (Network in Network): mlpconv, a convolution followed by 1x1 convolutions.

A pretrained backbone (see `backbones.py`) enters through ``ops.backbone``: the images are
brought to what the network expects by `BackboneInput`, inside the model.
"""

from dataclasses import dataclass

import keras
from keras import layers

from autocnn.space import backbones


@dataclass(frozen=True)
class Settings:
    """The choices every block shares, fixed for one model."""

    filters: int  # this block's filters
    kernel_size: int
    padding: str
    stride: int  # of the block's first convolution
    convs: int  # convolutions (or units, or layers) per block
    batch_norm: bool
    activation: str
    l2: float
    extra: dict  # the family's own hyperparameters
    dilation: int = 1  # of the block's unstrided convolutions wider than 1x1


class KerasOps:
    """The layer vocabulary, building Keras layers (functional API)."""

    def __init__(self, input_shape, weights=None):
        """``weights``: a backbone's weights, "imagenet", a file's path or None."""
        self.input_shape = tuple(input_shape)
        self.weights = weights
        self.inputs = None

    def input(self):
        self.inputs = keras.Input(shape=self.input_shape, name="input")
        return self.inputs

    def channels(self, x) -> int:
        return int(x.shape[-1])

    def conv(self, x, name, filters, kernel, stride=1, padding="same", use_bias=True, l2=0.0,
             dilation=1):
        return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=use_bias,
                             dilation_rate=dilation, kernel_regularizer=_l2(l2), name=name)(x)

    def depthwise(self, x, name, kernel, stride=1, padding="same", use_bias=True, l2=0.0,
                  dilation=1):
        return layers.DepthwiseConv2D(kernel, strides=stride, padding=padding,
                                      use_bias=use_bias, dilation_rate=dilation,
                                      depthwise_regularizer=_l2(l2), name=name)(x)

    def pool(self, x, name, kind, size, stride, padding="valid"):
        cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
        return cls(size, strides=stride, padding=padding, name=name)(x)

    def batch_norm(self, x, name):
        # Momentum 0.9 (PyTorch's default): with Keras's 0.99 the moving statistics need ~500 steps
        # to settle, more than a small data set gives in a short trial, and validation suffers.
        return layers.BatchNormalization(momentum=0.9, name=name)(x)

    def activation(self, x, name, kind):
        return layers.Activation(kind, name=name)(x)

    def dropout(self, x, name, rate):
        return layers.Dropout(rate, name=name)(x) if rate else x

    def global_pool(self, x, name, kind):
        cls = layers.GlobalMaxPooling2D if kind == "max" else layers.GlobalAveragePooling2D
        return cls(name=name)(x)

    def flatten(self, x, name):
        return layers.Flatten(name=name)(x)

    def dense(self, x, name, units, activation=None, l2=0.0):
        # Under mixed precision the softmax stays float32, as Keras's guide advises: float16
        # probabilities underflow, and the loss with them.
        return layers.Dense(units, activation=activation, kernel_regularizer=_l2(l2),
                            dtype="float32" if activation == "softmax" else None,
                            name=name)(x)

    def augment(self, x, a: dict):
        """Random transformations, active only in training; a registered model is unaffected."""
        h, w = self.input_shape[:2]
        steps = [
            (a["flip"] != "none", lambda: layers.RandomFlip(a["flip"], name="aug_flip")),
            (a["rotation"], lambda: layers.RandomRotation(a["rotation"], name="aug_rotation")),
            (a["zoom"], lambda: layers.RandomZoom(a["zoom"], name="aug_zoom")),
            (a["translation"], lambda: layers.RandomTranslation(
                a["translation"], a["translation"], name="aug_translation")),
            # A random window of 80-100% of the image, resized back: zooming in only.
            (a["random_crop"], lambda: layers.RandomZoom((-0.2, 0.0), name="aug_crop")),
            (a["contrast"], lambda: layers.RandomContrast(a["contrast"], value_range=(0, 1),
                                                          name="aug_contrast")),
            (a["blur"] and min(h, w) >= 3, lambda: layers.RandomGaussianBlur(
                value_range=(0, 1), name="aug_blur")),
            (a["noise"], lambda: layers.GaussianNoise(a["noise"], name="aug_noise")),
            (a["erasing"], lambda: layers.RandomErasing(a["erasing"], value_range=(0, 1),
                                                        name="aug_erasing")),
        ]
        for wanted, layer in steps:
            if wanted:
                x = layer()(x)
        return x

    def backbone(self, x, entry: backbones.Backbone, size):
        """``entry``'s network on images brought to ``size`` and its preprocessing.

        With weights it is frozen and called with ``training=False``: its batch norm stays in
        inference mode even when layers are unfrozen for fine-tuning, as a few small batches
        would otherwise overwrite the statistics learnt on ImageNet. Without weights there is
        nothing to keep: the whole network trains from scratch.
        """
        x = BackboneInput(entry.name, size, name="backbone_input")(x)
        base = entry.build((*size, 3), self.weights, name="backbone")
        if self.weights is None:
            return base(x)
        base.trainable = False
        return base(x, training=False)

    def add(self, xs, name):
        return layers.Add(name=name)(xs)

    def concat(self, xs, name):
        return layers.Concatenate(name=name)(xs)


@keras.saving.register_keras_serializable(package="autocnn")
class BackboneInput(layers.Layer):
    """Images in [0, 1] as a backbone expects them: three channels (grayscale repeated),
    resized to ``size``, then the backbone's own preprocessing on the 0-255 scale.

    A layer rather than a Lambda, so a saved model loads in Keras's safe mode.
    """

    def __init__(self, backbone: str, size, **kwargs):
        super().__init__(**kwargs)
        self.backbone, self.size = backbone, tuple(size)

    def call(self, images):
        if images.shape[-1] == 1:
            images = keras.ops.repeat(images, 3, axis=-1)
        if tuple(images.shape[1:3]) != self.size:
            images = keras.ops.image.resize(images, self.size, interpolation="bilinear")
        return backbones.get(self.backbone).preprocess(images * 255.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, 3)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "size": list(self.size)}


def _l2(factor):
    return keras.regularizers.L2(factor) if factor else None


def conv_unit(ops, x, name, s: Settings, filters, kernel, stride=1, padding="same", act=True):
    """Convolution, then batch norm (when on; the conv's bias is then redundant), then act.
    An unstrided convolution takes the block's dilation (Keras cannot stride a dilated one)."""
    x = ops.conv(x, name, filters, kernel, stride, padding, use_bias=not s.batch_norm, l2=s.l2,
                 dilation=s.dilation if stride == 1 and kernel > 1 else 1)
    if s.batch_norm:
        x = ops.batch_norm(x, f"{name}_bn")
    return ops.activation(x, f"{name}_act", s.activation) if act else x


def plain(ops, x, block, s: Settings, last: bool = False):
    for i in range(1, s.convs + 1):
        x = conv_unit(ops, x, f"b{block}_conv{i}", s, s.filters, s.kernel_size,
                      s.stride if i == 1 else 1, s.padding)
    return x


def residual(ops, x, block, s: Settings, last: bool = False):
    bottleneck = s.extra.get("bottleneck", False)
    channels = ops.channels(x)
    for i in range(1, s.convs + 1):
        name, stride = f"b{block}_unit{i}", s.stride if i == 1 else 1
        if bottleneck:
            inner = max(s.filters // 4, 8)
            y = conv_unit(ops, x, f"{name}_reduce", s, inner, 1)
            y = conv_unit(ops, y, f"{name}_conv", s, inner, s.kernel_size, stride)
            y = conv_unit(ops, y, f"{name}_expand", s, s.filters, 1, act=False)
        else:
            y = conv_unit(ops, x, f"{name}_conv1", s, s.filters, s.kernel_size, stride)
            y = conv_unit(ops, y, f"{name}_conv2", s, s.filters, s.kernel_size, act=False)
        shortcut = x
        if channels != s.filters or stride != 1:
            shortcut = conv_unit(ops, x, f"{name}_project", s, s.filters, 1, stride, act=False)
        x = ops.activation(ops.add([y, shortcut], f"{name}_add"), f"{name}_out", s.activation)
        channels = s.filters
    return x


def dense(ops, x, block, s: Settings, last: bool):
    growth, compression = s.extra["growth_rate"], s.extra["compression"]
    for i in range(1, s.convs + 1):
        name = f"b{block}_layer{i}"
        y = ops.batch_norm(x, f"{name}_bn") if s.batch_norm else x
        y = ops.activation(y, f"{name}_act", s.activation)
        y = ops.conv(y, f"{name}_conv", growth, s.kernel_size, l2=s.l2,
                     dilation=s.dilation if s.kernel_size > 1 else 1)
        x = ops.concat([x, y], f"{name}_concat")
    if not last:  # transition: a 1x1 convolution compresses the concatenated channels
        compressed = max(int(ops.channels(x) * compression), 8)
        x = conv_unit(ops, x, f"b{block}_transition", s, compressed, 1)
    return x


def inception(ops, x, block, s: Settings, last: bool = False):
    f, name = s.filters, f"b{block}"
    one = conv_unit(ops, x, f"{name}_1x1", s, max(f // 4, 4), 1)
    three = conv_unit(ops, x, f"{name}_3x3_reduce", s, max(f // 4, 4), 1)
    three = conv_unit(ops, three, f"{name}_3x3", s, max(f // 2, 4), 3)
    five = conv_unit(ops, x, f"{name}_5x5_reduce", s, max(f // 16, 4), 1)
    if s.extra.get("factorize"):  # 5x5 as two 3x3: the same field, fewer weights
        five = conv_unit(ops, five, f"{name}_5x5a", s, max(f // 8, 4), 3)
        five = conv_unit(ops, five, f"{name}_5x5b", s, max(f // 8, 4), 3)
    else:
        five = conv_unit(ops, five, f"{name}_5x5", s, max(f // 8, 4), 5)
    pool = ops.pool(x, f"{name}_pool", "max", 3, 1, "same")
    pool = conv_unit(ops, pool, f"{name}_pool_proj", s, max(f // 8, 4), 1)
    return ops.concat([one, three, five, pool], f"{name}_concat")


def separable(ops, x, block, s: Settings, last: bool = False):
    width, stride = s.extra["width_multiplier"], s.stride
    if block == 1:
        # MobileNet opens with a full convolution: a depthwise filter on a grayscale image
        # would squeeze everything through a single channel.
        x = conv_unit(ops, x, "b1_stem", s, max(int(s.filters * width), 8), s.kernel_size,
                      stride, s.padding)
        stride = 1
    for i in range(1, s.convs + 1):
        name = f"b{block}_sep{i}"
        step = stride if i == 1 else 1
        x = ops.depthwise(x, f"{name}_dw", s.kernel_size, step, s.padding,
                          use_bias=not s.batch_norm, l2=s.l2,
                          dilation=s.dilation if step == 1 and s.kernel_size > 1 else 1)
        if s.batch_norm:
            x = ops.batch_norm(x, f"{name}_dw_bn")
        x = ops.activation(x, f"{name}_dw_act", s.activation)
        x = conv_unit(ops, x, f"{name}_pw", s, max(int(s.filters * width), 8), 1)
    return x


def nin(ops, x, block, s: Settings, last: bool = False):
    x = conv_unit(ops, x, f"b{block}_conv", s, s.filters, s.kernel_size, s.stride, s.padding)
    for i in range(1, s.convs + 1):  # the "micro network": 1x1 convolutions
        x = conv_unit(ops, x, f"b{block}_mlp{i}", s, s.filters, 1)
    return x


FAMILIES = {"plain": plain, "residual": residual, "dense": dense, "inception": inception,
            "separable": separable, "nin": nin}
