"""A search under stress: a time budget, a kill and a resume, Ctrl-C, trials that raise or
diverge, the same seed twice, trials in their own processes."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import Progress, is_trial_line
from mlflow.tracking import MlflowClient

from autocnn.config import SearchConfig
from autocnn.errors import Interrupted, SearchError
from autocnn.search import timing, tuners
from autocnn.search.run import run_search
from autocnn.space import hypermodel as space

# One small block that sizing never rejects on 8x8: trials take a second or two on digits; the
# learning rate stays free, so the random search always has new configurations to try.
SMALL = {"family": "plain", "num_blocks": 1, "convs_per_block": 1, "filters": [8, 16],
         "padding": "same", "pool_size": 2}


def config(tmp_path, **overrides):
    settings = dict(max_trials=3, epochs=2, seed=5, tracking_uri=f"sqlite:///{tmp_path}/db.db",
                    tuner_dir=str(tmp_path / "tuner"), project="r", register=False,
                    space=SMALL)
    return SearchConfig(**{**settings, **overrides})


def runs(tmp_path, project="r"):
    """The search's parent runs and its trial runs, active only (as the MLflow UI shows)."""
    client = MlflowClient(f"sqlite:///{tmp_path}/db.db")
    found = client.search_runs([client.get_experiment_by_name(project).experiment_id])
    parents = [r for r in found if "trial_id" not in r.data.tags]
    return client, parents, [r for r in found if "trial_id" in r.data.tags]


def assert_one_run_per_trial(trial_runs, count):
    assert sorted(int(r.data.tags["trial_id"]) for r in trial_runs) == list(range(count))
    assert all(r.info.status in ("FINISHED", "FAILED") for r in trial_runs)  # none RUNNING


def test_a_time_budget_stops_the_running_trial_and_starts_no_other(tmp_path, progress):
    lines = progress
    budget = 25
    # Random search: its first trial trains the full 500 epochs (auto's first rung is shorter).
    result = run_search(config(tmp_path, tuner="random", max_trials=50, epochs=500,
                               patience=500, time_budget=budget, evaluate=False))
    assert result.stopped_by == "time budget"
    client, parents, trial_runs = runs(tmp_path)
    epoch_seconds = max(r.data.metrics["trial_seconds"]
                        / len(client.get_metric_history(r.info.run_id, "loss"))
                        for r in trial_runs)
    assert result.seconds <= budget + max(0.05 * budget, epoch_seconds)
    # No trial can finish 500 epochs in the budget: the first was stopped at it, best epoch kept.
    assert result.trials_completed == 1 and len(trial_runs) == 1
    assert "retraining would take about" in result.kept_because
    assert parents[0].data.tags["autocnn.stopped_by"] == "time budget"
    assert float(parents[0].data.params["time_budget"]) == budget
    assert any("of 0:25 left" in line for line in lines if is_trial_line(line))


def test_a_budget_too_short_for_any_trial_says_so(tmp_path):
    message = r"time budget \(0:02\) left no time for a first trial after 0:0\d of set-up"
    with pytest.raises(SearchError, match=message):
        run_search(config(tmp_path, time_budget=2))


def test_a_search_killed_mid_trial_resumes_without_rerunning_finished_trials(tmp_path):
    uri = f"sqlite:///{tmp_path}/db.db"
    args = ["search", "--max-trials", "4", "--epochs", "3", "--seed", "5", "--set",
            "family=plain", "--set", "num_blocks=1", "--tracking-uri", uri, "--tuner-dir",
            str(tmp_path / "tuner"), "--project", "r", "--no-register"]
    process = subprocess.Popen([sys.executable, "-m", "autocnn", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finished = []
    for line in process.stdout:
        if is_trial_line(line):
            finished.append(line)
            if len(finished) == 2:
                time.sleep(0.5)  # into the third trial
                process.send_signal(signal.SIGKILL)
                break
    process.wait(timeout=60)
    _, _, before = runs(tmp_path)
    kept = {r.data.tags["trial_id"]: r.info.run_id for r in before if r.info.status == "FINISHED"}
    assert sorted(kept) == ["0", "1"]

    from autocnn.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    _, parents, after = runs(tmp_path)
    assert_one_run_per_trial(after, 4)
    assert {r.data.tags["trial_id"]: r.info.run_id for r in after if r.data.tags["trial_id"]
            in kept} == kept  # finished trials were not run again
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["autocnn.resumes"] == "1"


def test_ctrl_c_finishes_the_trial_and_a_rerun_resumes(tmp_path, monkeypatch, progress):
    on_epoch_end = tuners.TrackedTrials.on_epoch_end

    def press_ctrl_c(self, trial, model, epoch, logs=None):
        on_epoch_end(self, trial, model, epoch, logs)
        if trial.trial_id == "1" and epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(tuners.TrackedTrials, "on_epoch_end", press_ctrl_c)
    lines = progress
    with pytest.raises(Interrupted, match="2 finished trials are kept .* run the same command"):
        run_search(config(tmp_path, max_trials=4))
    assert any("stopping after the trial in progress" in line for line in lines)
    _, parents, trial_runs = runs(tmp_path)
    assert parents[0].info.status == "KILLED"
    assert_one_run_per_trial(trial_runs, 2)  # the trial in progress finished

    monkeypatch.setattr(tuners.TrackedTrials, "on_epoch_end", on_epoch_end)
    result = run_search(config(tmp_path, max_trials=4))
    assert result.trials_completed == 4
    _, parents, trial_runs = runs(tmp_path)
    assert_one_run_per_trial(trial_runs, 4)
    assert [p.info.status for p in parents] == ["FINISHED"]


def test_ctrl_c_twice_stops_the_trial_now_and_it_reruns(tmp_path, monkeypatch):
    on_epoch_end = tuners.TrackedTrials.on_epoch_end

    def press_ctrl_c_twice(self, trial, model, epoch, logs=None):
        on_epoch_end(self, trial, model, epoch, logs)
        if trial.trial_id == "1":
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)

    monkeypatch.setattr(tuners.TrackedTrials, "on_epoch_end", press_ctrl_c_twice)
    with pytest.raises(Interrupted, match="1 finished trials are kept"):
        run_search(config(tmp_path, epochs=3))
    _, parents, trial_runs = runs(tmp_path)
    assert parents[0].info.status == "KILLED"
    assert {r.data.tags["trial_id"]: r.info.status for r in trial_runs}["1"] == "KILLED"
    monkeypatch.setattr(tuners.TrackedTrials, "on_epoch_end", on_epoch_end)
    run_search(config(tmp_path, epochs=3))
    _, _, trial_runs = runs(tmp_path)
    assert_one_run_per_trial(trial_runs, 3)


def test_a_trial_that_raises_fails_alone(tmp_path, monkeypatch, progress):
    fit = space.CNNHyperModel.fit
    calls = []

    def sometimes_broken(self, hp, model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the disk is on fire")
        return fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(space.CNNHyperModel, "fit", sometimes_broken)
    lines = progress
    result = run_search(config(tmp_path, evaluate=False))
    assert (result.trials_completed, result.trials_failed) == (2, 1)
    assert any("failed    the disk is on fire" in line for line in lines)
    _, _, trial_runs = runs(tmp_path)
    failed = [r for r in trial_runs if r.data.tags["status"] != "COMPLETED"]
    assert [r.data.tags["failure_reason"] for r in failed] == ["the disk is on fire"]


def test_a_diverging_loss_fails_the_trial_and_names_the_reason(tmp_path):
    diverging = {**SMALL, "optimizer": "sgd", "learning_rate": 1e6, "lr_schedule": "constant",
                 "batch_norm": False}
    with pytest.raises(SearchError, match="2 trials failed in a row; most common reason: the "
                                          "loss became nan in epoch 1"):
        run_search(config(tmp_path, max_failed_trials=2, space=diverging))


def test_the_same_seed_gives_the_same_choices_and_test_metrics(tmp_path):
    first = run_search(config(tmp_path, project="a"))
    second = run_search(config(tmp_path, project="b"))
    assert first.best_hyperparameters == second.best_hyperparameters
    assert first.metrics["accuracy"] == second.metrics["accuracy"]
    assert first.metrics["confusion_matrix"] == second.metrics["confusion_matrix"]
    # Each trial's time beyond training is measured (two epochs each) and summed up.
    _, _, trial_runs = runs(tmp_path, "a")
    overheads = [r.data.metrics["overhead_seconds"] for r in trial_runs]
    assert len(overheads) == 3 and all(0 <= o < r.data.metrics["trial_seconds"]
                                       for o, r in zip(overheads, trial_runs))
    assert first.overhead_seconds == pytest.approx(sum(overheads) / 3)


def test_a_trials_overhead_is_what_its_steady_epochs_do_not_explain():
    assert timing.trial_overhead(10.0, [4.0, 2.0, 2.0]) == pytest.approx(4.0)
    assert timing.trial_overhead(5.0, [4.0]) is None  # the one epoch includes the tracing
    # One epoch slowed by a busy machine (30 s against 8) is training, not overhead.
    assert timing.trial_overhead(66.0, [10.0, 8.0, 8.0, 8.0, 30.0]) == pytest.approx(4.0)


def test_isolated_trials_run_in_their_own_processes(tmp_path):
    result = run_search(config(tmp_path, max_trials=2, isolate=True, evaluate=False))
    assert result.trials_completed == 2
    client, _, trial_runs = runs(tmp_path)
    for run in trial_runs:  # each process logged its epochs to the trial's run
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) >= 1
    assert result.model.count_params() > 0


def test_memory_stays_flat_over_many_trials(tmp_path):
    from autocnn.search.callbacks import peak_rss_mb, traced_gradients

    peaks, gradients = [], []

    def measure(line):
        if is_trial_line(line):
            peaks.append(peak_rss_mb())
            gradients.append(len(traced_gradients()))

    with Progress(on_line=measure):
        run_search(config(tmp_path, max_trials=8, epochs=1, retrain=False, evaluate=False))
    assert len(peaks) == 8
    assert len(set(gradients[2:])) == 1  # nothing a trial traced stays registered
    assert peaks[-1] < 1.10 * peaks[2]
