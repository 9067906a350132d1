"""The pieces that bound a search: durations, the budget, Ctrl-C, the training guards."""

import math
import os
import signal
import time

import numpy as np
import pytest

from autocnn.control import StopRequests, format_duration, parse_duration
from autocnn.errors import ConfigError


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("45m", 2700), ("2h", 7200),
                                           ("1h30m", 5400), ("1.5h", 5400), ("120", 120),
                                           ("2m 30s", 150)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "45x", "m", "1h-5m", "0s", "h30"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ConfigError, match="time budget"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (5, 65, 3600, 5430)] == ["0:05", "1:05", "1h00m",
                                                                  "1h30m"]


def test_ctrl_c_once_asks_to_stop_twice_stops_now_and_handlers_come_back(progress):
    before = signal.getsignal(signal.SIGINT)
    lines = progress
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.requested and "Ctrl-C again to stop now" in lines[0]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_stops_now():
    with StopRequests(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)


def tiny_model():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_stop_at_ends_training_at_the_deadline_mid_epoch(seed):
    import keras

    from autocnn.search.callbacks import StopAt

    x, y = np.ones((4000, 4), "float32"), np.zeros(4000, "int32")
    batches = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    stop = StopAt(time.time() + 0.3)

    def slow(batch, logs):
        time.sleep(0.01)

    history = tiny_model().fit(x, y, batch_size=1, epochs=5, verbose=0,
                               callbacks=[stop, counter, keras.callbacks.LambdaCallback(
                                   on_train_batch_end=slow)])
    assert stop.stopped
    assert len(history.history["loss"]) == 1  # the epoch in progress ended, no other began
    assert len(batches) < 4000


def test_the_final_trainings_epochs_are_planned_again_as_they_are_timed(monkeypatch, seed):
    import types

    import keras

    from autocnn.search import callbacks

    now, took = [100.0], iter([10, 10, 20, 20, 20, 20, 20])
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(time=lambda: now[0]))
    said, counted = [], []
    # Predicted: 3 epochs fit in the 65 s left. Timed: the first takes 10 s, so 6 do; then the
    # machine slows to 20 s an epoch, and after the third only 4 fit.
    plan = callbacks.EpochPlan(3, most=10, deadline=165.0, say=lambda *told: said.append(told))
    clock = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: now.__setitem__(0, now[0] + next(took)))
    shown = keras.callbacks.LambdaCallback(  # as a progress line reads it
        on_epoch_end=lambda epoch, logs: counted.append(shown.params["epochs"]))
    history = tiny_model().fit(np.ones((8, 4), "float32"), np.zeros(8, "int32"), epochs=10,
                               verbose=0, callbacks=[clock, plan, shown])
    assert len(history.history["loss"]) == 4 and plan.end == 4
    assert said == [(3, 6, 10.0), (6, 4, 15.0)]  # the pace leaves the traced first epoch out
    assert counted == [6, 6, 4, 4]  # "epoch 1/6", not "1/10"
    # The machine quickens again: the end grows, but only while the rate keeps falling.
    now[0], took = 100.0, iter([10, 10, 10, 2, 2, 2, 2, 2, 2, 2])
    said.clear()
    faster = callbacks.EpochPlan(3, most=10, deadline=165.0, say=lambda *told: said.append(told))
    history = tiny_model().fit(np.ones((8, 4), "float32"), np.zeros(8, "int32"), epochs=10,
                               verbose=0, callbacks=[clock, faster])
    # After the fourth epoch 8 fit, and 6 * 4 / 3 = 8 keeps the progress: 4/8 > 3/6.
    assert said == [(3, 6, 10.0), (6, 8, pytest.approx(22 / 3)), (8, 10, 6.0)]
    assert len(history.history["loss"]) == 10
    capped = callbacks.EpochPlan(3, most=4, deadline=1e9)
    capped.set_model(types.SimpleNamespace(stop_training=False))
    capped.on_epoch_begin(0)
    capped.on_epoch_end(0)
    assert capped.end == 4 and not capped.model.stop_training
    # Without a deadline the plan is its most epochs: a cosine spans them, the last ends it.
    endless = callbacks.EpochPlan(4, most=4, deadline=math.inf)
    history = tiny_model().fit(np.ones((8, 4), "float32"), np.zeros(8, "int32"), epochs=10,
                               verbose=0, callbacks=[endless])
    assert len(history.history["loss"]) == 4 and endless.end == 4


def test_a_non_finite_loss_fails_the_trial():
    from autocnn.errors import NonFiniteLoss
    from autocnn.search.callbacks import FailOnNonFinite

    guard = FailOnNonFinite()
    guard.on_epoch_end(0, {"loss": 0.5})
    for bad in (math.nan, math.inf):
        with pytest.raises(NonFiniteLoss, match=f"the loss became {bad} in epoch 3"):
            guard.on_epoch_end(2, {"loss": bad})


class Failed:
    def __init__(self, message):
        self.message = message


@pytest.mark.parametrize("message, reason", [
    ("Traceback ...\nautocnn.tuners.NonFiniteLoss: the loss became nan in epoch 2 (try)",
     "the loss became nan in epoch 2 (try)"),
    ("Traceback ...\nValueError: bad thing", "bad thing"),
    ("Traceback ...\ntensorflow.python.framework.errors_impl.ResourceExhaustedError: Graph "
     "execution error:\n\nOOM when allocating tensor with shape[64,512,512] and type float\n"
     "Hint: If you want to see a list of allocated tensors", "out of memory (OOM when "
     "allocating tensor with shape[64,512,512] and type float): lower --max-params"),
    ("Traceback ...\nMemoryError", "out of memory: lower"),
    ("", "unknown"),
])
def test_failure_reasons_are_short(message, reason):
    from autocnn.search.trial_runs import failure_reason

    assert failure_reason(Failed(message)).startswith(reason)
