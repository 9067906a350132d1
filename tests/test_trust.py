"""What the registry says can be trusted: one data set per project and per registered model, no
champion at chance level, stores never made by reading commands, clear one-line errors."""

import json

import numpy as np
import pytest
from conftest import run_cli as run
from mlflow.tracking import MlflowClient

from autocnn import data
from autocnn import metrics as evaluate
from autocnn.config import DataConfig, SearchConfig
from autocnn.search import projects


def write_npz(path, kind: str):
    """``faces``: 12x12 noise with a bright square for 'face'; ``digits``: 8x8 zeros and ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "faces":
        rng = np.random.default_rng(0)
        x = rng.integers(0, 120, (120, 12, 12)).astype("uint8")
        y = np.array(["face", "nonface"] * 60)
        x[y == "face", 3:8, 3:8] = 255
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        keep = digits.target < 2
        x = (digits.images[keep] * 15).astype("uint8")
        y = np.where(digits.target[keep] == 0, "zero", "one")
    np.savez(path, x=x, y=y)
    return path


def search(workdir, dataset, *extra):
    return ["search", "--dataset", str(dataset), "--max-trials", "1", "--epochs", "3",
            "--tracking-uri", f"sqlite:///{workdir}/store/mlflow.db", "--tuner-dir",
            str(workdir / "tuner"), *extra]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A search on a/faces.npz, registered as autocnn-faces."""
    import os

    workdir = tmp_path_factory.mktemp("trust")
    first = write_npz(workdir / "a" / "faces.npz", "faces")
    other = write_npz(workdir / "b" / "faces.npz", "digits")
    before = os.getcwd()
    os.chdir(workdir)
    try:
        from autocnn.cli.main import main

        with pytest.raises(SystemExit) as ended:
            main(search(workdir, first))
        assert ended.value.code == 0
    finally:
        os.chdir(before)
    return workdir, first, other


def test_another_data_set_of_the_same_name_does_not_resume_the_project(faces, capsys):
    workdir, first, other = faces
    record = (workdir / "tuner" / "autocnn-faces" / "autocnn.json").read_text()
    client = MlflowClient(f"sqlite:///{workdir}/store/mlflow.db")
    runs = len(client.search_runs([client.get_experiment_by_name("autocnn-faces").experiment_id]))
    code, out, err = run(search(workdir, other), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert str(first) in err and str(other) in err  # both data sets named
    assert "face, nonface" in err and "one, zero" in err
    assert "--project NAME" in err and "--overwrite" in err
    # Nothing touched: the project's record, the runs.
    assert (workdir / "tuner" / "autocnn-faces" / "autocnn.json").read_text() == record
    assert len(client.search_runs([client.get_experiment_by_name("autocnn-faces")
                                   .experiment_id])) == runs


def test_other_settings_that_change_what_a_trial_means_are_refused_on_resume(faces, capsys):
    workdir, first, _ = faces
    code, _, err = run(search(workdir, first, "--tuner", "bayesian"), capsys)
    assert code == 2 and "tuner 'auto' (now 'bayesian')" in err
    code, _, err = run(search(workdir, first, "--seed", "3"), capsys)
    assert code == 2 and "seed 42 (now 3)" in err


def test_a_registered_model_takes_no_version_of_other_classes(faces, capsys):
    workdir, _, other = faces
    code, _, err = run(search(workdir, other, "--project", "digits01", "--model-name",
                              "autocnn-faces"), capsys)
    assert code == 2 and "registered model 'autocnn-faces' holds models of classes" in err
    assert '["face", "nonface"] on 12x12x1' in err and "--model-name" in err
    client = MlflowClient(f"sqlite:///{workdir}/store/mlflow.db")
    assert len(client.search_model_versions("name = 'autocnn-faces'")) == 1


def test_the_version_carries_its_data_and_evaluate_finds_it(faces, capsys, monkeypatch,
                                                             tmp_path):
    workdir, first, _ = faces
    uri = f"sqlite:///{workdir}/store/mlflow.db"
    version = MlflowClient(uri).get_model_version("autocnn-faces", "1")
    fingerprint = data.load(str(first)).fingerprint
    assert version.tags["data_digest"] == fingerprint["digest"]
    assert version.tags["data_source"] == str(first)
    assert float(version.tags["test_accuracy"]) > 0.5
    monkeypatch.chdir(tmp_path)  # another folder: the recorded path is absolute
    code, out, err = run(["evaluate", "models:/autocnn-faces/1", "--no-log", "--tracking-uri",
                          uri], capsys)
    assert code == 0, err
    assert f"on {first} (test split, 24 images)" in out


def test_the_champion_is_compared_only_with_models_of_the_same_data(tmp_path):
    import keras

    from autocnn.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "champions")
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    example = np.zeros((2, 4, 4, 1), "float32")
    fingerprint = {"source": "x.npz", "classes": ["a", "b"], "input_shape": [4, 4, 1],
                   "splits": {"train": 8, "val": 2, "test": 2}, "digest": "one"}

    def register(score, digest, uncrowned=""):
        tracker.start_run("search", {}, {})
        registration = tracker.register_model(model, example, "m", "test_f1_macro", score,
                                              {**fingerprint, "digest": digest},
                                              uncrowned=uncrowned)
        tracker.end_run()
        return registration

    assert register(0.8, "one").champion
    other = register(0.9, "two")  # a better score, on other data: not comparable
    assert not other.champion and "trained on other data" in other.not_compared
    assert not register(0.7, "one").champion  # the same data, a lower score
    assert register(0.85, "one").champion
    assert not register(0.99, "one", uncrowned="chance level").champion
    versions = tracker.client.get_model_version_by_alias("m", "champion")
    assert str(versions.version) == "4"


def test_a_model_at_chance_level_is_never_the_champion():
    labels = np.array([0, 1] * 50)
    assert "not clearly above the 0.5000" in evaluate.chance_level(labels, 0.5)
    assert evaluate.chance_level(labels, 0.55)  # 55 of 100 right: could be luck
    assert evaluate.chance_level(labels, 0.9) == ""
    skewed = np.array([0] * 90 + [1] * 10)
    assert evaluate.chance_level(skewed, 0.9)  # always answering 0 scores 0.9
    assert evaluate.chance_level(skewed, 0.99) == ""


def test_the_project_record_keeps_its_first_data_and_settings(tmp_path):
    config = SearchConfig(tuner_dir=str(tmp_path), project="p")
    folder = projects.project_dir(config)
    folder.mkdir()
    fingerprint = data.load("digits").fingerprint
    search_id = projects.record(folder, config, fingerprint)
    assert projects.record(folder, SearchConfig(tuner="bayesian"), {}) == search_id
    assert json.loads((folder / "autocnn.json").read_text())["settings"]["tuner"] == "auto"
    projects.check_resume(config, fingerprint)  # the same: resumes
    projects.check_resume(SearchConfig(tuner_dir=str(tmp_path), project="p", tuner="bayesian",
                                       overwrite=True), {})  # afresh: nothing to compare


def test_the_fingerprint_follows_the_contents_not_the_folders_place(tmp_path, image_folder):
    import shutil

    moved = tmp_path / "elsewhere" / "pets"
    shutil.copytree(image_folder, moved, copy_function=shutil.copy2)  # keeps the mtimes
    one, two = data.load(f"{image_folder}/"), data.load(f"{moved}/")
    assert one.fingerprint["digest"] == two.fingerprint["digest"]
    assert one.fingerprint["source"] != two.fingerprint["source"]
    (moved / "cat" / "000.png").write_bytes((moved / "cat" / "001.png").read_bytes())
    assert data.load(f"{moved}/").fingerprint["digest"] != one.fingerprint["digest"]
    digits = data.load("digits").fingerprint
    assert digits["splits"] == {"train": 1149, "val": 288, "test": 360}
    assert data.load(DataConfig(seed=1)).fingerprint["digest"] != digits["digest"]


@pytest.mark.parametrize("args", [
    ["compare"],
    ["evaluate", "models:/autocnn-digits@champion"],
    ["export", "models:/autocnn-digits@champion", "--format", "keras", "--output", "m.keras"],
    ["predict", "models:/autocnn-digits@champion", "IMAGES"],
])
def test_reading_commands_never_create_a_store(args, workdir, capsys):
    from conftest import write_images

    write_images(workdir / "images", 1)
    args = [str(workdir / "images") if a == "IMAGES" else a for a in args]
    code, out, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"no MLflow store at {workdir}/mlruns/mlflow.db" in err
    assert "relative to the working directory" in err and "--tracking-uri" in err
    assert not (workdir / "mlruns").exists()


def test_ui_without_a_store_says_where_it_looked(workdir, capsys):
    code, _, err = run(["ui"], capsys)
    assert code == 2 and "no MLflow store at" in err
    assert not (workdir / "mlruns").exists()


def test_data_inspect_writes_its_grid_under_mlruns(workdir, capsys):
    code, out, _ = run(["data", "inspect", "digits"], capsys)
    assert code == 0
    grid = workdir / "mlruns" / "inspect" / "digits-samples.png"
    assert grid.is_file() and f"sample grid written to {grid}" in out
    assert [p.name for p in workdir.iterdir()] == ["mlruns"]


@pytest.mark.parametrize("content", [b"garbage!", b"PK\x03\x04garbage"])
def test_a_file_that_is_not_an_npz_is_one_line(content, workdir, capsys):
    (workdir / "x.npz").write_bytes(content)
    code, _, err = run(["data", "inspect", "x.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and "x.npz: not a readable .npz file" in err
    assert "Traceback" not in err


def test_pipeline_files_suggest_options_and_place_yaml_errors(workdir, capsys):
    (workdir / "typo.yaml").write_text("name: t\nstages:\n  - search: {max_trails: 3}\n")
    code, _, err = run(["run", "typo.yaml"], capsys)
    assert code == 2 and "has no option 'max_trails' (did you mean 'max_trials'?)" in err
    assert err.count(",") < 4  # not a dump of every option
    (workdir / "broken.yaml").write_text("name: t\nstages:\n  - search: {max_trials: 3\n"
                                         "  - evaluate: {}\n")
    code, _, err = run(["run", "broken.yaml"], capsys)
    assert code == 2 and "broken.yaml, line 4, column 13: not valid YAML" in err


def test_a_time_budget_alone_decides_how_many_trials(capsys):
    assert SearchConfig().trial_limit == 10
    assert SearchConfig(time_budget=60).trial_limit is None
    assert SearchConfig(time_budget=60, max_trials=3).trial_limit == 3
    code, out, _ = run(["search", "--help"], capsys)
    flat = " ".join(out.split())
    assert "[default: 10; with --time-budget, no limit: the budget decides]" in flat
    assert "with its best epoch kept [default: none]" in flat
