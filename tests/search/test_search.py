"""Failed trials: rejected architectures are recorded with the reason and the search goes on."""

import re

import numpy as np
import pytest
from conftest import is_trial_line
from mlflow.tracking import MlflowClient

from autocnn.config import SearchConfig
from autocnn.errors import SearchError
from autocnn.search.run import run_search


def config(tmp_path, **overrides):
    settings = dict(max_trials=4, epochs=1, seed=3, tracking_uri=f"sqlite:///{tmp_path}/db.db",
                    tuner_dir=str(tmp_path / "tuner"), project="s", register=False)
    return SearchConfig(**{**settings, **overrides})


# On 8x8, one block of a 5x5 valid conv fits (8 -> 4 -> pool 2); a second cannot (5x5 on 2x2).
VALID_5X5 = {"family": "plain", "padding": "valid", "kernel_size": 5, "stride": 1,
             "convs_per_block": 1, "pooling": "max", "pool_size": 2}


def test_configurations_the_sizing_rejects_are_drawn_again_not_tried(tmp_path, progress):
    lines = progress
    # num_blocks is searched in 1..2, the most an 8x8 input takes.
    result = run_search(config(tmp_path, space=VALID_5X5))
    assert result.trials_completed == 4 and result.trials_failed == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/db.db")
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id],
                              filter_string="tags.status = 'COMPLETED'")
    assert sorted(r.data.params["num_blocks"] for r in runs) == ["1"] * 4
    # Rejected: a second block (5x5 on 2x2), or a dilated 5x5 (a 9x9 window on 8x8).
    assert any(line.startswith("drew again instead of") and re.search(
        r"the sizing rejects \(the last: b[12]_conv1: a 5x5 window", line) for line in lines)


def test_a_search_where_every_trial_fails_names_the_reason(tmp_path, progress):
    lines = progress
    # Two blocks never fit (5x5 on 2x2), and a dilated 5x5 not even in the first (9x9 on 8x8).
    with pytest.raises(SearchError, match=r"2 trials failed in a row; most common reason: "
                                          r"rejected by sizing: b[12]_conv1: a 5x5 window"):
        run_search(config(tmp_path, max_failed_trials=2, space={**VALID_5X5, "num_blocks": 2}))
    # Nothing else to draw: the last draw runs, and fails with the reason.
    assert any(re.search(r"failed    rejected by sizing: b[12]_conv1: a 5x5 window", line)
               for line in lines if is_trial_line(line))
    client = MlflowClient(f"sqlite:///{tmp_path}/db.db")
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parent] == ["FAILED"]
    assert len(runs) == 3
    failed = [r for r in runs if r.data.tags.get("status") == "FAILED"]
    assert len(failed) == 2
    assert all(r.data.tags["failure_reason"].startswith("rejected by sizing") for r in failed)


def test_a_short_search_where_nothing_succeeds_says_so(tmp_path):
    with pytest.raises(SearchError, match=r"no trial succeeded; most common reason: "
                                          r"rejected by sizing"):
        run_search(config(tmp_path, max_trials=2, space={**VALID_5X5, "num_blocks": 2}))


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_the_first_trial_is_the_default_model(tmp_path, tuner):
    import keras_tuner as kt

    from autocnn.space import hypermodel as space

    defaults = kt.HyperParameters()
    space.size_model(defaults, (8, 8, 1), 10)
    result = run_search(config(tmp_path, tuner=tuner, max_trials=1))
    chosen = result.best_hyperparameters
    assert {k: chosen[k] for k in space.active_values(defaults)} == space.active_values(defaults)
    assert chosen["batch_size"] == 32 and chosen["optimizer"] == "adam"


def test_a_trial_fraction_search_ends_with_a_rung_on_all_the_training_images(tmp_path, progress):
    lines = progress
    result = run_search(config(tmp_path, max_trials=1, epochs=3, patience=1, trial_fraction=0.5))
    assert any("training it on all 1149 training images, up to 3 epochs" in line
               for line in lines)
    assert result.retrained_on.startswith("train (")
    assert 1 <= result.retrain_epochs <= 3
    history = MlflowClient(f"sqlite:///{tmp_path}/db.db").get_metric_history(
        result.run_id, "retrain_val_accuracy")
    assert len(history) == result.retrain_epochs  # validation watched the final training


def test_the_last_rung_trains_the_finalists_and_keeps_the_best_on_validation(tmp_path, progress):
    import keras

    from autocnn import data

    lines = progress
    # A budget plans the finalists' epochs: their rate falls on a cosine to the planned end,
    # not by the plateau schedule their trials had.
    result = run_search(config(tmp_path, max_trials=3, epochs=2, patience=1, trial_fraction=0.5,
                               finalists=2, time_budget=900, final_data="train",
                               space={"family": "plain", "num_blocks": 1,
                                      "lr_schedule": "plateau"}))
    assert any(line.startswith("best trials ") and "training each on all 1149 training images"
               in line for line in lines)
    trained = [line for line in lines if "on all the training images, epoch" in line]
    assert len(trained) == 2 and len(result.finalists) == 2
    assert len([line for line in lines if "starting from its trial's best weights" in line]) == 2
    assert len([line for line in lines if "falls on a cosine to the planned end, not by its own "
                "plateau schedule" in line]) == 2
    winner = max(result.finalists, key=result.finalists.get)
    assert result.best_trial_id == winner
    # The winner's model survived the other finalist's training: it scores what it scored.
    dataset = data.load("digits")
    _, accuracy = keras.Model.evaluate(result.model, dataset.batches(dataset.val, 64),
                                       verbose=0)
    assert accuracy == pytest.approx(result.finalists[winner], abs=1e-4)
    metrics = MlflowClient(f"sqlite:///{tmp_path}/db.db").get_run(result.run_id).data.metrics
    assert metrics["final_val_accuracy"] == pytest.approx(result.finalists[winner])
    assert len([k for k in metrics if k.startswith("finalist_trial_")]) == 2
    params = MlflowClient(f"sqlite:///{tmp_path}/db.db").get_run(result.run_id).data.params
    assert params["best_lr_schedule"] == "plateau" and params["final_lr_schedule"] == "cosine"


def test_a_budgeted_last_rung_trains_the_best_trial_on_train_and_val_to_its_last_epoch(
        tmp_path, progress):
    lines = progress
    result = run_search(config(tmp_path, max_trials=2, epochs=2, patience=1, trial_fraction=0.5,
                               time_budget=900, space={"family": "plain", "num_blocks": 1,
                                                       "lr_schedule": "plateau"}))
    best = int(result.best_trial_id) + 1
    assert any(line.startswith(f"best trial {best} (") and "training it on all 1437 training "
               "and validation images for about " in line for line in lines)
    assert any(line.startswith(f"trial {best}: starting from its trial's best weights")
               for line in lines)
    assert result.retrained_on == "train + val (its last epoch)" and result.finalists == {}
    assert 1 <= result.retrain_epochs <= 2
    client = MlflowClient(f"sqlite:///{tmp_path}/db.db")
    run = client.get_run(result.run_id)
    # Nothing was validated: the history is the training's own, and no finalist score is kept.
    assert len(client.get_metric_history(result.run_id, "retrain_accuracy")) == \
        result.retrain_epochs
    assert not any("val" in k for k in run.data.metrics if k.startswith(("retrain_", "final")))
    assert run.data.params["final_lr_schedule"] == "cosine"
    assert run.data.params["final_trained_on"] == "train + val (its last epoch)"


def test_a_finalist_starts_from_its_trials_best_weights(tmp_path, seed):
    import keras
    import keras_tuner as kt

    from autocnn import data
    from autocnn.search import final
    from autocnn.space.hypermodel import CNNHyperModel

    dataset = data.load("digits")
    hypermodel = CNNHyperModel(dataset.input_shape, dataset.num_classes,
                               rules={"family": "plain", "num_blocks": 1})
    trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id="0")
    trained = hypermodel.build(trial.hyperparameters)
    trained.fit(dataset.batches(dataset.train, 64), epochs=1, shuffle=False, verbose=0)
    trained.save_weights(tmp_path / "checkpoint.weights.h5")
    seen = []
    first = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.append(first.model.get_weights()))
    final.train_in_full(hypermodel, trial, dataset, config(tmp_path, epochs=1), [first],
                        start=str(tmp_path / "checkpoint.weights.h5"))
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], trained.get_weights()))
    final.train_in_full(hypermodel, trial, dataset, config(tmp_path, epochs=1), [first])
    assert not all(np.array_equal(a, b) for a, b in zip(seen[1], trained.get_weights()))
