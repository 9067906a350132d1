"""The real CLI on digits, into a temporary MLflow store: runs, registry, alias, model, report."""

import json

import mlflow
import numpy as np
import pytest
from conftest import search_digits, write_images
from mlflow.tracking import MlflowClient

from autocnn import data
from autocnn.cli.main import main
from autocnn.config import DataConfig


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    uri = search_digits(folder, "e2e", trials=2, epochs=1)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    return folder, uri, client, runs


def test_one_parent_run_and_one_child_per_trial(searched):
    _, _, client, runs = searched
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.data.params["tuner"] == "auto"
    for child in children:
        assert {"family", "num_blocks", "filters", "kernel_size", "pooling"} <= set(
            child.data.params)
        if child.data.tags["status"] == "COMPLETED":
            history = client.get_metric_history(child.info.run_id, "val_accuracy")
            assert [m.step for m in history] == [0]
        else:
            assert child.data.tags["failure_reason"]
            assert child.info.status == "FAILED"


def test_test_metrics_and_plots_are_on_the_parent_run(searched):
    folder, _, client, runs = searched
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    metrics = parent.data.metrics
    for key in ("test_accuracy", "test_precision_macro", "test_recall_macro", "test_f1_macro",
                "test_f1_weighted", "test_f1_class_0", "test_recall_class_9"):
        assert 0.0 <= metrics[key] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/per_class.png", "plots/retrain_curves.png"} <= artifacts
    explained = {a.path for a in client.list_artifacts(parent.info.run_id, "explain")}
    assert explained == {"explain/class_maps.png", "explain/mistakes.png",
                         "explain/feature_maps.png", "explain/filters.png"}
    # Artifacts live beside the SQLite database, not in the working directory's mlruns/.
    assert (folder / "artifacts").is_dir()


def test_best_model_is_registered_as_champion_and_predicts(searched):
    _, uri, client, runs = searched
    version = client.get_model_version_by_alias("e2e", "champion")
    assert str(version.version) == "1"
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert float(version.tags["test_f1_macro"]) == pytest.approx(
        parent.data.metrics["test_f1_macro"], abs=1e-6)
    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model("models:/e2e@champion")
    x = data.load(DataConfig("digits", seed=7)).test.images[:5]
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    info = mlflow.models.get_model_info("models:/e2e@champion")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 8, 8, 1)


def test_search_on_an_image_folder_logs_the_data(tmp_path):
    for label, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "shapes" / label, 10, size=(12, 12), mode="L", seed=seed)
    (tmp_path / "shapes" / "circle" / "broken.png").write_bytes(b"not a png")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", str(tmp_path / "shapes"), "--skip-bad-files",
              "--image-size", "16x16", "--max-trials", "1", "--epochs", "1", "--no-register",
              "--tracking-uri", uri, "--tuner-dir", str(tmp_path / "tuner")])
    assert exit_info.value.code == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("autocnn-shapes")
    parent = client.search_runs([experiment.experiment_id],
                                filter_string="tags.`autocnn.stage` = 'search'")[0]
    assert parent.data.params["image_size"] == "(16, 16)"
    assert parent.data.metrics["skipped_files"] == 1
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "data")}
    assert artifacts == {"data/summary.txt", "data/samples.png", "data/skipped_files.txt",
                         "data/fingerprint.json"}
    # The folder is the dataset inputs' local source, one input per split.
    inputs = parent.inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"shapes-train", "shapes-val", "shapes-test"}
    assert {i.dataset.source_type for i in inputs} == {"local"}
    assert str(tmp_path / "shapes") in inputs[0].dataset.source
    summary = client.download_artifacts(parent.info.run_id, "data/summary.txt", str(tmp_path))
    text = open(summary).read()
    assert "shapes: 16x16x1 images, 2 classes" in text and "broken.png" in text


def test_mlflow_reads_as_the_console_does(searched):
    _, _, client, runs = searched
    experiment = client.get_experiment_by_name("e2e")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags),
                      key=lambda r: r.data.tags["trial_id"])
    assert [r.info.run_name for r in children] == ["trial-01", "trial-02"]  # console numbers
    assert children[0].data.tags["autocnn.warm_start"] == "defaults"
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert "input_example" not in parent.data.tags
    version = client.get_model_version_by_alias("e2e", "champion")
    assert {"data_digest", "data_classes", "test_accuracy", "test_f1_macro"} <= set(version.tags)


def test_the_data_goes_in_as_dataset_inputs_and_the_machine_as_system_metrics(searched):
    _, _, client, runs = searched
    parent = client.get_run(next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
                            .info.run_id)
    inputs = {i.tags[0].value: i.dataset for i in parent.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "test"}
    assert inputs["test"].name == "digits-test"
    assert json.loads(inputs["training"].profile) == {"num_images": 1149}
    assert len({d.digest for d in inputs.values()}) == 3  # each split its own digest
    assert "system/cpu_utilization_percentage" in parent.data.metrics
    assert "cores" in parent.data.tags["autocnn.machine"]


def test_the_search_leaves_a_model_card_and_a_report_that_renders(searched, tmp_path):
    from conftest import render_in_chromium

    folder, uri, client, runs = searched
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/model_card.md", "report/search_progress.png",
            "report/trial_costs.png", "report/importance.png"} <= logged
    assert (folder / "tuner" / "e2e" / "report.html").is_file()
    version = client.get_model_version_by_alias("e2e", "champion")
    assert version.description.startswith("# Model card: digits classifier")
    assert "## Intended use and limits" in version.description
    assert client.get_run(parent.info.run_id).data.tags["mlflow.note.content"] == \
        version.description
    # Rebuilt from the store for the registered model, as a user would.
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "models:/e2e@champion", "--tracking-uri", uri, "--output",
              str(tmp_path / "r.html"), "--card", str(tmp_path / "card.md")])
    assert exit_info.value.code == 0
    assert (tmp_path / "card.md").read_text().startswith("# Model card: digits classifier")
    shown = render_in_chromium(tmp_path / "r.html")
    assert shown["title"] == f"autocnn report: digits, run {parent.info.run_id[:8]}"
    assert shown["errors"] == []
    alts = [alt for alt, _, _ in shown["images"]]
    for wanted in ("Per class", "Where the model looked", "Mistakes", "Feature maps",
                   "The first layer's filters", "search progress", "score against cost",
                   "hyperparameter importance", "training samples"):
        assert wanted in alts
    assert all(complete and width > 0 for _, complete, width in shown["images"])


def test_a_report_of_what_is_not_a_search_is_a_clear_error(searched, capsys):
    _, uri, _, _ = searched
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "models:/e2e@nobody", "--tracking-uri", uri])
    assert exit_info.value.code == 2
    assert "models:/e2e@nobody: no such registered model version" in capsys.readouterr().err
