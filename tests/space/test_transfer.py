"""Pretrained backbones: the registry, weights, freezing and fine-tuning, the feature cache."""

import subprocess
import sys
import urllib.error

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
from conftest import backbone_model
from mlflow.tracking import MlflowClient

from autocnn.cli.main import main
from autocnn.errors import ConfigError, WeightsError
from autocnn.space import backbones, transfer
from autocnn.space import hypermodel as space


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights files for two backbones (their random initialisation, saved): loaded from a file,
    a backbone counts as pretrained and starts frozen, as with ImageNet weights."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in ("mobilenet_v2", "mobilenet_v3_small"):
        files[name] = str(folder / f"{name}.weights.h5")
        backbones.get(name).build((32, 32, 3), None).save_weights(files[name])
    return files


def pipeline(count=24, shape=(8, 8, 1), classes=3, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((count, *shape), dtype=np.float32)
    labels = rng.integers(0, classes, count)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


@pytest.mark.parametrize("name", backbones.NAMES)
def test_every_backbone_builds_trains_one_step_and_predicts(name, seed):
    model, _, rules = backbone_model(name)
    entry = backbones.get(name)
    base = model.get_layer("backbone")
    assert base.count_params() == entry.params
    assert base.input_shape[1:] == (entry.minimum, entry.minimum, 3)
    assert base.output_shape[-1] == entry.features
    assert len(base.trainable_weights) > 0  # without weights it trains whole, from scratch
    # The sizing arithmetic agrees with Keras on the whole model.
    sizing = space.size_model(kt.HyperParameters(), (8, 8, 1), 3, rules=rules)
    assert sizing.params == model.count_params()
    # One step of phase 1 (the base frozen): a whole backbone's gradients take minutes to
    # compile on two cores; whole-network training is tested once, on the smallest.
    base.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    history = model.fit(images, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probabilities = model.predict(images[:2], verbose=0)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_backbone_input_repeats_grayscale_resizes_and_preprocesses():
    from autocnn.space.blocks import BackboneInput

    gray = np.full((1, 8, 8, 1), 0.5, dtype=np.float32)
    out = BackboneInput("mobilenet_v2", (32, 32))(gray).numpy()
    assert out.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(out, 0.0, atol=1e-5)  # "tf" mode: 0.5 * 255 -> 0 in [-1, 1]
    caffe = BackboneInput("vgg16", (8, 8))(gray).numpy()  # BGR, ImageNet means subtracted
    np.testing.assert_allclose(caffe[0, 0, 0], [127.5 - 103.939, 127.5 - 116.779, 127.5 - 123.68],
                               rtol=1e-4)


def test_input_size_is_the_minimum_or_upscaled_up_to_native():
    entry = backbones.get("resnet50")
    assert entry.input_size((8, 8)) == (32, 32)
    assert entry.input_size((28, 28), upscale=4) == (112, 112)
    assert entry.input_size((100, 100), upscale=4) == (224, 224)  # not beyond native
    assert entry.input_size((300, 260)) == (300, 260)  # larger images stay as they are
    assert backbones.get("inception_v3").input_size((28, 28)) == (75, 75)


def test_a_pretrained_backbone_starts_frozen_and_one_without_weights_trains_whole(weights,
                                                                                  seed):
    frozen, hp, _ = backbone_model(weights=weights["mobilenet_v3_small"])
    assert transfer.pretrained(frozen) and not frozen.get_layer("backbone").trainable_weights
    whole, hp, rules = backbone_model()
    assert not transfer.pretrained(whole)
    kernel = np.array(whole.get_layer("backbone").weights[0])
    history = transfer.fit(whole, hp, pipeline(), batch_size=8, epochs=1, verbose=0,
                           cache=transfer.FeatureCache())
    assert history.epoch == [0]
    assert not np.array_equal(np.array(whole.get_layer("backbone").weights[0]), kernel)
    hypermodel = space.CNNHyperModel((8, 8, 1), 3, rules={"family": "backbone"})
    assert hypermodel.rules["fine_tune"] is False  # nothing to fine-tune without weights


def test_unfreezing_the_top_fraction_keeps_batch_norm_frozen(weights, seed):
    model, _, _ = backbone_model("mobilenet_v2", weights=weights["mobilenet_v2"])
    base = model.get_layer("backbone")
    head_only = len(model.trainable_weights)
    assert head_only == 4  # fc and classifier: kernels and biases
    count = transfer.unfreeze(base, 0.25)
    weighted = [layer for layer in base.layers if layer.weights]
    assert count == round(0.25 * len(weighted))
    top = weighted[-count:]
    expected = sum(len(layer.trainable_weights) for layer in top
                   if not isinstance(layer, keras.layers.BatchNormalization))
    assert len(model.trainable_weights) == head_only + expected > head_only
    assert all(not layer.trainable_weights for layer in base.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    assert all(not layer.trainable_weights for layer in weighted[:-count])
    transfer.unfreeze(base, 1.0)
    convolutions = [layer for layer in weighted
                    if not isinstance(layer, keras.layers.BatchNormalization)]
    assert len(model.trainable_weights) == head_only + sum(
        len(layer.trainable_weights) for layer in convolutions)


def test_fine_tuning_trains_the_top_and_leaves_batch_norm_statistics_alone(weights, seed):
    model, hp, _ = backbone_model("mobilenet_v2", weights=weights["mobilenet_v2"],
                                  fine_tune=True, head_epochs=1, unfreeze=0.25,
                                  fine_tune_lr_ratio=0.1)
    base = model.get_layer("backbone")
    bn = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    moving = [np.array(layer.moving_mean) for layer in bn]
    bottom, top = base.get_layer("Conv1"), base.get_layer("Conv_1")
    before = np.array(bottom.kernel), np.array(top.kernel)
    history = transfer.fit(model, hp, pipeline(), batch_size=8, epochs=3,
                           validation_data=pipeline(seed=1), cache=None, verbose=0)
    assert history.epoch == [0, 1, 2] and len(history.history["val_accuracy"]) == 3
    np.testing.assert_array_equal(np.array(bottom.kernel), before[0])  # still frozen
    assert not np.array_equal(np.array(top.kernel), before[1])  # fine-tuned
    for layer, mean in zip(bn, moving):
        np.testing.assert_array_equal(np.array(layer.moving_mean), mean)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(hp.get("learning_rate") * 0.1)


def test_a_continuation_past_the_head_epochs_goes_straight_to_fine_tuning(weights, seed):
    model, hp, _ = backbone_model(weights=weights["mobilenet_v3_small"], fine_tune=True,
                                  head_epochs=1, unfreeze=0.5)
    history = transfer.fit(model, hp, pipeline(), batch_size=8, epochs=3, initial_epoch=2,
                           cache=None, verbose=0)
    assert history.epoch == [2]
    assert model.get_layer("backbone").trainable_weights


def test_frozen_features_are_computed_once_and_reused_across_trials(tmp_path, seed):
    base = backbones.get("mobilenet_v3_small").build((32, 32, 3), None)
    path = str(tmp_path / "small.weights.h5")
    base.save_weights(path)
    other = str(tmp_path / "other.weights.h5")
    keras.utils.set_random_seed(99)
    backbones.get("mobilenet_v3_small").build((32, 32, 3), None).save_weights(other)
    cache = transfer.FeatureCache()
    train, val = pipeline(), pipeline(seed=1)
    model, hp, _ = backbone_model(weights=path)
    np.testing.assert_array_equal(np.array(model.get_layer("backbone").weights[0]),
                                  np.array(base.weights[0]))  # the file's weights
    history = transfer.fit(model, hp, train, batch_size=8, epochs=2, validation_data=val,
                           cache=cache, verbose=0)
    assert (cache.misses, cache.hits) == (2, 0)  # train and validation features, once
    # The head trained on features is the model's own head: the whole model scores the same.
    _, accuracy = model.evaluate(val, verbose=0)
    assert accuracy == pytest.approx(history.history["val_accuracy"][-1])
    keras.backend.clear_session()
    again, hp, _ = backbone_model(weights=path, dense_units=128)  # another trial, same weights
    transfer.fit(again, hp, train, batch_size=8, epochs=1, validation_data=val, cache=cache,
                 verbose=0)
    assert (cache.misses, cache.hits) == (2, 2)
    augmented, hp, _ = backbone_model(weights=path, rotation=0.1)  # fresh images every epoch
    transfer.fit(augmented, hp, train, batch_size=8, epochs=1, cache=cache, verbose=0)
    assert (cache.misses, cache.hits) == (2, 2)
    different, hp, _ = backbone_model(weights=other)  # other weights: other features
    transfer.fit(different, hp, train, batch_size=8, epochs=1, cache=cache, verbose=0)
    assert cache.misses == 3


def test_a_callback_stopping_the_whole_model_stops_the_head(weights, seed):
    model, hp, _ = backbone_model(weights=weights["mobilenet_v3_small"])
    seen = []

    class StopAtOnce(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model)
            self.model.stop_training = True

    history = transfer.fit(model, hp, pipeline(), batch_size=8, epochs=5,
                           callbacks=[StopAtOnce()], cache=transfer.FeatureCache(), verbose=0)
    assert history.epoch == [0]
    assert seen == [model]  # the callback saw the whole model, not the head


def test_a_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    other = backbones.get("mobilenet_v2").build((32, 32, 3), None)
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    with pytest.raises(WeightsError,
                       match=rf"--weights {path} does not fit mobilenet_v3_small without its top"):
        backbones.get("mobilenet_v3_small").build((32, 32, 3), path)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty Keras cache and no network, as on a machine without internet access."""
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "urlretrieve", refuse)
    return tmp_path


def test_missing_imagenet_weights_name_the_file_and_where_to_put_it(offline):
    with pytest.raises(WeightsError) as error:
        backbones.get("mobilenet_v2").build((96, 96, 3), "imagenet")
    message = str(error.value)
    assert message.startswith("ImageNet weights for mobilenet_v2 could not be downloaded (")
    assert "place mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5 from " \
           "https://storage.googleapis.com/" in message
    assert "--weights none" in message


def test_a_search_with_missing_weights_stops_before_any_trial(offline, workdir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "digits", "--backbone", "efficientnet_b0",
              "--max-trials", "2", "--epochs", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("Error: ImageNet weights for efficientnet_b0 could not be "
                             "downloaded") and "efficientnetb0_notop.h5" in err[0]


@pytest.mark.parametrize("args, message", [
    (["--backbone", "resnet51"], "unknown backbone 'resnet51': choose one of vgg16, resnet50"),
    (["--weights", "missing.h5"], "--weights missing.h5: no such file"),
    (["--backbone", "vgg16,resnet50", "--weights", "setup.cfg"],
     "one weights file fits one backbone, and the space has 2"),
])
def test_bad_backbone_options_are_one_line_errors(args, message, workdir, capsys):
    (workdir / "setup.cfg").write_text("not weights")
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "digits", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_backbones_join_the_space_only_when_asked_for():
    assert space.with_defaults({})["family"] == list(space.SCRATCH)
    assert "family" not in space.with_defaults({"backbone": "vgg16"})  # mixed search
    assert "family" not in space.with_defaults({"fine_tune": True})
    assert space.with_defaults({"family": "backbone"}) == {"family": "backbone"}
    assert set(space.transfer_names()) == {"backbone", "upscale", "backbone_pooling", "fine_tune",
                                           "head_epochs", "unfreeze", "fine_tune_lr_ratio"}
    with pytest.raises(ConfigError, match="backbone='resnet51' is not allowed"):
        space.check_rules({"backbone": "resnet51"})


def test_backbones_command_lists_the_registry(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["backbones"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for entry in backbones.REGISTRY.values():
        assert entry.name in out and entry.constructor in out
    assert "23.6M" in out and "299x299" in out and "75x75" in out


def test_explain_shows_the_backbone_model(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--input", "28x28x1", "--backbone", "resnet50", "--set", "upscale=4"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "backbone_input  BackboneInput" in out and "112x112x3" in out
    assert "ResNet50" in out and "23,587,712" in out and "4x4x2048" in out


def test_a_search_mixes_scratch_and_backbone_trials(weights, workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "digits", "--backbone", "mobilenet_v3_small",
              "--weights", weights["mobilenet_v3_small"], "--max-trials", "3", "--epochs", "2",
              "--seed", "5",
              "--tracking-uri", uri, "--project", "mixed", "--no-register"])
    assert exit_info.value.code == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mixed").experiment_id],
                              filter_string="tags.status = 'COMPLETED'")
    families = [r.data.params["family"] for r in runs if "family" in r.data.params]
    assert "backbone" in families and set(families) & set(space.SCRATCH)
    backbone_run = next(r for r in runs if r.data.params.get("family") == "backbone")
    assert backbone_run.data.params["backbone"] == "mobilenet_v3_small"
    assert "num_blocks" not in backbone_run.data.params  # the scratch branch is inactive


def test_a_registered_backbone_model_loads_back_from_mlflow(weights, workdir):
    import mlflow

    uri = f"sqlite:///{workdir}/mlflow.db"
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "digits", "--backbone", "mobilenet_v3_small",
              "--set", "family=backbone", "--weights", weights["mobilenet_v3_small"],
              "--max-trials", "1",
              "--epochs", "1", "--tracking-uri", uri, "--project", "transfer"])
    assert exit_info.value.code == 0
    mlflow.set_tracking_uri(uri)
    # One epoch leaves it near chance, so it is registered without the champion alias.
    model = mlflow.keras.load_model("models:/transfer/1")
    assert model.get_layer("backbone_input").backbone == "mobilenet_v3_small"
    images = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    assert model.predict(images, verbose=0).shape == (3, 10)
    # Only `import autocnn`: its public API, and MLflow's generic loader, read the model.
    script = ("import json, sys, autocnn, mlflow, numpy as np; "
              "images = np.zeros((2, 8, 8, 1), 'float32'); "
              "loaded = autocnn.load_model('models:/transfer/1', tracking_uri=sys.argv[1]); "
              "mlflow.set_tracking_uri(sys.argv[1]); "
              "pyfunc = mlflow.pyfunc.load_model('models:/transfer/1'); "
              "shapes = [np.asarray(loaded.model(images)).shape, pyfunc.predict(images).shape]; "
              "print(json.dumps([loaded.class_names[:2], shapes]))")
    shown = subprocess.run([sys.executable, "-c", script, uri], capture_output=True, text=True,
                           cwd=workdir, timeout=300)
    # The last line: Keras's progress bar for pyfunc's predict comes before it.
    assert shown.stdout.splitlines()[-1:] == ['[["0", "1"], [[2, 10], [2, 10]]]'], \
        shown.stderr[-2000:]
