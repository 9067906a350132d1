"""Class weights: balanced when the classes' counts differ, in every training, and said so."""

import dataclasses

import keras_tuner as kt
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from autocnn import data
from autocnn.config import SearchConfig
from autocnn.errors import ConfigError
from autocnn.search.prepare import class_weights, describe_class_weights, make_hypermodel
from autocnn.search.run import run_search


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def imbalanced(dataset, keep=20):
    """``dataset`` with only ``keep`` training images of class 0."""
    labels = dataset.train.labels
    zeros = np.flatnonzero(labels == 0)
    kept = np.sort(np.concatenate([np.flatnonzero(labels != 0), zeros[:keep]]))
    return dataclasses.replace(dataset, train=dataset.train.take(kept))


def test_balanced_classes_weigh_alike_unless_asked(digits):
    assert class_weights(SearchConfig(), digits) is None  # digits' classes differ by < 1.5x
    assert class_weights(SearchConfig(class_weight="none"), digits) is None
    weights = class_weights(SearchConfig(class_weight="balanced"), digits)
    assert sorted(weights) == list(range(10)) and all(0.9 < w < 1.1 for w in weights.values())
    with pytest.raises(ConfigError, match="unknown class_weight 'some'"):
        SearchConfig(class_weight="some")


def test_an_imbalanced_training_set_is_balanced_by_default(digits):
    skewed = imbalanced(digits)
    weights = class_weights(SearchConfig(), skewed)
    counts = np.bincount(skewed.train.labels)
    assert max(weights, key=weights.get) == 0 and weights[0] > 5  # 20 images against ~115
    # Every class then weighs the same in total, and all images together as many as there are.
    totals = [weights[c] * counts[c] for c in range(10)]
    assert np.allclose(totals, totals[0]) and np.isclose(sum(totals), len(skewed.train))
    assert class_weights(SearchConfig(class_weight="none"), skewed) is None
    line = describe_class_weights(weights, skewed)
    assert line.startswith("class weights: balanced, as the training classes have 20 to ")
    assert "(0 weighs most, " in line and line.endswith("--class-weight none weighs all alike)")


def test_the_weights_reach_the_loss(digits):
    """All weights zero make the weighted loss zero: the hypermodel passes them to fit."""
    config = SearchConfig(class_weight="balanced")
    hypermodel = make_hypermodel(config, digits)
    train = digits.batches(digits.train, 64)
    losses = {}
    for name, weights in [("alike", None), ("zero", {c: 0.0 for c in range(10)})]:
        hypermodel.class_weight = weights
        hp = kt.HyperParameters()
        model = hypermodel.build(hp)
        losses[name] = hypermodel.fit(hp, model, train, epochs=1, verbose=0).history["loss"][0]
    assert losses["alike"] > 0.5 and losses["zero"] == 0.0


def test_a_search_on_imbalanced_data_weighs_the_classes_and_records_it(tmp_path, progress,
                                                                       digits):
    uri = f"sqlite:///{tmp_path}/db.db"
    config = SearchConfig(max_trials=1, epochs=1, tracking_uri=uri, register=False,
                          tuner_dir=str(tmp_path / "tuner"), project="w", retrain=False)
    result = run_search(config, imbalanced(digits))
    assert any(line.startswith("class weights: balanced") for line in progress)
    tags = MlflowClient(uri).get_run(result.run_id).data.tags
    weights = dict(pair.split(": ") for pair in tags["autocnn.class_weights"].split(", "))
    assert sorted(weights, key=int) == [str(c) for c in range(10)] and float(weights["0"]) > 5
