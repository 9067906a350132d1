import types

import keras
import keras_tuner as kt
import numpy as np
import pytest

from autocnn.errors import ConfigError, SizingError
from autocnn.space import blocks, schedules
from autocnn.space import hypermodel as space

DEFAULTS = {
    "flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "random_crop": False,
    "contrast": 0.0, "blur": False, "noise": 0.0, "erasing": 0.0,
    "family": "plain", "num_blocks": 2, "convs_per_block": 1, "filters": 32,
    "filter_growth": 2.0, "kernel_size": 3,
    "stride": 1, "dilation": 1, "padding": "same", "batch_norm": True, "activation": "relu",
    "l2": 0.0,
    "pooling": "max", "pool_size": 2, "head": "flatten", "dense_units": 64, "dense_units_2": 0,
    "dropout": 0.2,
    "label_smoothing": 0.0, "optimizer": "adam", "learning_rate": 1e-3, "lr_schedule": "cosine",
}
SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]
TRAINED_SHAPE = (32, 32, 3)


def test_empty_hyperparameters_give_the_documented_default_model(seed):
    hp = kt.HyperParameters()
    model = space.build_model(hp, (8, 8, 1), 10)
    assert hp.values == DEFAULTS
    assert model.output_shape == (None, 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64]  # filters double per block
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 2
    assert model.get_layer("classifier").activation.__name__ == "softmax"


@pytest.mark.parametrize("shape, most", [((8, 8, 1), 2), ((28, 28, 1), 3), ((32, 32, 3), 4),
                                         ((224, 224, 3), 5), ((4, 4, 1), 1)])
def test_depth_adapts_to_the_input(shape, most):
    assert space.max_blocks(shape) == most
    hp = kt.HyperParameters()
    space.size_model(hp, shape, 10)
    assert hp.get("num_blocks") == min(2, most)
    assert hp._hps["num_blocks"][0].max_value == most


@pytest.mark.parametrize("family", list(blocks.FAMILIES))
@pytest.mark.parametrize("shape", SHAPES)
def test_every_family_sizes_exactly_as_keras_builds_and_trains(family, shape, seed):
    fixed = {"family": family}
    sized = space.size_model(kt.HyperParameters(), shape, 5, rules=fixed)
    model = space.build_model(kt.HyperParameters(), shape, 5, rules=fixed)
    for row in sized.rows:
        layer = model.get_layer(row.name)
        assert tuple(layer.output.shape[1:]) == row.shape, row.name
        assert layer.count_params() == row.params, row.name
    assert sized.params == model.count_params()
    if shape == TRAINED_SHAPE:  # the deepest of the three; the others are sized and built
        x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
        history = model.fit(x, np.arange(4) % 5, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def sized_as_built(rules, shape=(28, 28, 1), classes=5):
    """The sizing and the model of ``rules``, once every layer's shape and parameters agree."""
    sized = space.size_model(kt.HyperParameters(), shape, classes, rules=rules)
    model = space.build_model(kt.HyperParameters(), shape, classes, rules=rules)
    for row in sized.rows:
        layer = model.get_layer(row.name)
        assert tuple(layer.output.shape[1:]) == row.shape, row.name
        assert layer.count_params() == row.params, row.name
    return sized, model


@pytest.mark.parametrize("family", list(blocks.FAMILIES))
@pytest.mark.parametrize("stride", [1, 2])  # 2: the first convolution strides, undilated
def test_every_family_sizes_a_dilated_model_as_keras_builds_it(family, stride):
    _, model = sized_as_built({"family": family, "dilation": 2, "stride": stride})
    dilated = [layer for layer in model.layers if getattr(layer, "dilation_rate", (1, 1)) != (1, 1)]
    assert all(layer.strides == (1, 1) and layer.kernel_size != (1, 1) for layer in dilated)
    assert dilated or stride == 2


def test_a_dilated_convolution_widens_the_window_and_the_receptive_field():
    rules = {"family": "plain", "num_blocks": 2, "convs_per_block": 2, "kernel_size": 3,
             "dilation": 2, "stride": 1, "padding": "valid", "pooling": "max"}
    sized, model = sized_as_built(rules, classes=10)
    conv = {row.name: row for row in sized.rows}
    assert conv["b1_conv1"].shape == (24, 24, 32)  # 28 - 2*2
    assert conv["b1_conv1"].receptive_field == 5 and conv["b1_conv2"].receptive_field == 9
    assert model.get_layer("b1_conv1").dilation_rate == (2, 2)
    with pytest.raises(SizingError, match=r"b2_conv2: a 3x3 window, dilation 2, stride 1, "
                                          r"padding 'valid' on a 3x3 input gives -1x-1"):
        space.size_model(kt.HyperParameters(), (22, 22, 1), 10, rules=rules)


@pytest.mark.parametrize("values, layer, kind", [
    ({"family": "residual", "bottleneck": True}, "b1_unit1_expand", keras.layers.Conv2D),
    ({"family": "inception", "factorize": True}, "b1_5x5b", keras.layers.Conv2D),
    ({"family": "separable"}, "b1_sep1_dw", keras.layers.DepthwiseConv2D),
    ({"family": "dense", "num_blocks": 2}, "b1_transition", keras.layers.Conv2D),
    ({"pooling": "strided"}, "b1_down", keras.layers.Conv2D),
    ({"pooling": "avg", "pool_size": 3}, "b1_avgpool", keras.layers.AveragePooling2D),
    ({"head": "gap"}, "global_avgpool", keras.layers.GlobalAveragePooling2D),
    ({"family": "nin"}, "global_avgpool", keras.layers.GlobalAveragePooling2D),
])
def test_fixed_values_shape_the_model(values, layer, kind):
    model = space.build_model(kt.HyperParameters(), (16, 16, 1), 3, rules=values)
    assert isinstance(model.get_layer(layer), kind)


def test_conditional_hyperparameters_appear_only_with_their_family():
    plain, dense = kt.HyperParameters(), kt.HyperParameters()
    space.size_model(plain, (16, 16, 1), 3)
    space.size_model(dense, (16, 16, 1), 3, rules={"family": "dense"})
    assert "growth_rate" not in space.active_values(plain)
    assert space.active_values(dense)["growth_rate"] == 12
    assert "padding" not in space.active_values(dense)  # dense blocks always pad "same"


def test_fixed_values_are_checked():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) famly: choose from "
                                          r"flip, rotation"):
        space.check_rules({"famly": "plain"})
    with pytest.raises(ConfigError, match=r"pooling='bilinear' is not allowed: choose one of "
                                          r"max, avg, strided, none"):
        space.size_model(kt.HyperParameters(), (8, 8, 1), 3, rules={"pooling": "bilinear"})
    with pytest.raises(ConfigError, match=r"kernel_size='big' is not a int"):
        space.size_model(kt.HyperParameters(), (8, 8, 1), 3, rules={"kernel_size": "big"})


def test_fixed_values_may_widen_the_space():
    hp = kt.HyperParameters()
    model = space.build_model(hp, (16, 16, 1), 3, rules={"kernel_size": 4, "filters": 8})
    assert model.get_layer("b1_conv1").kernel_size == (4, 4)
    assert model.get_layer("b1_conv1").filters == 8


def test_a_fixed_conditional_value_holds_in_its_scope():
    hp = kt.HyperParameters()
    space.size_model(hp, (16, 16, 1), 3, rules={"padding": "valid", "pool_size": 3})
    assert hp.get("padding") == "valid" and hp.get("pool_size") == 3


IMPOSSIBLE_ON_8X8 = {"num_blocks": 2, "convs_per_block": 2, "padding": "valid",
                     "kernel_size": 5}


def test_impossible_architecture_is_rejected_with_the_reason():
    # 8 -> conv 5 valid -> 4 -> conv 5 valid on 4x4: impossible
    with pytest.raises(SizingError, match=r"b1_conv2: a 5x5 window.*4x4 input gives 0x0"):
        space.build_model(kt.HyperParameters(), (8, 8, 1), 10, rules=IMPOSSIBLE_ON_8X8)


def test_too_many_parameters_are_rejected_before_building():
    with pytest.raises(SizingError, match=r"36,202 parameters exceed the limit of 10,000"):
        space.build_model(kt.HyperParameters(), (8, 8, 1), 10, max_params=10_000)


def test_hypermodel_fails_the_trial_before_training():
    hypermodel = space.CNNHyperModel((8, 8, 1), 10, rules=IMPOSSIBLE_ON_8X8)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)  # keras-tuner also builds while exploring: must not raise
    assert model.rejection.startswith("rejected by sizing: b1_conv2")
    with pytest.raises(kt.errors.FailedTrialError, match=r"rejected by sizing: b1_conv2"):
        hypermodel.fit(hp, model, np.zeros((2, 8, 8, 1)), np.zeros(2), epochs=1)


def test_cosine_schedule_decays_to_zero():
    schedule = schedules.cosine_schedule(0.1, 10)
    rates = [schedule.schedule(epoch, None) for epoch in (0, 5, 10)]
    assert rates == pytest.approx([0.1, 0.05, 0.0])


def test_cosine_schedule_follows_an_end_planned_again():
    plan = {"end": 10}
    schedule = schedules.cosine_schedule(0.1, lambda: plan["end"])
    first = schedule.schedule(0, None)
    plan["end"] = 4  # the first epoch was slower than predicted: four epochs fit, not ten
    assert [first, schedule.schedule(2, None), schedule.schedule(4, None)] == \
        pytest.approx([0.1, 0.05, 0.0])


def test_plateau_schedule_cuts_the_rate_when_validation_stalls():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    schedule = schedules.plateau_schedule(0.01)
    schedule.set_model(model)
    schedule.on_train_begin()
    rates = []
    for epoch, accuracy in enumerate([0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]):
        schedule.on_epoch_end(epoch, {"val_accuracy": accuracy})
        rates.append(float(model.optimizer.learning_rate))
    # Improving keeps the rate; each stalled epoch cuts it to 0.3x, down to 1% of the start.
    assert rates == pytest.approx([0.01, 0.01, 0.003, 0.0009, 0.00027, 0.0001, 0.0001])


@pytest.mark.parametrize("validated, monitor", [(True, "val_accuracy"), (False, "loss")])
def test_plateau_schedule_watches_the_training_loss_without_validation(validated, monitor,
                                                                        monkeypatch):
    hypermodel = space.CNNHyperModel((8, 8, 1), 3, rules={"lr_schedule": "plateau"})
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    given = {}
    monkeypatch.setattr(model, "fit", lambda *args, **kwargs: given.update(kwargs))
    x, y = np.zeros((4, 8, 8, 1)), np.zeros(4)
    hypermodel.fit(hp, model, x, y, epochs=2, validation_data=(x, y) if validated else None)
    [schedule] = [c for c in given["callbacks"]
                  if isinstance(c, keras.callbacks.ReduceLROnPlateau)]
    assert schedule.monitor == monitor


@pytest.mark.parametrize("own", ["plateau", "constant", "cosine"])
def test_a_training_the_budget_plans_falls_on_a_cosine_to_the_planned_end(own, monkeypatch):
    hypermodel = space.CNNHyperModel((8, 8, 1), 3, rules={"lr_schedule": own})
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    given = {}
    monkeypatch.setattr(model, "fit", lambda *args, **kwargs: given.update(kwargs))
    x, y = np.zeros((4, 8, 8, 1)), np.zeros(4)
    plan = types.SimpleNamespace(end=4)  # 4 epochs fit in the budget, of the 20 asked for
    hypermodel.fit(hp, model, x, y, epochs=20, validation_data=(x, y), plan=plan)
    [schedule] = [c for c in given["callbacks"] if isinstance(
        c, (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau))]
    assert [schedule.schedule(epoch, None) for epoch in (0, 2, 4)] == \
        pytest.approx([1e-3, 5e-4, 0.0])
    given.clear()
    hypermodel.fit(hp, model, x, y, epochs=20, validation_data=(x, y))  # no plan: its own
    assert [type(c).__name__ for c in given.get("callbacks", [])] == {
        "plateau": ["ReduceLROnPlateau"], "constant": [],
        "cosine": ["LearningRateScheduler"]}[own]


def test_active_values_leave_out_inactive_branches():
    hp = kt.HyperParameters()
    hp.Choice("head", ["flatten", "dense"])
    with hp.conditional_scope("head", ["dense"]):
        hp.Int("units", 8, 16)
    assert space.active_values(hp) == {"head": "flatten"}


AUGMENT_ALL = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1, "translation": 0.1,
               "random_crop": True, "contrast": 0.2, "blur": True, "noise": 0.05,
               "erasing": 0.5}


def test_augmentation_trains_but_leaves_inference_alone(seed):
    model = space.build_model(kt.HyperParameters(), (16, 16, 3), 4, rules=AUGMENT_ALL)
    names = [layer.name for layer in model.layers]
    assert names[1:10] == ["aug_flip", "aug_rotation", "aug_zoom", "aug_translation",
                           "aug_crop", "aug_contrast", "aug_blur", "aug_noise", "aug_erasing"]
    x = np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32)
    model.fit(x, np.arange(8) % 4, epochs=1, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0))
    sized = space.size_model(kt.HyperParameters(), (16, 16, 3), 4, rules=AUGMENT_ALL)
    assert sized.params == model.count_params()


def test_batch_size_is_searched_at_training_time(seed):
    import tensorflow as tf

    hypermodel = space.CNNHyperModel((8, 8, 1), 2, rules={"batch_size": 16})
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((64, 8, 8, 1), "float32"), np.arange(64) % 2)).batch(64)
    batches = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    hypermodel.fit(hp, model, data, epochs=1, shuffle=False, verbose=0, callbacks=[counter])
    assert hp.get("batch_size") == 16 and len(batches) == 4


def test_the_closed_family_list_names_every_block_family_and_backbone():
    from autocnn.space import rules

    assert rules.CLOSED["family"] == (*blocks.FAMILIES, "backbone")
    assert space.SCRATCH == tuple(blocks.FAMILIES)
