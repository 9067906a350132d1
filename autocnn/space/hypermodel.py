"""The CNN search space: a keras-tuner `build(hp)` with each hyperparameter next to what it shapes.

`build_model(keras_tuner.HyperParameters(), ...)` gives a sensible fixed model: every
hyperparameter has an explicit default, and the defaults adapt to the input size (an 8x8 input
gets at most two downsampling blocks). Family-specific hyperparameters are conditional on
``family``. Before any Keras layer exists, the architecture is run through `sizing.SizingOps`:
a configuration whose feature maps would vanish, or whose parameters exceed ``max_params``, raises
`SizingError` with the layer and the numbers.
"""

import functools
import math
import warnings

import keras
import keras_tuner as kt

from autocnn.errors import SizingError, WeightsError
from autocnn.space import backbones, blocks, losses, schedules, sizing, transfer
from autocnn.space import rules as rules_module
from autocnn.space.rules import CLOSED, Space

SCRATCH = tuple(blocks.FAMILIES)  # trained from scratch; "backbone" is the other family
FAMILY_PADDING = ("plain", "separable", "nin")  # the others keep maps aligned: always "same"


def max_blocks(input_shape) -> int:
    """Downsampling blocks an input can take while its maps keep at least 2x2 pixels."""
    return max(1, min(5, int(math.log2(min(input_shape[:2]))) - 1))


def architecture(hp: "Space", ops, num_classes: int):
    """The model's layers through ``ops`` (Keras or sizing); returns the output."""
    x = augmentation(hp, ops, ops.input())
    family = hp.choice("family", list(CLOSED["family"]), "plain")
    if family == "backbone":
        with hp.conditional_scope("family", ["backbone"]):
            x = backbone_features(hp, ops, x)
        return classifier(hp, ops, x, "relu", 0.0, num_classes)
    x, activation, l2 = convolutional(hp, ops, x, family)
    return classifier(hp, ops, x, activation, l2, num_classes)


def convolutional(hp: "Space", ops, x, family: str):
    """A network trained from scratch: blocks of ``family``, downsampling, then pooling or
    flattening to a vector. Returns it with the activation and L2 factor the head shares.

    keras-tuner cannot nest two conditions on ``family``, so what only some of these families
    have is declared outside the scope all of them share.
    """
    with hp.conditional_scope("family", list(SCRATCH)):
        most = max_blocks(ops.input_shape)
        num_blocks = hp.integer("num_blocks", 1, most, min(2, most))
        convs = hp.integer("convs_per_block", 1, 3, 1)
        filters = hp.choice("filters", [16, 32, 64], 32)
        filter_growth = hp.choice("filter_growth", [1.0, 2.0], 2.0)  # per block; VGG doubles
        kernel_size = hp.choice("kernel_size", [1, 3, 5, 7], 3)
        stride = hp.choice("stride", [1, 2], 1)
        dilation = hp.choice("dilation", [1, 2], 1)  # a wider view for the same weights
        batch_norm = hp.boolean("batch_norm", True)
        activation = hp.choice("activation", ["relu", "elu", "gelu", "swish"], "relu")
        l2 = hp.choice("l2", [0.0, 1e-5, 1e-4, 1e-3], 0.0)
        pooling = hp.choice("pooling", list(CLOSED["pooling"]), "max")
        pool_size = 2
        if pooling in ("max", "avg"):
            with hp.conditional_scope("pooling", ["max", "avg"]):
                # 3 with stride 2 is AlexNet's overlapping pooling.
                pool_size = hp.choice("pool_size", [2, 3], 2)
    padding = "same"
    if family in FAMILY_PADDING:
        with hp.conditional_scope("family", list(FAMILY_PADDING)):
            padding = hp.choice("padding", list(CLOSED["padding"]), "same")
    extra = family_hyperparameters(hp, family)
    for block in range(1, num_blocks + 1):
        block_filters = min(round(filters * filter_growth ** (block - 1)), 512)
        settings = blocks.Settings(block_filters, kernel_size, padding,
                                   stride, convs, batch_norm, activation, l2, extra, dilation)
        x = blocks.FAMILIES[family](ops, x, block, settings, last=block == num_blocks)
        x = downsample(ops, x, block, pooling, pool_size, settings)
    return to_vector(hp, ops, x, family), activation, l2


def backbone_features(hp: "Space", ops, x):
    """A pretrained network, frozen, pooled to a vector; and how to fine-tune it (see
    `transfer.py`, which reads the fine-tuning hyperparameters when it trains)."""
    name = hp.choice("backbone", list(CLOSED["backbone"]), backbones.DEFAULT)
    # Upscaling small images lets the network's features see more than a few pixels.
    upscale = hp.choice("upscale", [1, 2, 4], 1)
    pooling = hp.choice("backbone_pooling", list(CLOSED["backbone_pooling"]), "avg")
    if hp.boolean("fine_tune", False):
        with hp.conditional_scope("fine_tune", [True]):
            hp.choice("head_epochs", [1, 2, 3, 5], 3)  # with the backbone frozen, first
            hp.choice("unfreeze", [0.1, 0.25, 0.5, 1.0], 0.25)  # top fraction of its layers
            hp.choice("fine_tune_lr_ratio", [0.01, 0.1], 0.1)  # times learning_rate
    entry = backbones.get(name)
    x = ops.backbone(x, entry, entry.input_size(ops.input_shape[:2], upscale))
    return ops.global_pool(x, transfer.FEATURES, pooling)


def augmentation(hp, ops, x):
    """Searchable data augmentation, all off by default (flips stay off where orientation
    carries meaning: the search fixes ``flip`` to none for such data)."""
    settings = {
        "flip": hp.choice("flip", ["none", "horizontal", "horizontal_and_vertical"], "none"),
        "rotation": hp.choice("rotation", [0.0, 0.05, 0.1], 0.0),  # fraction of a full turn
        "zoom": hp.choice("zoom", [0.0, 0.1, 0.2], 0.0),
        "translation": hp.choice("translation", [0.0, 0.1, 0.2], 0.0),
        "random_crop": hp.boolean("random_crop", False),
        "contrast": hp.choice("contrast", [0.0, 0.1, 0.2], 0.0),
        "blur": hp.boolean("blur", False),
        "noise": hp.choice("noise", [0.0, 0.02, 0.05], 0.0),  # Gaussian, standard deviation
        # Of each image, the chance that a random rectangle of it becomes noise (Zhong et al.)
        "erasing": hp.choice("erasing", [0.0, 0.25, 0.5], 0.0),
    }
    return ops.augment(x, settings)


def family_hyperparameters(hp, family: str) -> dict:
    """The hyperparameters only one family has, declared under ``family``'s condition."""
    with hp.conditional_scope("family", [family]):
        if family == "residual":
            return {"bottleneck": hp.boolean("bottleneck", False)}
        if family == "dense":
            return {"growth_rate": hp.choice("growth_rate", [12, 24, 32], 12),
                    "compression": hp.choice("compression", [0.5, 1.0], 0.5)}
        if family == "inception":
            return {"factorize": hp.boolean("factorize", False)}
        if family == "separable":
            return {"width_multiplier": hp.choice("width_multiplier", [0.5, 0.75, 1.0], 1.0)}
    return {}


def downsample(ops, x, block, pooling, pool_size, settings):
    if pooling == "none":
        return x
    if pooling == "strided":  # a learned downsampling: a 3x3 convolution with stride 2
        return blocks.conv_unit(ops, x, f"b{block}_down", settings, ops.channels(x), 3, 2)
    return ops.pool(x, f"b{block}_{pooling}pool", pooling, pool_size, 2)


def to_vector(hp, ops, x, family):
    kind = "gap"  # Network in Network ends in global average pooling by design
    if family != "nin":
        with hp.conditional_scope("family", [f for f in SCRATCH if f != "nin"]):
            kind = hp.choice("head", list(CLOSED["head"]), "flatten")
    if kind == "flatten":
        return ops.flatten(x, "flatten")
    pool = "max" if kind == "gmp" else "avg"
    return ops.global_pool(x, f"global_{pool}pool", pool)


def classifier(hp, ops, x, activation, l2, num_classes):
    """Up to two hidden dense layers, dropout, and the softmax: shared by every family."""
    dense_units = hp.choice("dense_units", [0, 64, 128, 256], 64)
    second_units = hp.choice("dense_units_2", [0, 64, 128], 0)  # used when dense_units > 0
    if dense_units:
        x = ops.dense(x, "fc", dense_units, activation=activation, l2=l2)
        if second_units:
            x = ops.dense(x, "fc2", second_units, activation=activation, l2=l2)
    x = ops.dropout(x, "dropout", hp.number("dropout", 0.0, 0.5, 0.2, step=0.1))
    return ops.dense(x, "classifier", num_classes, activation="softmax")


def compile_model(model: keras.Model, hp: "Space") -> keras.Model:
    model.compile(optimizer=create_optimizer(hp), loss=create_loss(hp), metrics=["accuracy"])
    return model


def create_loss(hp: "Space"):
    return losses.loss(hp.choice("label_smoothing", [0.0, 0.1], 0.0))


def create_optimizer(hp: "Space") -> keras.optimizers.Optimizer:
    optimizer = hp.choice("optimizer", list(CLOSED["optimizer"]), "adam")
    learning_rate = hp.number("learning_rate", 1e-4, 1e-2, 1e-3, sampling="log")
    # Applied by fit. Cosine by default: 1.2 points of test accuracy for the defaults on
    # Fashion-MNIST over a constant rate, the largest gain of the recipe (benchmarks/recipe.py).
    hp.choice("lr_schedule", list(CLOSED["lr_schedule"]), "cosine")
    if optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=1e-4)
    return keras.optimizers.Adam(learning_rate)


def size_model(hp: kt.HyperParameters, input_shape, num_classes,
               max_params: int | None = None, rules: dict | None = None):
    """The architecture run on sizes: a `SizingOps` with its per-layer rows, or SizingError."""
    ops = sizing.SizingOps(input_shape)
    architecture(Space(hp, rules), ops, num_classes)
    if max_params and ops.params > max_params:
        raise SizingError(f"{ops.params:,} parameters exceed the limit of {max_params:,} "
                          "(--max-params)")
    return ops


def build_model(hp: kt.HyperParameters, input_shape, num_classes: int,
                max_params: int | None = None, rules: dict | None = None,
                weights=None) -> keras.Model:
    """Size the architecture first (SizingError when impossible), then build and compile it.

    ``rules``: values fixed, restricted or widened from outside (see `rules.py`).
    ``weights``: a backbone's, "imagenet", a file's path or None (WeightsError when missing).
    """
    size_model(hp, input_shape, num_classes, max_params, rules)
    ops = blocks.KerasOps(input_shape, weights)
    space = Space(hp, rules)
    outputs = architecture(space, ops, num_classes)
    model = keras.Model(ops.inputs, outputs, name=f"autocnn_{hp.get('family')}")
    return compile_model(model, space)


class CNNHyperModel(kt.HyperModel):
    """The search space bound to one data set's input shape and class count.

    An impossible architecture does not raise in `build`: keras-tuner also builds while it
    explores the space (with default values, before any trial), where an exception would end the
    search. `build` returns a tiny stand-in that carries the reason instead (the same for
    backbone weights that cannot be had), and `fit` fails the trial with it before any training.

    Backbones join the space only when the rules ask for them (see `with_defaults`).
    ``weights``: the backbones' weights; ``feature_cache``: where frozen backbones' features are
    kept between epochs and trials (None to compute them afresh, as for a benchmark);
    ``strategy``: the tf.distribute strategy models are built and trained under (None: the
    default); the batch size searched is per replica, so each step sees that many times more.
    ``class_weight``: each class's weight in the loss (class index -> weight) in every
    training, trials and final alike; None weighs all alike.
    """

    def __init__(self, input_shape, num_classes, max_params=None, rules=None, weights=None,
                 feature_cache=transfer.FEATURE_CACHE, strategy=None, class_weight=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.class_weight = class_weight
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.max_params = max_params
        rules = with_defaults(dict(rules or {}))
        if weights is None and "backbone" in allowed(rules, "family"):
            rules.setdefault("fine_tune", False)  # a backbone without weights trains whole
        self.rules = check_rules(rules, self.input_shape)
        self.weights = weights
        self.feature_cache = feature_cache
        self.strategy = strategy

    @property
    def replicas(self) -> int:
        """How many devices train each model in step."""
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def build(self, hp):
        try:
            return build_model(hp, self.input_shape, self.num_classes, self.max_params,
                               self.rules, self.weights)
        except SizingError as err:
            return _rejected_model(self.input_shape, self.num_classes,
                                   f"rejected by sizing: {err}")
        except WeightsError as err:
            return _rejected_model(self.input_shape, self.num_classes, str(err))

    def rejection(self, hp, values: dict | None = None) -> str | None:
        """Why ``hp`` (with ``values``, when given) cannot be built, or None when it can: the
        sizing's reason, found in milliseconds without building anything."""
        hp = hp.copy()  # sizing registers what it reads: the caller's space stays as it was
        hp.values = {**hp.values, **(values or {})}
        try:
            size_model(hp, self.input_shape, self.num_classes, self.max_params, self.rules)
        except SizingError as err:
            return str(err)
        return None

    def batch_size(self, hp) -> int:
        """The global batch size a training of ``hp`` will use, without declaring it in ``hp``
        (it is declared in ``fit``, so a trial's values may not hold it yet)."""
        return training_hyperparameters(Space(hp.copy(), self.rules)) * self.replicas

    def fit(self, hp, model, *args, plan=None, **kwargs):
        """Train ``model`` as keras-tuner asks; ``plan`` (an `EpochPlan`-like object with
        ``end``), when given, is the epoch the learning rate's cosine ends at instead of
        ``epochs``, read anew each epoch, whatever ``hp``'s own schedule (the final training
        plans its epochs from their measured pace; see `schedules.for_training`)."""
        if getattr(model, "rejection", None):
            raise kt.errors.FailedTrialError(model.rejection)
        batch_size = training_hyperparameters(Space(hp, self.rules)) * self.replicas
        if self.class_weight is not None:
            kwargs.setdefault("class_weight", self.class_weight)
        schedule = schedules.for_training(hp.get("lr_schedule"),
                                          kwargs.get("validation_data") is not None,
                                          planned=plan is not None)
        with warnings.catch_warnings():
            # A rebatched pipeline has no known length, so Keras finds each epoch's end by
            # running out of data, as intended here, and warns about it.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            if hp.get("family") == "backbone":
                return transfer.fit(model, hp, *args, batch_size=batch_size, schedule=schedule,
                                    cache=self.feature_cache, **kwargs)
            args = (transfer.rebatch(args[0], batch_size), *args[1:]) if args else args
            if schedule:
                end = (lambda: plan.end) if plan is not None else kwargs["epochs"]
                kwargs["callbacks"] = [*kwargs.get("callbacks", []),
                                       schedule(hp.get("learning_rate"), end)]
            return super().fit(hp, model, *args, **kwargs)


def training_hyperparameters(hp: Space) -> int:
    """The batch size: declared at training time, as it does not shape the model."""
    return hp.choice("batch_size", [16, 32, 64, 128], 32)


def _rejected_model(input_shape, num_classes, reason: str) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    outputs = keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs, name="rejected")
    model.rejection = reason
    return model


def active_values(hp: kt.HyperParameters) -> dict:
    """The values of the hyperparameters that shaped this model (inactive branches left out)."""
    return {name: value for name, value in hp.values.items() if hp.is_active(name)}


def explore(rules: dict | None = None, input_shape=(32, 32, 1)) -> list[kt.HyperParameters]:
    """The space declared once per family and pooling branch, so every hyperparameter appears.

    The rules are applied (and so checked) as in a search; maps that vanish are not an error here.
    """
    rules = rules or {}
    explored = []
    for family in allowed(rules, "family"):
        for pooling in allowed(rules, "pooling"):
            hp = kt.HyperParameters()
            hp.values.update({"family": family, "pooling": pooling})
            if True in allowed(rules, "fine_tune"):  # reach the fine-tuning branch
                hp.values["fine_tune"] = True
            space = Space(hp, rules)
            architecture(space, sizing.SizingOps(input_shape, strict=False), 2)
            create_optimizer(space)
            create_loss(space)
            training_hyperparameters(space)
            explored.append(hp)
    return explored


def allowed(rules: dict, name: str) -> list:
    """The values a closed choice (or a boolean) can take under ``rules``."""
    rule = rules.get(name, list(CLOSED.get(name, [False, True])))
    return rule if isinstance(rule, list) else [rule]


@functools.cache
def transfer_names() -> tuple[str, ...]:
    """The hyperparameters only the backbone family has."""
    scratch = {h.name for hp in explore({"family": list(SCRATCH)}) for h in hp.space}
    return tuple(name for name in names() if name not in scratch)


def with_defaults(rules: dict) -> dict:
    """``rules``, with the search limited to the families trained from scratch unless they
    ask for backbones: by naming ``family`` or any hyperparameter of the backbone family.

    Backbones are opt-in because their weights are large downloads and their trials are slow
    on a CPU; ``--backbone`` on the command line opens them.
    """
    if "family" in rules or set(rules) & set(transfer_names()):
        return rules
    return {"family": list(SCRATCH), **rules}


@functools.cache
def names() -> tuple[str, ...]:
    """Every hyperparameter name of the space, over all families and branches."""
    return tuple(dict.fromkeys(h.name for hp in explore() for h in hp.space))


def check_rules(rules: dict, input_shape=(32, 32, 1), where: str = "") -> dict:
    """``rules`` itself, or ConfigError naming the first unknown name, bad value or range."""
    rules_module.check_names(rules, names(), where)
    explore(rules, input_shape)
    return rules
