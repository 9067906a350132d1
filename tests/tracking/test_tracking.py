"""The champion alias moves only to a version that beats the current champion."""

import keras

from autocnn.tracking import Tracker

FINGERPRINT = {"source": "x.npz", "classes": ["a", "b"], "input_shape": [4, 4, 1],
               "splits": {"train": 8, "val": 2, "test": 2}, "digest": "0123abcd"}


def tiny_model():
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_champion_moves_only_on_improvement(tmp_path, seed):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "champions")
    x = keras.random.uniform((3, 4, 4, 1), seed=seed).numpy()
    results = []
    for score in (0.5, 0.4, 0.9):
        tracker.start_run("search", {}, {})
        results.append(tracker.register_model(tiny_model(), x, "m", "test_f1_macro", score,
                                              FINGERPRINT))
        tracker.end_run()
    assert [(r.version, r.champion, r.previous_champion) for r in results] == [
        (1, True, None), (2, False, 0.5), (3, True, 0.5)]
    assert tracker.client.get_model_version_by_alias("m", "champion").version in (3, "3")
    assert tracker.champion_score("m", "test_f1_macro") == 0.9
    assert (tmp_path / "artifacts").is_dir()
