"""What the console shows: no native-library noise, live progress inside a training."""

import io
import os
import subprocess
import sys

import numpy as np

from autocnn.cli import native_logs
from autocnn.search import progress


def test_the_command_prints_no_native_start_up_noise(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    # digits through a tf.data pipeline: TensorFlow starts, with its devices.
    done = subprocess.run([sys.executable, "-m", "autocnn", "data", "inspect", "digits",
                           "--output", str(tmp_path / "grid.png")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert "digits: 8x8x1 images" in done.stdout
    verbose = subprocess.run([sys.executable, "-m", "autocnn", "search", "--max-trials", "0",
                              "-v"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert verbose.returncode == 2 and "--max-trials" in verbose.stderr  # errors still show


def test_the_filter_drops_noise_lines_and_forwards_the_rest():
    read, write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\n"
                    b"I0000 00:00:1796116366.737963    2460 cudart_stub.cc:31] Could not find "
                    b"cuda drivers on your machine, GPU will not be used.\n"
                    b"E0000 00:00:1796116372.239103    2460 cuda_platform.cc:52] failed call to "
                    b"cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
                    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                    b"Error: x.npz: no such file\n"
                    b"E0000 00:00:1796116372.239103    2460 oom.cc:1] a real native error\n"
                    b"progress 3/10")
    os.close(write)
    native_logs._forward(read, out_write)
    os.close(out_write)
    with os.fdopen(out_read, "rb") as forwarded:
        assert forwarded.read() == (b"Error: x.npz: no such file\n"
                                    b"E0000 00:00:1796116372.239103    2460 oom.cc:1] a real "
                                    b"native error\nprogress 3/10")


def test_verbose_or_the_users_own_log_level_keeps_the_notices():
    assert native_logs.wanted(["search"], environ={})
    assert not native_logs.wanted(["search", "-v"], environ={})
    assert not native_logs.wanted(["search"], environ={"TF_CPP_MIN_LOG_LEVEL": "0"})


def _fit(callbacks, epochs=3):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).random((64, 4)), np.arange(64) % 2
    model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=8, verbose=0,
              callbacks=callbacks)


def test_a_training_prints_a_plain_line_per_epoch_off_a_terminal():
    lines = []
    _fit([progress.EpochProgress("trial 3/10", lines.append, every=0.0)])
    assert len(lines) == 3
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"trial 3/10  epoch {epoch}/3  val_accuracy 0.")
        assert " ETA " in line
    assert lines[-1].endswith("ETA 0:00")


def test_epochs_of_a_fraction_of_a_second_do_not_flood_a_log():
    lines = []
    _fit([progress.EpochProgress("trial 1/10", lines.append)])  # at most one each 10 s
    assert lines == []


def test_on_a_terminal_one_line_redraws_in_place(monkeypatch):
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)
    stream = io.StringIO()
    _fit([progress.LiveProgress("retraining", batch_size=8, stream=stream)], epochs=2)
    text = stream.getvalue()
    assert "\n" not in text  # redrawn in place, never scrolled
    draws = text.split("\r\x1b[K")
    assert any("epoch 2/2  batch 8/8  " in d and "img/s" in d and "val_accuracy" in d
               for d in draws)
    assert draws[-1] == ""  # cleared at the end for the line that follows


def test_no_progress_of_ours_when_keras_shows_its_own():
    assert progress.training_progress("trial 1", verbose=1) == []
    shown = progress.training_progress("trial 1", verbose=0)
    assert len(shown) == 1 and isinstance(shown[0], progress.EpochProgress)
