import keras
import keras_tuner as kt
import numpy as np
import pytest

from autocnn import space
from autocnn.errors import SizingError

DEFAULTS = {
    "num_blocks": 2, "convs_per_block": 1, "filters": 32, "kernel_size": 3, "padding": "same",
    "batch_norm": True, "pooling": "max", "dense_units": 64, "dropout": 0.2,
    "learning_rate": 1e-3,
}


def test_empty_hyperparameters_give_the_documented_default_model(seed):
    hp = kt.HyperParameters()
    model = space.build_model(hp, (8, 8, 1), 10)
    assert hp.values == DEFAULTS
    assert model.output_shape == (None, 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64]  # filters double per block
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 2
    assert model.get_layer(index=-1).activation.__name__ == "softmax"
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    history = model.fit(x, np.arange(4), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_fixed_values_shape_the_model(seed):
    hp = kt.HyperParameters()
    hp.Fixed("num_blocks", 1)
    hp.Fixed("convs_per_block", 2)
    hp.Fixed("filters", 16)
    hp.Fixed("kernel_size", 5)
    hp.Fixed("padding", "valid")
    hp.Fixed("batch_norm", False)
    hp.Fixed("pooling", "avg")
    hp.Fixed("dense_units", 0)
    model = space.build_model(hp, (16, 16, 3), 4)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Conv2D", "Activation", "Conv2D", "Activation",
                     "AveragePooling2D", "Flatten", "Dropout", "Dense"]
    # 16 -> conv 5 valid -> 12 -> conv 5 valid -> 8 -> pool 2 -> 4
    assert model.get_layer(index=5).output.shape == (None, 4, 4, 16)
    assert model.output_shape == (None, 4)


def impossible_on_8x8():
    hp = kt.HyperParameters()
    hp.Fixed("num_blocks", 3)
    hp.Fixed("padding", "valid")
    hp.Fixed("kernel_size", 5)
    return hp


def test_impossible_architecture_is_rejected_with_the_reason():
    # 8 -> conv 5 valid -> 4 -> pool -> 2 -> conv 5 valid on 2x2: impossible
    with pytest.raises(SizingError, match=r"block 2 conv 1: a 5x5 window.*2x2 input gives"):
        space.build_model(impossible_on_8x8(), (8, 8, 1), 10)


def test_same_padding_runs_out_of_pixels_at_the_pooling():
    hp = kt.HyperParameters()
    hp.Fixed("num_blocks", 3)
    with pytest.raises(SizingError, match=r"block 3 max pooling.*1x1 input"):
        space.build_model(hp, (4, 4, 1), 10)


def test_hypermodel_fails_the_trial_before_training():
    hypermodel = space.CNNHyperModel((8, 8, 1), 10)
    hp = impossible_on_8x8()
    model = hypermodel.build(hp)  # keras-tuner also builds while exploring: must not raise
    assert model.rejection.startswith("block 2 conv 1")
    with pytest.raises(kt.errors.FailedTrialError, match=r"rejected by sizing: block 2 conv 1"):
        hypermodel.fit(hp, model, np.zeros((2, 8, 8, 1)), np.zeros(2), epochs=1)


def test_active_values_leave_out_inactive_branches():
    hp = kt.HyperParameters()
    hp.Choice("head", ["flatten", "dense"])
    with hp.conditional_scope("head", ["dense"]):
        hp.Int("units", 8, 16)
    assert space.active_values(hp) == {"head": "flatten"}
