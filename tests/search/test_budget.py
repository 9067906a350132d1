"""The one owner of the time budget: the clock and its reserve, the finalists' reserve, the final
training's share, the configurations too slow for what is left, and the deadlines a worker or an
isolated trial follows."""

import math
import time

import keras_tuner as kt
import pytest

from autocnn import data
from autocnn.config import SearchConfig
from autocnn.search import budget as budgets
from autocnn.search import cost, final
from autocnn.search.prepare import make_hypermodel
from autocnn.search.tuners import create_tuner
from autocnn.tracking import Tracker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_clock_counts_down_and_keeps_a_reserve():
    clock = Clock()
    budget = budgets.Clock(60, clock=clock)
    clock.now += 20
    assert budget.elapsed == 20 and budget.remaining == 40
    assert budget.finish == 5  # for evaluating and registering: 5%, at least 5 s
    assert budget.fits(35) and not budget.fits(36)
    budget.reserve = 15  # retraining the best trial so far
    assert budget.search_remaining == 20 and not budget.fits(21)
    assert budget.describe() == "0:40 of 1:00 left"
    assert budgets.Clock(200).finish == 10 and budgets.Clock(7200).finish == 60


def test_no_budget_never_runs_out():
    budget = budgets.SearchBudget(budgets.Clock(None))
    assert budget.remaining() == math.inf and budget.fits(1e9) and budget.describe() == ""
    assert budget.trial_deadline() is None and budget.final_deadline() == []
    assert budget.final_training_refused(object(), 10.0) is None


def test_a_deadline_is_what_a_worker_or_an_isolated_trial_follows():
    end = time.time() + 60
    assert budgets.Deadline(lambda: end).fits(30) and not budgets.Deadline(lambda: end).fits(90)
    assert budgets.Deadline(lambda: end).trial_deadline() == end
    assert budgets.Deadline().fits(1e9) and budgets.Deadline().trial_deadline() is None


class _Trials:
    """A stand-in for a tuner: ranked trials and their seconds per epoch."""

    def __init__(self, values_by_score):
        self.trials = []
        for number, (score, values) in enumerate(values_by_score):
            hp = kt.HyperParameters()
            for name, value in values.items():
                hp.Fixed(name, value)
            trial = kt.engine.trial.Trial(hp, trial_id=str(number))
            trial.score = score
            self.trials.append(trial)
        self.oracle = self
        self.epoch_seconds = {t.trial_id: 1.0 for t in self.trials}

    def get_best_trials(self, n):
        return sorted(self.trials, key=lambda t: -t.score)[:n]

    def _get_checkpoint_fname(self, trial_id):
        return f"no such folder/trial_{trial_id}/checkpoint.weights.h5"  # none: a fresh start


def test_the_budget_keeps_time_for_every_finalist():
    tuner = _Trials([(0.90, {"filters": 32}), (0.85, {"filters": 64}), (0.80, {"filters": 16})])
    seconds = {"0": 3.0, "1": 5.0}  # trial 2's is not measured: the mean stands in
    for finalists, reserve in [(1, 60.0), (2, 160.0), (3, 240.0)]:
        budget = budgets.SearchBudget(budgets.Clock(600), lambda trial, per_epoch: 20 * per_epoch,
                                      finalists)
        budget.keep_for_finalists(tuner.oracle, seconds)
        assert budget.clock.reserve == reserve


def test_the_last_rungs_reserve_holds_at_most_half_the_training_time():
    tuner = _Trials([(0.90, {"filters": 32}), (0.85, {"filters": 64})])
    def final(trial, per_epoch):
        return 400.0  # each of the two full-data finalists

    for capped, reserve in [(False, 800.0), (True, 0.5 * (600 - 30))]:
        budget = budgets.SearchBudget(budgets.Clock(600), final, 2, capped=capped)
        budget.keep_for_finalists(tuner.oracle, {"0": 1.0, "1": 1.0})
        assert budget.clock.reserve == reserve


def test_a_capped_final_training_needs_only_its_trials_steps():
    trial = _Trials([(0.90, {"filters": 32})]).trials[0]
    trial.best_step = 4  # five epochs of 10 s on its share of the images
    clock = Clock()
    budget = budgets.SearchBudget(budgets.Clock(600, clock=clock), lambda t, per_epoch: 900.0,
                                  capped=True)
    assert budget.final_training_refused(trial, 10.0) is None  # 50 s fit in the 9:30 left
    uncapped = budgets.SearchBudget(budgets.Clock(600, clock=clock), lambda t, per_epoch: 900.0)
    assert uncapped.final_training_refused(trial, 10.0).startswith("training it would take")
    clock.now += 600 - 30 - 40  # 40 s left for training
    assert budget.final_training_refused(trial, 10.0) == (
        "training it on all the images for as many steps as its trial took would take about "
        "0:50, the budget has 0:40 left for it")


def test_a_new_configurations_final_training_is_counted_at_the_epochs_it_will_take():
    last_rung = SearchConfig(trial_fraction=0.25, epochs=15, patience=5)
    assert budgets.expected_final_epochs(last_rung, first_rung=2) == 7  # 2, then 5 more
    assert budgets.expected_final_epochs(last_rung, first_rung=None) == 15
    assert budgets.expected_final_epochs(SearchConfig(epochs=15, patience=5), first_rung=2) == 15


def _fake_training(scores):
    def train_in_full(hypermodel, trial, dataset, config, callbacks=(), **progress):
        return f"model of {trial.trial_id}", {"loss": [1.0, 0.5],
                                              "val_accuracy": [0.5, scores[trial.trial_id]]}
    return train_in_full


def test_finalists_are_distinct_configurations_and_the_best_on_all_images_wins(monkeypatch,
                                                                               progress):
    tuner = _Trials([(0.90, {"filters": 32}), (0.89, {"filters": 32}), (0.85, {"filters": 64}),
                     (0.80, {"filters": 16})])
    monkeypatch.setattr(final, "train_in_full", _fake_training({"0": 0.93, "2": 0.95}))
    lines = progress
    budget = budgets.SearchBudget(budgets.Clock(None), lambda trial, per_epoch: 10.0)
    result = final._last_rung(SearchConfig(trial_fraction=0.5, finalists=2), None, tuner,
                              type("D", (), {"train": range(100)})(), budget)
    assert result.finalists == {"0": 0.93, "2": 0.95}  # trial 1 repeats trial 0: passed over
    assert result.trial.trial_id == "2" and result.model == "model of 2" and result.epochs == 2
    assert lines[0].startswith("best trials 1 (0.9000), 3 (0.8500): training each")
    assert lines[-1] == "trial 3's configuration is the result"


def test_a_finalist_the_budget_cannot_afford_is_skipped(monkeypatch, progress):
    tuner = _Trials([(0.90, {"filters": 32}), (0.85, {"filters": 64})])
    monkeypatch.setattr(final, "train_in_full", _fake_training({"0": 0.93, "1": 0.95}))
    lines = progress
    budget = budgets.SearchBudget(
        budgets.Clock(600), lambda trial, per_epoch: 30.0 if trial.trial_id == "0" else 900.0)
    result = final._last_rung(SearchConfig(trial_fraction=0.5, finalists=2), None, tuner,
                              type("D", (), {"train": range(100)})(), budget)
    assert result.finalists == {"0": 0.93} and result.trial.trial_id == "0"
    assert any(line.startswith("trial 2: skipped, training it would take about 15:00")
               for line in lines)


def test_a_finalist_that_would_get_fewer_epochs_than_the_best_so_far_is_skipped(monkeypatch,
                                                                                progress):
    tuner = _Trials([(0.90, {"filters": 32}), (0.85, {"filters": 64})])
    monkeypatch.setattr(final, "train_in_full", _fake_training({"0": 0.93, "1": 0.95}))
    lines = progress
    # 600 s less the finish's 30: trial 0's full-data epochs take 200 s (2 of them fit, and it
    # trains 2), trial 1's take 400 s: it would have 1.
    budget = budgets.SearchBudget(budgets.Clock(600), lambda trial, per_epoch: 10.0,
                                  capped=True, full_epoch=lambda per_epoch: per_epoch)
    tuner.epoch_seconds = {"0": 200.0, "1": 400.0}
    result = final._last_rung(SearchConfig(trial_fraction=0.5, finalists=2, epochs=20), None,
                              tuner, type("D", (), {"train": range(100)})(), budget)
    assert result.finalists == {"0": 0.93} and result.trial.trial_id == "0"
    assert ("trial 2: skipped, the time left affords it about 1 epoch on all the images, fewer "
            "than the 2 of trial 1") in lines
    assert "trial 1: about 2 epochs fit in the time left (planned again as its epochs are " \
        "timed); its learning-rate schedule spans them" in lines


def test_the_budget_says_why_a_configuration_is_too_slow(tmp_path):
    dataset = data.load("digits")
    config = SearchConfig(tracking_uri=f"sqlite:///{tmp_path}/db.db", project="c",
                          tuner_dir=str(tmp_path / "tuner"), epochs=10)
    hypermodel = make_hypermodel(config, dataset)
    now = [0.0]
    trial_cost = cost.TrialCost(hypermodel, len(dataset.train), len(dataset.val), 10,
                                len(dataset.train) + len(dataset.val))
    budget = budgets.SearchBudget(budgets.Clock(600, clock=lambda: now[0]), cost=trial_cost)
    tuner = create_tuner(config, hypermodel, Tracker(config.tracking_uri, "c"), budget=budget)
    first = tuner.oracle.create_trial("tuner0")  # the defaults: nothing to predict from yet
    assert first.hyperparameters.values["filters"] == 32
    tuner.epoch_seconds[first.trial_id] = 5.0  # 50 s for 10 epochs
    assert tuner.oracle.affordable(first.hyperparameters.values) is None
    too_big = {**first.hyperparameters.values, "convs_per_block": 3, "filters": 64,
               "kernel_size": 7, "dense_units": 256}
    reason = tuner.oracle.affordable(too_big)
    assert reason.startswith("a plain model (") and "more than half of the 9:30 left" in reason
    now[0] = 600 - 30 - 60  # 1:00 left for trials: even the defaults' 50 s are too long now
    assert "its trial would take about 0:50" in tuner.oracle.affordable(
        first.hyperparameters.values)
    now[0] = 0.0
    trial_cost.retrain_images = 100 * len(dataset.train)  # retraining would not fit
    assert "retraining it would take about" in tuner.oracle.affordable(
        first.hyperparameters.values)


@pytest.mark.parametrize("fraction, final_data, expected",
                         [(1.0, "auto", 1.5), (0.5, "train", 4.0), (0.5, "train+val", 6.0)])
def test_the_final_training_is_counted_at_the_best_epoch(fraction, final_data, expected):
    """train + val (1.5 times the trial's images) for the best epoch at full data; on the last
    rung, all of train (twice the trial's half), or train + val (three times), for the best
    epoch and the patience."""
    config = SearchConfig(trial_fraction=fraction, patience=1, epochs=10, final_data=final_data)
    dataset = type("D", (), {"train": range(100), "val": range(50)})()
    trial = type("T", (), {"best_step": 0})()
    seconds = budgets.final_seconds(config, dataset, int(100 * fraction))
    assert seconds(trial, 1.0) == pytest.approx(expected)


def test_a_finalists_epochs_are_those_the_time_left_affords():
    """So that its learning-rate schedule ends with the budget rather than being cut off."""
    config = SearchConfig(trial_fraction=0.25, epochs=20)
    dataset = type("D", (), {"train": range(400), "val": range(150)})()
    per_epoch = budgets.full_epoch_seconds(config, dataset, 100)
    assert per_epoch(10.0) == pytest.approx(10.0 * (400 + 50) / (100 + 50))  # 30 s
    assert budgets.full_epoch_seconds(SearchConfig(), dataset, 100) is None  # no last rung
    on_val = SearchConfig(trial_fraction=0.25, epochs=20, final_data="train+val")
    # It trains on the 150 validation images too, and validates on none.
    assert budgets.full_epoch_seconds(on_val, dataset, 100)(10.0) == pytest.approx(
        10.0 * (400 + 150) / (100 + 50))
    clock = Clock()
    budget = budgets.SearchBudget(budgets.Clock(600, clock=clock), full_epoch=per_epoch)
    assert budget.final_epochs(10.0, 20) == 19  # 570 s for training, 30 s an epoch
    assert budget.final_epochs(10.0, 12) == 12 and budget.final_epochs(None, 20) == 20
    clock.now += 560
    assert budget.final_epochs(10.0, 20) == 1  # even with 10 s left, an epoch (the deadline cuts)
    assert budgets.SearchBudget(budgets.Clock(None), full_epoch=per_epoch).final_epochs(
        10.0, 20) == 20


@pytest.mark.parametrize("settings, on_val", [
    (dict(trial_fraction=0.25, time_budget=600), True),  # auto: the budget plans its epochs
    (dict(trial_fraction=0.25), False),  # auto without a budget: validation picks the epoch
    (dict(trial_fraction=0.25, final_data="train+val"), True),
    (dict(trial_fraction=0.25, time_budget=600, final_data="train"), False),
    (dict(time_budget=600, final_data="train+val"), False),  # no last rung: retrain's own
    (dict(trial_fraction=0.25, time_budget=600, retrain=False), False)])
def test_which_last_rung_trains_on_the_validation_images(settings, on_val):
    assert budgets.final_on_val(SearchConfig(**settings)) is on_val
