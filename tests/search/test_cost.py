"""The trial cost model and the share of training images trials see: multiply-adds counted by
the sizing, predictions scaled by the trials that ran, configurations too slow for the budget
passed over by the oracle, and --trial-fraction."""

import keras_tuner as kt
import numpy as np
import pytest
from click.testing import CliRunner

from autocnn import data
from autocnn.cli.main import cli
from autocnn.config import SearchConfig
from autocnn.errors import ConfigError
from autocnn.search import cost
from autocnn.search.oracles import WarmStart
from autocnn.search.prepare import fit_arguments, trial_images
from autocnn.space import hypermodel as space
from autocnn.space import sizing

SMALL = {"family": "plain", "num_blocks": 1, "convs_per_block": 1, "filters": 16,
         "kernel_size": 3, "dense_units": 0}
LARGE = {"family": "plain", "num_blocks": 2, "convs_per_block": 3, "filters": 64,
         "kernel_size": 7, "dense_units": 256}


def values(rules, input_shape=(8, 8, 1)):
    hp = kt.HyperParameters()
    space.size_model(hp, input_shape, 10, rules=rules)
    return hp


def test_the_sizing_counts_multiply_adds():
    ops = sizing.SizingOps((8, 8, 1))
    x = ops.conv(ops.input(), "c", 16, 3, padding="same")  # 8*8 outputs of 3*3*1 each, 16 maps
    assert ops.macs == 8 * 8 * 3 * 3 * 1 * 16
    x = ops.depthwise(x, "d", 3, stride=2)  # 4*4 outputs, 3*3 each, per channel
    assert ops.macs == 9216 + 4 * 4 * 3 * 3 * 16
    ops.dense(ops.flatten(x, "f"), "fc", 10)
    assert ops.macs == 9216 + 2304 + 4 * 4 * 16 * 10


def test_a_trial_cost_is_predicted_only_once_a_trial_ran():
    hypermodel = space.CNNHyperModel((8, 8, 1), 10)
    trial_cost = cost.TrialCost(hypermodel, images=900, val_images=300, epochs=10,
                                retrain_images=1500)
    small, large = values(SMALL), values(LARGE)
    assert trial_cost.predict(small, {}) is None  # no scale for this machine yet
    estimate = trial_cost.predict(small, {"0": (small, 2.0)})
    # The same configuration: its own seconds per epoch, for every epoch; retraining on 1,500
    # training images costs 1,500 / (900 + 300 / 3) as much an epoch.
    assert estimate.seconds == pytest.approx(20.0)
    assert estimate.retrain_seconds == pytest.approx(20.0 * 1500 / 1000)
    bigger = trial_cost.predict(large, {"0": (small, 2.0)})
    assert bigger.seconds > 5 * estimate.seconds and bigger.macs > 50 * estimate.macs
    assert bigger.params == space.size_model(large, (8, 8, 1), 10).params
    # Two trials that ran: the median of their seconds per unit scales the prediction.
    slow = trial_cost.predict(small, {"0": (small, 2.0), "1": (large, 1e6), "2": (small, 4.0)})
    assert slow.seconds == pytest.approx(40.0)
    assert cost.TrialCost(hypermodel, 900, 300, 10).predict(small, {"0": (small, 2.0)}) \
        .retrain_seconds is None


def test_an_impossible_architecture_is_left_to_the_sizing():
    hypermodel = space.CNNHyperModel((8, 8, 1), 10)
    trial_cost = cost.TrialCost(hypermodel, 900, 300, 10)
    impossible = kt.HyperParameters()
    impossible.values.update({"family": "plain", "num_blocks": 2, "padding": "valid",
                              "kernel_size": 7})
    assert trial_cost.predict(impossible, {"0": (values(SMALL), 1.0)}) is None


def warm_start_oracle(tmp_path, affordable):
    oracle = type("WarmStartRandom", (WarmStart, kt.oracles.RandomSearchOracle), {})(
        objective="val_accuracy", max_trials=10, seed=1, warm_start=[{}, {"filters": 64}])
    hp = kt.HyperParameters()
    hp.Choice("filters", [16, 32, 64], default=32)
    hp.Int("units", 1, 1000, default=10)
    oracle.update_space(hp)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.affordable = affordable
    return oracle


def test_the_oracle_passes_over_what_the_budget_cannot_afford(tmp_path):
    def affordable(values):
        return None if values["filters"] == 16 else f"{values['filters']} filters: too slow"

    oracle = warm_start_oracle(tmp_path, affordable)
    picks = [oracle.create_trial(f"tuner{i}").hyperparameters.values for i in range(4)]
    # Every pick, warm starts included, is one the budget affords.
    assert [p["filters"] for p in picks] == [16, 16, 16, 16]
    assert oracle.passed_over and all(r.endswith("filters: too slow") for r in oracle.passed_over)


def test_the_oracle_draws_again_instead_of_what_cannot_be_built(tmp_path):
    oracle = warm_start_oracle(tmp_path, None)
    oracle.impossible = lambda values: "64 filters: b2_conv1 gives 0x0" \
        if values["filters"] == 64 else None
    picks = [oracle.create_trial(f"tuner{i}").hyperparameters.values for i in range(6)]
    assert 64 not in [p["filters"] for p in picks]  # the warm start of 64 filters included
    assert oracle.redrawn and set(oracle.redrawn) == {"64 filters: b2_conv1 gives 0x0"}
    assert oracle.passed_over == []


def test_the_hypermodel_says_why_a_configuration_cannot_be_built():
    hypermodel = space.CNNHyperModel((8, 8, 1), 10)
    hp = kt.HyperParameters()
    assert hypermodel.rejection(hp) is None  # the defaults fit 8x8
    reason = hypermodel.rejection(hp, {"family": "plain", "num_blocks": 2, "padding": "valid",
                                       "kernel_size": 7, "convs_per_block": 1})
    assert reason.startswith("b1_conv1: a 7x7 window") or reason.startswith("b2_conv1")
    assert hp.values == {}  # the caller's hyperparameters are left as they were


def test_the_oracle_runs_its_last_pick_when_nothing_is_affordable(tmp_path):
    oracle = warm_start_oracle(tmp_path, lambda values: "too slow")
    trial = oracle.create_trial("tuner0")
    assert trial.status == "RUNNING"
    assert len(oracle.passed_over) == 1 + WarmStart.PICKS  # the warm start, then the picks


def test_trials_train_on_a_stratified_share_of_the_training_images():
    dataset = data.load("digits")
    config = SearchConfig(trial_fraction=0.25)
    subset = trial_images(config, dataset)
    assert abs(len(subset) - 0.25 * len(dataset.train)) <= 1
    # Every class keeps its share, and the share is the same from call to call.
    share = np.bincount(subset.labels) / np.bincount(dataset.train.labels)
    assert np.all(np.abs(share - 0.25) < 0.05)
    assert np.array_equal(trial_images(config, dataset).labels, subset.labels)
    (train,), _ = fit_arguments(config, dataset)
    assert sum(len(labels) for _, labels in train) == len(subset)
    assert trial_images(SearchConfig(), dataset) is dataset.train


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_a_trial_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ConfigError, match="trial_fraction is the share"):
        SearchConfig(trial_fraction=fraction)
    result = CliRunner().invoke(cli, ["search", "--trial-fraction", str(fraction)])
    assert result.exit_code == 2 and "--trial-fraction" in result.output


@pytest.mark.parametrize("gpus, expected", [
    ([], "float32"), ([(8, 0)], "mixed_float16"), ([(8, 0), (6, 1)], "float32"),
])
def test_auto_precision_is_mixed_only_where_every_gpu_has_tensor_cores(monkeypatch, gpus,
                                                                        expected):
    from autocnn import devices

    monkeypatch.setattr(devices, "gpu_capabilities", lambda: gpus)
    assert devices.resolve_precision("auto") == expected
    assert devices.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_a_mixed_precision_model_keeps_its_softmax_in_float32():
    import keras

    from autocnn.devices import configure_devices

    try:
        assert configure_devices(precision="mixed_bfloat16") == "mixed_bfloat16"
        dataset = data.load("digits")
        model = space.build_model(kt.HyperParameters(), dataset.input_shape, 10)
        conv = next(layer for layer in model.layers if layer.name.startswith("b1_conv"))
        assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
        assert model.get_layer("classifier").compute_dtype == "float32"
        x, y = dataset.train.images[:64] / 255.0, dataset.train.labels[:64]
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert model.predict(x[:4], verbose=0).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert configure_devices() == "float32"
