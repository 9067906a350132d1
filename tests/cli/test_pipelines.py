"""Pipeline files: validation before anything runs, stages chained, resuming after a failure."""

import json
from pathlib import Path

import pytest
from conftest import run_cli as run
from conftest import write_images
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
TWO_STAGES = """
name: two
data: {path: digits}
settings: {seed: 3}
stages:
  - search: {max_trials: 1, epochs: 1}
  - evaluate: {split: test}
"""


def test_a_two_stage_pipeline_passes_the_model_on_and_resumes(workdir, capsys):
    (workdir / "two.yaml").write_text(TWO_STAGES)
    code, out, _ = run(["run", "two.yaml"], capsys)
    assert code == 0
    assert "== stage 1/2: search --seed 3 --dataset digits --max-trials 1 --epochs 1" in out
    assert "== stage 2/2: evaluate models:/autocnn-digits/1 --seed 3 --dataset digits" in out
    assert "pipeline two: 2 stages done" in out
    state = json.loads((workdir / "mlruns/pipelines/two.json").read_text())
    assert state["1:search"]["outputs"]["model"] == "models:/autocnn-digits/1"
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    artifacts = client.list_artifacts(state["1:search"]["outputs"]["run_id"], "pipeline")
    assert [a.path for a in artifacts] == ["pipeline/two.yaml"]
    code, out, _ = run(["run", "two.yaml"], capsys)
    assert code == 0 and out.count("finished before; skipped") == 2


def test_a_failed_stage_stops_the_pipeline_and_a_rerun_resumes_after_the_last_good_one(
        workdir, capsys):
    for name in ("cat", "dog", "fox"):
        write_images(workdir / "pets" / name, 10, size=(8, 8))
    (workdir / "two.yaml").write_text(TWO_STAGES)
    code, _, err = run(["run", "two.yaml", "--set", f"evaluate.dataset={workdir / 'pets'}"],
                       capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: stage 2 (evaluate) failed: the model predicts 10 classes")
    assert "rerunning the pipeline resumes here" in last
    code, out, _ = run(["run", "two.yaml"], capsys)
    assert code == 0
    assert "== stage 1/2: search finished before; skipped" in out
    assert "== stage 2/2: evaluate models:/autocnn-digits/1" in out


@pytest.mark.parametrize("text, message", [
    ("stages: [{train: {}}]", "stage 1 is 'train'; stages are search, evaluate, predict, export"),
    ("stages: [{search: {max_trails: 3}}]",
     "stage search has no option 'max_trails' (did you mean 'max_trials'?)"),
    ("stages: [{search: {qqq: 3}}]", "no option 'qqq'; `autocnn search --help` lists its"),
    ("stages: [{search: {max_trials: many}}]", "Invalid value for '--max-trials'"),
    ("stages: [{search: {tuner: grid}}]", "'grid' is not one of 'auto', 'random', 'bayesian'"),
    ("stage: []", "unknown section 'stage' (did you mean 'stages'?)"),
    ("stages: []", "'stages' must be a list of stages"),
    ("- search: {}", "a pipeline file maps name, description, data, settings and stages"),
    ("stages: [{evaluate: {}}]", "stage 1 (evaluate) needs a model"),
    ("stages: [{search: {}", "not valid YAML"),
])
def test_a_bad_pipeline_is_one_line_before_anything_runs(text, message, workdir, capsys):
    (workdir / "bad.yaml").write_text(text)
    code, _, err = run(["run", "bad.yaml"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (workdir / "mlruns" / "mlflow.db").exists()  # nothing ran


def test_the_shipped_pipelines_are_valid(workdir, capsys):
    from autocnn.cli import pipelines
    from autocnn.cli.model_commands import COMMANDS
    from autocnn.cli.search_commands import search

    commands = {"search": search, **{c.name: c for c in COMMANDS}}
    shipped = sorted((REPO / "pipelines").glob("*.yaml"))
    assert [p.name for p in shipped] == ["digits.yaml", "fashion_mnist.yaml",
                                         "transfer_folder.yaml"]
    for path in shipped:
        sets = {"data.path": str(workdir)} if path.name == "transfer_folder.yaml" else {}
        planned = pipelines.plan(pipelines.load(path, sets), commands)
        assert planned[0][0] == "search" and len(planned) >= 3
    code, _, err = run(["run", str(REPO / "pipelines/transfer_folder.yaml")], capsys)
    assert code == 2 and "give the data with --set data.path=FOLDER" in err
