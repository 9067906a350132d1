"""The command line: help, and one-line errors with exit status 2 for bad input."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_images, write_mnist_folder

from autocnn.cli.main import main


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_help_describes_every_search_option(capsys):
    code, out, _ = run_cli(capsys, "search", "--help")
    assert code == 0
    for option in ("--dataset", "--tuner", "--max-trials", "--epochs", "--seed",
                   "--tracking-uri", "--project", "--champion-metric"):
        assert option in out


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar99"], "Error: unknown data set 'cifar99' (no such file or folder): "
                               "choose one of digits, fashion_mnist, a folder"),
    (["--tuner", "grid"], "Error: Invalid value for '--tuner': 'grid' is not one of 'auto', "
                          "'random', 'bayesian', 'hyperband'."),
    (["--max-trials", "0"], "Error: Invalid value for '--max-trials': 0 is not in the range x>=1."),
])
def test_bad_options_get_one_line_and_exit_2(capsys, workdir, args, message):
    code, out, err = run_cli(capsys, "search", *args)
    assert code == 2
    assert err.strip().startswith(message)
    assert len(err.strip().splitlines()) == 1
    assert not (workdir / "mlruns").exists()


def test_unreachable_tracking_server_is_named(capsys, workdir):
    code, _, err = run_cli(capsys, "search", "--tracking-uri", "http://127.0.0.1:9",
                           "--max-trials", "1", "--epochs", "1")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("Error: cannot reach the MLflow tracking server at "
                           "http://127.0.0.1:9")
    assert "--tracking-uri" in line
    assert "Traceback" not in err


def test_unusable_tracking_uri_scheme_is_named(capsys, workdir):
    code, _, err = run_cli(capsys, "search", "--tracking-uri", "nosuchscheme://x",
                           "--max-trials", "1")
    assert code == 2
    assert "Error: cannot use tracking URI 'nosuchscheme://x'" in err
    assert "Traceback" not in err


def test_installed_command_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autocnn", "search", "--dataset", "nope"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: unknown data set 'nope' (no such file or ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_datasets_lists_every_kind_of_source(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "datasets", "--data-dir", str(tmp_path))
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == ["digits", "fashion_mnist", "idx:DIR", "PATH/", "FILE.npz", "tfds:NAME"]
    assert "available (embedded)" in out


def test_data_inspect_prints_counts_and_writes_a_grid(capsys, workdir):
    code, out, _ = run_cli(capsys, "data", "inspect", "digits", "--output", "grid.png")
    assert code == 0
    assert "digits: 8x8x1 images, 10 classes, 1149 train / 288 val / 360 test" in out
    assert "pixel values: 0.000 .. 1.000" in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) == 10 and all(len(r) == 4 for r in rows)
    assert (workdir / "grid.png").stat().st_size > 5000


def test_bad_image_size_is_one_line(capsys):
    code, _, err = run_cli(capsys, "data", "inspect", "digits", "--image-size", "64by64")
    assert code == 2
    assert err.strip().startswith("Error: Invalid value for '--image-size': '64by64' is not HxW")


def corrupt(root):
    (root / "cat" / "bad.png").write_bytes(b"garbage")


def truncated(root):
    path = root / "dog" / "001.jpg"
    path.write_bytes(path.read_bytes()[:200])


def npz(tmp_path, **arrays):
    np.savez(tmp_path / "d.npz", **arrays)
    return str(tmp_path / "d.npz")


def bad_magic(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x08\x01" + bytes(44))
    return f"idx:{folder}"


def truncated_gz(tmp_path):
    folder = write_mnist_folder(tmp_path / "m")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    return f"idx:{folder}"


def few(tmp_path):
    write_images(tmp_path / "few" / "cat", 8)
    write_images(tmp_path / "few" / "dog", 1)
    return str(tmp_path / "few")


BAD_INPUTS = {
    "corrupt image": (lambda t, f: (corrupt(f), str(f))[1], r"cat/bad.png: cannot read this image"),
    "truncated image": (lambda t, f: (truncated(f), str(f))[1],
                        r"dog/001.jpg: cannot read this image"),
    "non-image file": (lambda t, f: ((f / "eel" / "a.txt").write_text("x"), str(f))[1],
                       r"eel/a.txt: cannot read this image \(not an image file"),
    "empty class folder": (lambda t, f: ((f / "fox").mkdir(), str(f))[1],
                           r"pets/fox: empty class folder"),
    "one class": (lambda t, f: (write_images(t / "one" / "cat", 3), str(t / "one"))[1],
                  r"one: only one class folder \(cat\)"),
    "too few to split": (lambda t, f: few(t), r"class 'dog' has 1 image\(s\) left"),
    "npz lengths": (lambda t, f: npz(t, x=np.zeros((5, 4, 4)), y=np.zeros(4, int)),
                    r"x has 5 images but y has 4 labels"),
    "npz labels out of range": (
        lambda t, f: npz(t, x=np.zeros((4, 4, 4)), y=np.arange(4), class_names=np.array(["a"])),
        r"labels must lie in 0..0 for 1 classes, got 0..3"),
    "npz NaN": (lambda t, f: npz(t, x=np.full((4, 4, 4), np.nan), y=np.arange(4) % 2),
                r"NaN or infinite pixels"),
    "IDX magic": (lambda t, f: bad_magic(t), r"train-labels-idx1-ubyte: not an IDX file"),
    "truncated gz": (lambda t, f: truncated_gz(t), r"train-images-idx3-ubyte.gz: cannot read it"),
    "missing path": (lambda t, f: str(t / "nowhere.npz"), r"nowhere.npz: no such file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_is_one_line_with_exit_2(capsys, tmp_path, image_folder, case):
    make, message = BAD_INPUTS[case]
    dataset = make(tmp_path, image_folder)
    code, _, err = run_cli(capsys, "data", "inspect", dataset)
    lines = err.strip().splitlines()
    assert code == 2
    assert "Traceback" not in err
    assert lines[-1].startswith("Error: ")
    assert re.search(message, lines[-1]), lines[-1]


def test_explain_prints_the_sizing_table_keras_agrees_with(capsys):
    import keras_tuner as kt

    from autocnn.space import hypermodel as space

    code, out, _ = run_cli(capsys, "explain", "--input", "28x28x1", "--set", "family=residual",
                           "--set", "num_blocks=3")
    assert code == 0
    assert out.splitlines()[0].startswith("input 28x28x1, 10 classes: ")
    assert " family=residual " in out.splitlines()[0]
    total = int(out.strip().splitlines()[-1].split(":")[1].replace(",", ""))
    model = space.build_model(kt.HyperParameters(), (28, 28, 1), 10,
                              rules={"family": "residual", "num_blocks": 3})
    assert total == model.count_params()
    assert "b3_unit1_project" in out  # filters change between blocks: a projection shortcut


@pytest.mark.parametrize("args, message", [
    (["--set", "famly=plain"], "Error: unknown hyperparameter(s) famly: choose from flip,"),
    (["--set", "family"], "Error: Invalid value for '--set': 'family' is not NAME=VALUE"),
    (["--set", "pooling=bilinear"],
     "Error: pooling='bilinear' is not allowed: choose one of max, avg, strided, none"),
    (["--input", "8x8", "--set", "padding=valid", "--set", "kernel_size=7"],
     "Error: Invalid value for '--input': '8x8' is not HxWxC"),
    (["--input", "8x8x1", "--set", "padding=valid", "--set", "kernel_size=7"],
     # 8 -> conv 7 valid -> 2 -> pool -> 1 -> conv 7: nothing left
     "Error: b2_conv1: a 7x7 window, stride 1, padding 'valid' on a 1x1 input gives -5x-5"),
])
def test_explain_errors(capsys, args, message):
    code, _, err = run_cli(capsys, "explain", *args)
    assert code == 2
    assert err.strip().startswith(message), err


@pytest.mark.slow
def test_the_ui_command_serves_the_store_with_its_stderr_redirected(tmp_path):
    """`autocnn ui` becomes MLflow's server (os.execv) from the console command, whose stderr
    passes through a filter thread: the server must outlive that thread, as it did not when a
    write to the orphaned pipe killed it."""
    import socket
    import time
    import urllib.request

    from autocnn.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    Tracker(uri, "ui")  # a store to serve
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the filter on
    server = subprocess.Popen([sys.executable, "-m", "autocnn", "ui", "--tracking-uri", uri,
                               "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        status, deadline = None, time.time() + 90
        while status is None and time.time() < deadline and server.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status
            except OSError:
                time.sleep(1)
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        assert status == 200
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
