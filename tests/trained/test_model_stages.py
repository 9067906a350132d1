"""The stages after a search, through the real CLI: evaluate, predict, compare; loading models."""

import json

import keras
import numpy as np
import pytest
from conftest import run_cli as run
from conftest import search_digits, write_images
from mlflow.tracking import MlflowClient
from PIL import Image

from autocnn.errors import ConfigError
from autocnn.trained import reference as models


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A digits model searched, registered as 'stages', and a few digit images as PNG files."""
    folder = tmp_path_factory.mktemp("stages")
    uri = search_digits(folder, "stages", trials=1, epochs=3)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = folder / "images"
    images.mkdir()
    for i in range(6):
        pixels = (digits.images[i] * 255 / 16).astype("uint8")
        Image.fromarray(pixels).save(images / f"digit{digits.target[i]}_{i}.png")
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("stages", "champion")
    return folder, uri, client.get_run(version.run_id)


def test_evaluate_reproduces_the_search_test_metrics_and_logs_a_run(registered, capsys):
    folder, uri, search_run = registered
    code, out, _ = run(["evaluate", "models:/stages@champion", "--dataset", "digits",
                        "--seed", "7", "--tracking-uri", uri, "--experiment", "stages"], capsys)
    assert code == 0
    accuracy = search_run.data.metrics["test_accuracy"]
    assert f"accuracy   {accuracy:.4f}" in out  # the same held-out split as the search's
    assert "digits (test split, 360 images)" in out and "class  precision" in out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("stages").experiment_id],
                              filter_string="tags.`autocnn.stage` = 'evaluate'")
    assert len(runs) == 1
    assert runs[0].data.metrics["test_accuracy"] == pytest.approx(accuracy)
    assert runs[0].data.params["model"] == "models:/stages@champion"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert "plots/per_class.png" in artifacts


def test_a_keras_file_keeps_its_class_names_beside_it(registered, tmp_path, capsys):
    _, uri, search_run = registered
    loaded = models.load("models:/stages/1", uri)
    assert loaded.class_names == tuple(str(i) for i in range(10))
    by_run = models.load(f"runs:/{search_run.info.run_id}/model", uri)
    assert by_run.run_id == search_run.info.run_id and by_run.dataset == "digits"
    path = models.save(loaded, tmp_path / "named.keras", [f"digit-{i}" for i in range(10)])
    assert models.load(str(path)).class_names[3] == "digit-3"
    code, _, err = run(["evaluate", str(path), "--dataset", "digits", "--no-log"], capsys)
    assert code == 2 and "digits has classes the model does not know (0, 1, 2" in err
    path = models.save(loaded, tmp_path / "digits.keras", [str(i) for i in range(10)])
    code, out, _ = run(["evaluate", str(path), "--dataset", "digits", "--split", "val",
                        "--no-log"], capsys)
    assert code == 0 and "(val split, 288 images)" in out
    assert "logged to MLflow" not in out


def test_predict_explain_draws_where_the_model_looked_for_each_image(registered, capsys):
    folder, uri, _ = registered
    out_dir = folder / "explained"
    code, out, err = run(["predict", "models:/stages@champion", str(folder / "images"),
                          "--format", "json", "--explain", str(out_dir), "--tracking-uri", uri],
                         capsys)
    assert code == 0 and len(json.loads(out)) == 6  # stdout stays one JSON document
    assert f"where the model looked: 6 images in {out_dir}" in err
    drawn = sorted(out_dir.glob("*.png"))
    assert [p.stem for p in drawn] == sorted(p.stem for p in (folder / "images").glob("*.png"))
    with Image.open(drawn[0]) as figure:
        assert figure.size == (500, 290)  # the image and its heat map, side by side


def test_predict_prints_the_top_classes_of_every_image_in_a_folder(registered, capsys):
    folder, uri, _ = registered
    code, out, _ = run(["predict", "models:/stages@champion", str(folder / "images"),
                        "--tracking-uri", uri], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("image") and len(lines) == 7
    correct = sum(line.split()[1] == line.split("digit")[1][0] for line in lines[1:])
    assert correct >= 4  # a three-epoch model reads most of these digits
    code, out, _ = run(["predict", "models:/stages@champion", str(folder / "images"),
                        "--top-k", "2", "--format", "json", "--tracking-uri", uri], capsys)
    records = json.loads(out)
    assert len(records) == 6 and all(len(r["predictions"]) == 2 for r in records)
    probabilities = [p["probability"] for p in records[0]["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    code, out, _ = run(["predict", "models:/stages@champion", str(folder / "images" /
                        "digit0_0.png"), "--format", "csv", "--top-k", "3",
                        "--tracking-uri", uri], capsys)
    assert out.strip().splitlines()[0] == "path,rank,class,probability"
    assert len(out.strip().splitlines()) == 4


def test_compare_lists_trials_and_registered_versions(registered, capsys):
    _, uri, _ = registered
    code, out, _ = run(["compare", "--experiment", "stages", "--tracking-uri", uri], capsys)
    assert code == 0
    header, first = out.splitlines()[:2]
    assert header.split()[:4] == ["experiment", "trial", "status", "best_val_accuracy"]
    assert first.split()[:3] == ["stages", "1", "COMPLETED"]
    code, out, _ = run(["compare", "--models", "--tracking-uri", uri], capsys)
    assert code == 0
    row = out.splitlines()[1].split()
    assert row[:2] == ["models:/stages/1", "champion"]
    assert int(row[4].replace(",", "")) > 1000  # the model's parameters


@pytest.mark.parametrize("args, message", [
    (["evaluate", "models:/missing@champion", "--tracking-uri", "STORE"],
     "models:/missing@champion: cannot load it from"),
    (["evaluate", "runs:/0123456789abcdef/model", "--tracking-uri", "STORE"],
     "runs:/0123456789abcdef/model: cannot load"),
    (["evaluate", "model.h5"], "model.h5: give models:/NAME@ALIAS, models:/NAME/VERSION"),
    (["evaluate", "gone.keras"], "gone.keras: no such model file"),
    (["predict", "gone.keras", "nothing.png"], "nothing.png: no such file or folder"),
    (["compare", "--experiment", "nope", "--tracking-uri", "STORE"],
     "no experiment 'nope' in sqlite:///"),
])
def test_bad_references_are_one_line_errors(args, message, workdir, capsys):
    from autocnn.tracking import Tracker

    store = f"sqlite:///{workdir}/store/mlflow.db"
    Tracker(store, "other")  # a store, without the experiment asked for
    code, _, err = run([store if a == "STORE" else a for a in args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_evaluating_on_data_with_other_classes_is_a_clear_error(registered, tmp_path, capsys):
    _, uri, _ = registered
    for name in ("cat", "dog", "fox"):
        write_images(tmp_path / "pets" / name, 10, size=(8, 8))
    code, _, err = run(["evaluate", "models:/stages@champion", "--dataset",
                        str(tmp_path / "pets"), "--tracking-uri", uri, "--no-log"], capsys)
    assert code == 2
    assert f"the model predicts 10 classes and {tmp_path / 'pets'} has 3" in err


def test_predict_names_an_unreadable_image(registered, tmp_path, capsys):
    _, uri, _ = registered
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code, _, err = run(["predict", "models:/stages@champion", str(tmp_path / "broken.png"),
                        "--tracking-uri", uri], capsys)
    assert code == 2 and "broken.png: cannot read this image" in err


def test_a_model_that_would_run_code_on_loading_is_refused(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ConfigError, match="refused, loading it would run arbitrary code"):
        models.load(str(path))
    np.testing.assert_equal(models.classes_file(path).name, "lambda.classes.json")


@pytest.mark.parametrize("fmt, name", [("keras", "digits.keras"), ("savedmodel", "digits_sm"),
                                       ("tflite", "digits.tflite")])
def test_export_round_trips_and_checks_the_predictions(fmt, name, registered, tmp_path, capsys):
    _, uri, _ = registered
    output = tmp_path / name
    code, out, _ = run(["export", "models:/stages@champion", "--format", fmt, "--output",
                        str(output), "--check-images", "64", "--tracking-uri", uri], capsys)
    assert code == 0, out
    assert output.exists() and models.classes_file(output).exists()
    assert "checked on 64 digits test images" in out and "top class agrees on 100.0%" in out
    difference = float(out.split("largest probability difference ")[1].split()[0])
    assert difference <= 1e-4


def test_export_to_onnx_round_trips_from_the_registry_and_a_keras_file(registered, tmp_path,
                                                                      capsys):
    _, uri, _ = registered
    code, out, err = run(["export", "models:/stages@champion", "--format", "onnx", "--output",
                          str(tmp_path / "digits.onnx"), "--tracking-uri", uri], capsys)
    assert code == 0, err
    assert "top class agrees on 100.0%" in out and (tmp_path / "digits.onnx").is_file()
    # A model loaded from a file has never been called, as one from the registry.
    code, out, err = run(["export", "models:/stages@champion", "--format", "keras", "--output",
                          str(tmp_path / "digits.keras"), "--tracking-uri", uri], capsys)
    assert code == 0, err
    code, out, err = run(["export", str(tmp_path / "digits.keras"), "--format", "onnx",
                          "--output", str(tmp_path / "file.onnx"), "--dataset", "digits",
                          "--tracking-uri", uri], capsys)
    assert code == 0, err
    assert "top class agrees on 100.0%" in out


def test_onnx_export_works_for_a_backbone_model(tmp_path, seed):
    from conftest import backbone_model

    from autocnn.trained import export

    model, _, _ = backbone_model("mobilenet_v3_small", input_shape=(8, 8, 1), classes=3)
    models.save(model, tmp_path / "backbone.keras", ["a", "b", "c"])
    loaded = models.load(str(tmp_path / "backbone.keras"))
    path = export.export(loaded, "onnx", tmp_path / "backbone.onnx")
    images = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    result = export.check(loaded, "onnx", path, images)
    assert result.passed, result


def test_a_missing_onnx_package_names_the_extra(monkeypatch, tmp_path):
    import importlib.util

    from autocnn.trained import export

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs tf2onnx.*pip install 'autocnn\[onnx\]'"):
        export.export(None, "onnx", tmp_path / "m.onnx")


def test_search_stages_can_be_turned_off_and_the_summary_is_logged(workdir, capsys):
    uri = f"sqlite:///{workdir}/mlflow.db"
    code, out, _ = run(["search", "--dataset", "digits", "--max-trials", "1", "--epochs", "1",
                        "--no-retrain", "--no-evaluate", "--tracking-uri", uri,
                        "--project", "partial"], capsys)
    assert code == 0
    assert "no: the best trial's model, trained on train (--no-retrain)" in out
    assert "not evaluated (--no-evaluate)" in out and "registered model" not in out
    client = MlflowClient(uri)
    parent = next(r for r in client.search_runs(
        [client.get_experiment_by_name("partial").experiment_id])
        if "mlflow.parentRunId" not in r.data.tags)
    assert "test_accuracy" not in parent.data.metrics
    assert not client.list_artifacts(parent.info.run_id, "explain")  # nothing to explain
    summary = client.download_artifacts(parent.info.run_id, "model/summary.txt", str(workdir))
    text = open(summary).read()
    assert "receptive field" in text and "Keras summary" in text and "classifier" in text
    assert not client.search_registered_models()


def test_classes_are_matched_by_name_or_by_position_when_only_numbered():
    from types import SimpleNamespace

    from autocnn.trained import evaluation as stages

    dataset = SimpleNamespace(class_names=("cat", "dog"), name="pets")
    labels, names = stages._labels_for(SimpleNamespace(class_names=("dog", "cat")), dataset,
                                       np.array([0, 1, 1]))
    assert labels.tolist() == [1, 0, 0] and names == ["dog", "cat"]
    labels, names = stages._labels_for(SimpleNamespace(class_names=("0", "1")), dataset,
                                       np.array([0, 1]))
    assert labels.tolist() == [0, 1] and names == ["cat", "dog"]
