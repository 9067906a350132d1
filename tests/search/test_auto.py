"""The auto tuner: rungs of epochs, promotions of each rung's best third, and draws near the
best configurations."""

import keras_tuner as kt
import numpy as np
import pytest
from conftest import is_trial_line
from mlflow.tracking import MlflowClient

from autocnn.config import SearchConfig
from autocnn.search.auto import AutoOracle, configuration, rungs
from autocnn.search.mutation import complete, mutate, neighbour
from autocnn.search.run import run_search


@pytest.mark.parametrize("epochs, expected", [(9, [1, 3, 9]), (15, [2, 6, 15]),
                                              (30, [3, 9, 30]), (2, [1, 2]), (1, [1])])
def test_rungs_are_a_factor_of_three_apart_up_to_the_epochs(epochs, expected):
    assert rungs(epochs) == expected


@pytest.mark.parametrize("trials, expected", [(None, [2, 6, 20]), (13, [2, 6, 20]),
                                              (12, [6, 20]), (4, [6, 20]), (3, [20]),
                                              (1, [20])])
def test_a_trial_limit_keeps_only_the_rungs_it_can_fill(trials, expected):
    assert rungs(20, trials=trials) == expected


def small_space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Choice("filters", [16, 32, 64], default=32)
    family = hp.Choice("family", ["plain", "residual"], default="plain")
    with hp.conditional_scope("family", ["residual"]):
        hp.Boolean("bottleneck", default=False)
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3)
    hp.Fixed("stride", 1)
    assert family == "plain"
    return hp


def test_a_neighbour_is_the_next_value_along_the_range():
    rng = np.random.default_rng(0)
    filters = small_space()._hps["filters"][0]
    assert {neighbour(filters, 16, rng) for _ in range(20)} == {32}
    assert {neighbour(filters, 32, rng) for _ in range(40)} == {16, 64}
    rate = small_space()._hps["learning_rate"][0]
    moved = {round(neighbour(rate, 1e-3, rng), 6) for _ in range(40)}
    assert moved == {round(1e-3 * np.exp(0.5), 6), round(1e-3 / np.exp(0.5), 6)}
    assert neighbour(rate, 1e-1, rng) <= 1e-1  # clipped to the range


def test_a_mutation_moves_one_value_and_gives_what_it_activates_its_default():
    space, rng = small_space(), np.random.default_rng(3)
    parent = complete(space, {})
    assert parent == {"filters": 32, "family": "plain", "learning_rate": 1e-3, "stride": 1}
    for _ in range(20):
        child = mutate(space, parent, rng)
        changed = [k for k in parent if child.get(k) != parent[k]]
        assert len(changed) == 1 and "stride" not in changed  # a fixed value never moves
        if child["family"] == "residual":
            assert child["bottleneck"] is False  # newly active: its default
        else:
            assert "bottleneck" not in child


def test_a_mutation_can_move_what_only_the_parents_branch_has():
    space, rng = small_space(), np.random.default_rng(0)
    parent = complete(space, {"family": "residual"})
    assert parent["bottleneck"] is False
    moved = {k for _ in range(40) for k, v in mutate(space, parent, rng).items()
             if parent.get(k) != v}
    assert "bottleneck" in moved  # active in the parent, though not under the defaults


def oracle(tmp_path, warm_start=({},), max_trials=30):
    made = AutoOracle(objective="val_accuracy", max_trials=max_trials, seed=1,
                      warm_start=warm_start, max_epochs=9)
    made.update_space(small_space())
    made.verbose = 0
    made._set_project_dir(str(tmp_path), "auto")
    return made


def finish(made, trial, score):
    made.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    made.end_trial(trial)


def test_the_best_third_of_a_rung_goes_on_from_its_checkpoint(tmp_path):
    made = oracle(tmp_path, warm_start=[{}, {"filters": 64}])
    first = [made.create_trial(f"t{i}") for i in range(3)]
    values = [t.hyperparameters.values for t in first]
    assert configuration(values[0]) == complete(small_space(), {})  # the warm starts first
    assert values[1]["filters"] == 64
    assert all(v["tuner/rung"] == 0 and v["tuner/epochs"] == 1 for v in values)
    for trial, score in zip(first, [0.5, 0.9, 0.7]):
        finish(made, trial, score)
    promoted_trial = made.create_trial("t3")
    promoted = promoted_trial.hyperparameters.values
    assert promoted["tuner/trial_id"] == first[1].trial_id  # the best of three
    assert (promoted["tuner/rung"], promoted["tuner/initial_epoch"],
            promoted["tuner/epochs"]) == (1, 1, 3)
    assert configuration(promoted) == configuration(values[1])
    # keras-tuner counts the best epoch from the fit's first; the trial's is from the start.
    made.update_trial(promoted_trial.trial_id, {"val_accuracy": 0.93}, step=1)
    promoted_trial.status = "COMPLETED"
    made.end_trial(promoted_trial)
    assert made.get_trial(promoted_trial.trial_id).best_step == 2
    # A configuration is judged by its longest training, even where its first rung scored more.
    assert [t.trial_id for t in made.get_best_trials(3)] == [
        promoted_trial.trial_id, first[2].trial_id, first[0].trial_id]
    made.trials[promoted_trial.trial_id].score = 0.6
    assert [t.trial_id for t in made.get_best_trials(2)] == [first[2].trial_id,
                                                             promoted_trial.trial_id]
    # Promoted once: the next trial is a new configuration at the first rung.
    fresh = made.create_trial("t4").hyperparameters.values
    assert fresh["tuner/rung"] == 0 and "tuner/trial_id" not in fresh
    assert configuration(fresh) not in [configuration(v) for v in values]


def test_new_configurations_are_mostly_neighbours_of_the_best(tmp_path):
    made = oracle(tmp_path)
    best = made.create_trial("t0")
    finish(made, best, 0.95)
    best_values = configuration(best.hyperparameters.values)
    near = 0
    for i in range(1, 21):
        trial = made.create_trial(f"t{i}")
        values = configuration(trial.hyperparameters.values)
        if "tuner/trial_id" not in trial.hyperparameters.values:
            near += sum(values.get(k) != v for k, v in best_values.items()) <= 2
        finish(made, trial, 0.1)
    assert near >= 10  # four in five are mutations of the one good configuration


def test_an_auto_search_promotes_trials_and_logs_each_rung(tmp_path, progress):
    uri = f"sqlite:///{tmp_path}/db.db"
    result = run_search(SearchConfig(
        tuner="auto", max_trials=5, epochs=3, seed=3, tracking_uri=uri,
        tuner_dir=str(tmp_path / "tuner"), project="auto", register=False))
    assert result.trials_completed == 5
    lines = [line for line in progress if is_trial_line(line)]
    continued = [line for line in lines if "continued to epoch 3" in line]
    assert len(continued) == 1  # three at one epoch, the best of them to three, one more new
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("auto").experiment_id],
                              filter_string="tags.status = 'COMPLETED'")
    epochs = sorted(len(client.get_metric_history(r.info.run_id, "val_accuracy")) for r in runs
                    if "mlflow.parentRunId" in r.data.tags)
    assert epochs == [1, 1, 1, 1, 2]  # the promoted trial trained epochs 2 and 3
    continued = [r for r in runs if "mlflow.parentRunId" in r.data.tags
                 and len(client.get_metric_history(r.info.run_id, "val_accuracy")) == 2]
    assert continued[0].data.metrics["best_epoch"] in (2, 3)  # counted from the first epoch
