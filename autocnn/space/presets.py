"""The classic architectures as fixed points of the search space, scaled to the input.

Each preset fixes every hyperparameter of `hypermodel.py`, so it is a configuration the search could
have found: `--space preset:NAME` trains one, and a search tries a few of them first. They follow
the originals where the space can (LeNet-5 on a 32x32 input is the textbook network, 61,706
parameters) and scale where the input is smaller than the original's: fewer blocks (each one
halves the maps), "same" padding instead of "valid", fewer filters. Stages of different depth
(VGG-11's 1-1-2-2-2, ResNet-34's 3-4-6-3) become the same depth in every block. They all train
with Adam and the learning rate cut when validation accuracy stalls, as AlexNet, VGG and ResNet
were trained (by hand, with SGD).
"""

from autocnn.errors import ConfigError

PLAIN_TRAINING = {
    "flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "random_crop": False,
    "contrast": 0.0, "blur": False, "noise": 0.0, "erasing": 0.0, "stride": 1, "l2": 0.0,
    "label_smoothing": 0.0, "optimizer": "adam", "learning_rate": 1e-3, "lr_schedule": "plateau",
    "batch_size": 32, "dense_units_2": 0,
}


def _lenet5(blocks, small):
    return {"family": "plain", "num_blocks": min(2, blocks), "convs_per_block": 1, "filters": 6,
            "filter_growth": 16 / 6, "kernel_size": 5, "padding": "same" if small else "valid",
            "batch_norm": False, "activation": "tanh", "pooling": "avg", "pool_size": 2,
            "head": "flatten", "dense_units": 120, "dense_units_2": 84, "dropout": 0.0}


def _alexnet(blocks, small):
    return {"family": "plain", "num_blocks": min(3, blocks), "convs_per_block": 1,
            "filters": 64, "filter_growth": 2.0, "kernel_size": 3 if small else 5,
            "padding": "same", "batch_norm": False, "activation": "relu", "pooling": "max",
            "pool_size": 3, "head": "flatten", "dense_units": 256, "dense_units_2": 128,
            "dropout": 0.5}


def _vgg(convs):
    def preset(blocks, small):
        return {"family": "plain", "num_blocks": blocks, "convs_per_block": convs,
                "filters": 32 if small else 64, "filter_growth": 2.0, "kernel_size": 3,
                "padding": "same", "batch_norm": True, "activation": "relu", "pooling": "max",
                "pool_size": 2, "head": "flatten", "dense_units": 256, "dense_units_2": 128,
                "dropout": 0.5}
    return preset


def _resnet(units):
    def preset(blocks, small):
        return {"family": "residual", "num_blocks": blocks, "convs_per_block": units,
                "bottleneck": False, "filters": 32 if small else 64, "filter_growth": 2.0,
                "kernel_size": 3, "batch_norm": True, "activation": "relu", "pooling": "max",
                "pool_size": 2, "head": "gap", "dense_units": 0, "dropout": 0.0}
    return preset


def _densenet(blocks, small):
    return {"family": "dense", "num_blocks": blocks, "convs_per_block": 3, "growth_rate": 12,
            "compression": 0.5, "filters": 32, "filter_growth": 2.0, "kernel_size": 3,
            "batch_norm": True, "activation": "relu", "pooling": "avg", "pool_size": 2,
            "head": "gap", "dense_units": 0, "dropout": 0.0}


def _inception(blocks, small):
    return {"family": "inception", "num_blocks": blocks, "convs_per_block": 1,
            "factorize": False, "filters": 64, "filter_growth": 2.0, "kernel_size": 3,
            "batch_norm": True, "activation": "relu", "pooling": "max", "pool_size": 3,
            "head": "gap", "dense_units": 0, "dropout": 0.4}


def _mobilenet(blocks, small):
    # Downsampling by a strided depthwise convolution at the start of each block, no pooling.
    return {"family": "separable", "num_blocks": blocks, "convs_per_block": 2,
            "width_multiplier": 1.0, "filters": 32, "filter_growth": 2.0, "kernel_size": 3,
            "stride": 2, "padding": "same", "batch_norm": True, "activation": "relu",
            "pooling": "none", "head": "gap", "dense_units": 0, "dropout": 0.2}


def _nin(blocks, small):
    return {"family": "nin", "num_blocks": min(3, blocks), "convs_per_block": 2,
            "filters": 64 if small else 96, "filter_growth": 2.0,
            "kernel_size": 3 if small else 5, "padding": "same", "batch_norm": True,
            "activation": "relu", "pooling": "max", "pool_size": 3, "dense_units": 0,
            "dropout": 0.5}


PRESETS = {
    "lenet5": _lenet5, "alexnet": _alexnet, "vgg11": _vgg(1), "vgg13": _vgg(2),
    "vgg16": _vgg(3),
    "resnet18": _resnet(2), "resnet34": _resnet(3), "densenet": _densenet,
    "inception": _inception, "mobilenet": _mobilenet, "nin": _nin,
}
# Tried after the defaults, in order: (preset, changes). VGG-11 also with images shifted by up to
# 10% at random, the augmentation that is safe for nearly any image (a flip is not, for digits).
WARM_START = (("lenet5", {}), ("vgg11", {}), ("vgg13", {}), ("vgg11", {"translation": 0.1}),
              ("resnet18", {}), ("mobilenet", {}))


def preset(name: str, input_shape) -> dict:
    """Every hyperparameter's value for the preset ``name`` on ``input_shape``."""
    from autocnn.space.hypermodel import max_blocks

    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    blocks = max_blocks(input_shape)
    small = min(input_shape[:2]) < 32
    return {**PLAIN_TRAINING, "dilation": 1, **PRESETS[name](blocks, small)}


def split_space(value: str | None) -> tuple[str | None, str | None]:
    """``--space`` as (space file, preset name): ``preset:NAME`` names a preset."""
    if value and value.startswith("preset:"):
        return None, value[len("preset:"):]
    return value, None
