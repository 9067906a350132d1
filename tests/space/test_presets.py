"""The classic architectures: fixed points of the space, scaled to the input, sized exactly."""

import keras
import keras_tuner as kt
import numpy as np
import pytest
from conftest import is_trial_line

from autocnn.errors import ConfigError
from autocnn.space import hypermodel as space
from autocnn.space import presets

SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]
TRAINED_SHAPE = (32, 32, 3)


def test_lenet5_is_the_textbook_network():
    rules = presets.preset("lenet5", (32, 32, 1))
    sized = space.size_model(kt.HyperParameters(), (32, 32, 1), 10, rules=rules)
    assert sized.params == 61_706
    assert [r.shape for r in sized.rows if r.kind == "Conv2D"] == [(28, 28, 6), (10, 10, 16)]
    assert [r.shape for r in sized.rows if r.kind == "Dense"] == [(120,), (84,), (10,)]


@pytest.mark.parametrize("name", list(presets.PRESETS))
@pytest.mark.parametrize("shape", SHAPES)
def test_every_preset_fixes_the_space_builds_and_trains(name, shape, seed):
    rules = presets.preset(name, shape)
    space.check_rules(rules, shape)
    assert set(space.names()) - set(rules) - set(space.transfer_names()) <= {
        "padding", "bottleneck", "growth_rate", "compression", "factorize", "width_multiplier",
        "pool_size", "head"}
    hp = kt.HyperParameters()
    sized = space.size_model(hp, shape, 3, rules=rules)
    assert all(isinstance(h, kt.engine.hyperparameters.Fixed) for h in hp.space)
    model = space.build_model(kt.HyperParameters(), shape, 3, rules=rules)
    for row in sized.rows:
        layer = model.get_layer(row.name)
        assert tuple(layer.output.shape[1:]) == row.shape, row.name
        assert layer.count_params() == row.params, row.name
        assert type(layer).__name__ == row.kind or row.kind == "Input"
    if shape == TRAINED_SHAPE:  # the deepest of the three; the others are sized and built
        x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
        history = model.fit(x, np.arange(2), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_vgg_presets_differ_in_convolutions_per_block():
    def convs(name):
        sized = space.size_model(kt.HyperParameters(), (28, 28, 1), 10,
                                 rules=presets.preset(name, (28, 28, 1)))
        return [r.name for r in sized.rows if r.kind == "Conv2D"], sized.params

    assert convs("vgg11") == (["b1_conv1", "b2_conv1", "b3_conv1"], 422_698)
    names, params = convs("vgg13")
    assert names == ["b1_conv1", "b1_conv2", "b2_conv1", "b2_conv2", "b3_conv1", "b3_conv2"]
    assert params == 617_130
    assert len(convs("vgg16")[0]) == 9


def test_unknown_preset_lists_the_names():
    with pytest.raises(ConfigError, match=r"unknown preset 'lenet': choose one of lenet5, alexnet"):
        presets.preset("lenet", (32, 32, 1))


def test_resnet_preset_uses_residual_units():
    model = space.build_model(kt.HyperParameters(), (32, 32, 3), 10,
                              rules=presets.preset("resnet18", (32, 32, 3)))
    assert isinstance(model.get_layer("b1_unit2_add"), keras.layers.Add)
    assert isinstance(model.get_layer("global_avgpool"), keras.layers.GlobalAveragePooling2D)


def test_a_search_tries_presets_after_the_defaults(tmp_path):
    from autocnn.config import SearchConfig
    from autocnn.data import load
    from autocnn.search.prepare import warm_start

    dataset = load("digits")
    named = warm_start(SearchConfig(max_trials=24), dataset, {})
    assert list(named) == ["defaults", "lenet5", "vgg11", "vgg13", "vgg11 with translation 0.1",
                           "resnet18", "mobilenet"]
    configurations = list(named.values())
    assert configurations[0] == {}
    assert [c["family"] for c in configurations[1:]] == ["plain", "plain", "plain", "plain",
                                                         "residual", "separable"]
    assert [c["filters"] for c in configurations[1:5]] == [6, 32, 32, 32]  # LeNet-5, then VGGs
    assert [c["convs_per_block"] for c in configurations[2:5]] == [1, 2, 1]  # 11, 13, 11
    assert [c["translation"] for c in configurations[2:5]] == [0.0, 0.0, 0.1]  # then shifted
    assert len(warm_start(SearchConfig(max_trials=16), dataset, {})) == 5
    assert warm_start(SearchConfig(max_trials=3), dataset, {}) == {"defaults": {}}
    assert warm_start(SearchConfig(max_trials=12, space={"family": "dense"}), dataset,
                      {}) == {"defaults": {}}
    assert len(warm_start(SearchConfig(time_budget=600), dataset, {})) == 7  # no trial limit


def test_nearest_snaps_a_preset_onto_the_space():
    from autocnn.search.oracles import nearest

    hps = kt.engine.hyperparameters
    assert nearest(hps.Choice("filters", [16, 32, 64]), 6) == 16
    assert nearest(hps.Choice("filters", [16, 32, 64]), 32) == 32
    assert nearest(hps.Choice("activation", ["relu", "elu"], default="elu"), "tanh") == "elu"
    assert nearest(hps.Float("lr", 1e-4, 1e-2), 0.5) == 1e-2
    assert nearest(hps.Int("num_blocks", 1, 2), 5) == 2
    assert nearest(hps.Fixed("kernel_size", 3), 5) == 3


def test_search_trains_a_preset_alone(capsys, tmp_path):
    from autocnn.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--space", "preset:lenet5", "--epochs", "1", "--no-register",
              "--tracking-uri", f"sqlite:///{tmp_path}/db.db", "--tuner-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    trial_lines = [line for line in out.splitlines() if is_trial_line(line)]
    assert len(trial_lines) == 1 and "trial   1/1 completed" in trial_lines[0]
    assert "activation=tanh" in trial_lines[0] and "dense_units_2=84" in trial_lines[0]
