"""The training loss: label smoothing on the pipeline's integer labels, saved with the model."""

import keras
import keras_tuner as kt
import numpy as np

from autocnn.space import hypermodel as space
from autocnn.space.losses import SmoothedCrossentropy, loss


def test_smoothing_integer_labels_is_keras_smoothing_one_hot_ones():
    rng = np.random.default_rng(0)
    probabilities = keras.ops.softmax(rng.normal(size=(6, 4)).astype("float32"))
    labels = np.array([0, 1, 2, 3, 1, 0])
    ours = SmoothedCrossentropy(0.1)(labels, probabilities)
    keras_own = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
        keras.ops.one_hot(labels, 4), probabilities)
    np.testing.assert_allclose(ours, keras_own, rtol=1e-6)
    unsmoothed = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    np.testing.assert_allclose(SmoothedCrossentropy(0.0)(labels, probabilities), unsmoothed,
                               rtol=1e-6)
    # A confident right answer costs more smoothed: the wrong classes' s/K are near zero.
    confident = keras.ops.one_hot(labels, 4) * 0.997 + 0.001
    assert float(SmoothedCrossentropy(0.1)(labels, confident)) > 10 * float(
        keras.losses.SparseCategoricalCrossentropy()(labels, confident))
    assert loss(0.0) == "sparse_categorical_crossentropy"


def test_a_smoothed_model_saves_and_loads_with_its_loss(tmp_path, seed):
    model = space.build_model(kt.HyperParameters(), (8, 8, 1), 3,
                              rules={"label_smoothing": 0.1})
    assert model.loss.label_smoothing == 0.1
    x = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)
    model.fit(x, np.arange(6) % 3, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, SmoothedCrossentropy) and loaded.loss.label_smoothing == 0.1
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5)
