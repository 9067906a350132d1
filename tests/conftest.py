import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import re  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from autocnn.data.sources import IDX_FILES  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import postgres as postgres_servers  # noqa: E402  (benchmarks/postgres.py, shared with the load benchmark)


class Progress(logging.Handler):
    """autocnn's progress while attached, line by line as the console shows it; each line is
    also passed to ``on_line``."""

    def __init__(self, on_line=None):
        super().__init__()
        self.lines, self.on_line = [], on_line
        self._logger = logging.getLogger("autocnn")

    def emit(self, record):
        line = ("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage()
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def __enter__(self):
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self.lines

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


@pytest.fixture
def progress():
    """The lines autocnn reports during the test."""
    with Progress() as lines:
        yield lines


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty temporary folder, so the default mlruns/ lands there, not in the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster: (its URI, its password); skipped where there is none."""
    try:
        with postgres_servers.cluster() as found:
            yield found
    except postgres_servers.Unavailable as why:
        pytest.skip(f"{why} (.ci/run installs it)")


@pytest.fixture
def seed():
    import keras

    keras.utils.set_random_seed(1234)
    return 1234


def write_images(folder, count, size=(10, 12), mode="RGB", ext="png", seed=0):
    """``count`` random images of ``size`` (height, width) into ``folder``; returns the paths."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB").convert(mode)
        path = folder / f"{i:03d}.{ext}"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path):
    """Three classes of 6 small images in mixed formats and colour modes."""
    root = tmp_path / "pets"
    write_images(root / "cat", 6, mode="RGB", ext="png", seed=1)
    write_images(root / "dog", 6, mode="L", ext="jpg", seed=2)
    write_images(root / "eel", 4, mode="RGBA", ext="png", seed=3)
    write_images(root / "eel", 1, mode="P", ext="gif", seed=4)
    (root / "eel" / "000.gif").rename(root / "eel" / "100.gif")
    write_images(root / "eel", 1, mode="RGB", ext="bmp", seed=5)
    (root / "eel" / "000.bmp").rename(root / "eel" / "101.bmp")
    return root


def write_idx(path: Path, array: np.ndarray, gz: bool = True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(">u1").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def write_mnist_folder(folder: Path, n_train=40, n_test=20, classes=4, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    for (images, labels), n in zip(IDX_FILES.values(), (n_train, n_test)):
        write_idx(folder / images, rng.integers(0, 256, (n, 6, 5)), gz)
        write_idx(folder / labels, np.arange(n) % classes, gz)
    return folder


def is_trial_line(line: str) -> bool:
    """A trial's closing line ("trial   3/10 completed ..."), not one of its epoch lines."""
    return re.match(r"trial +\d+(/\d+)? [a-z]", line) is not None


def run_cli(args, capsys):
    """The real CLI entry point on ``args``: (exit status, stdout, stderr)."""
    from autocnn.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def search_digits(folder: Path, project: str, trials: int, epochs: int) -> str:
    """`autocnn search` on digits (seed 7) into an MLflow store in ``folder``; its URI."""
    from autocnn.cli.main import main

    uri = f"sqlite:///{folder}/mlflow.db"
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "digits", "--max-trials", str(trials), "--epochs",
              str(epochs), "--seed", "7", "--tracking-uri", uri, "--tuner-dir",
              str(folder / "tuner"), "--project", project])
    assert exit_info.value.code == 0
    return uri


def backbone_model(name="mobilenet_v3_small", input_shape=(8, 8, 1), classes=3, weights=None,
                   **values):
    """A backbone model of the space (random weights unless given), its hyperparameters and
    rules."""
    import keras_tuner as kt

    from autocnn.space import hypermodel as space

    hp = kt.HyperParameters()
    rules = {"family": "backbone", "backbone": name, **values}
    model = space.build_model(hp, input_shape, classes, rules=rules, weights=weights)
    return model, hp, rules


def pytest_collection_finish(session):
    """Move what the libraries' imports made into the collector's permanent generation, so that
    the collection after each long test (in _release_models) walks only what tests made: a
    second or more each time otherwise, a few minutes over the suite."""
    import gc

    import keras  # noqa: F401
    import keras_tuner  # noqa: F401
    import mlflow  # noqa: F401
    import tensorflow  # noqa: F401

    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _release_models():
    """What a test's models and graphs leave in TensorFlow's and Keras's global state goes with
    the test, so the suite's one process stays small however many models it trains in-process.

    TensorFlow keeps each traced train step's custom gradient, and with it the whole graph, in a
    registry it never empties (see callbacks.release_traced_gradients): 40-400 MiB a test of
    the presets before they were released. Keras's session is cleared only after a test of a
    few seconds: a collection costs a second or two, a short test leaves little."""
    import sys
    import time

    before = _traced_gradients()
    started = time.monotonic()
    yield
    if "tensorflow" in sys.modules:
        from autocnn.search.callbacks import release_traced_gradients

        release_traced_gradients(_traced_gradients() - before)
    if "keras" in sys.modules and time.monotonic() - started > 3:
        import gc

        sys.modules["keras"].backend.clear_session()
        gc.collect()


def _traced_gradients() -> set:
    """The custom gradients TensorFlow holds (none before it is imported)."""
    import sys

    if "tensorflow" not in sys.modules:
        return set()
    from autocnn.search.callbacks import traced_gradients

    return traced_gradients()


def pytest_terminal_summary(terminalreporter):
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    terminalreporter.write_line(f"peak resident memory of the test process: {peak:,.0f} MiB")


# What makes a test slow: it runs a real search (in-process or as a command), a pipeline, a
# benchmark, trains a model or exports one. `make test-fast` (-m "not slow") leaves these out.
SLOW_CALLS = ("run_search(", "search_digits(", '"search"', '"run"', "run(search(",
              "run_benchmark(", "sys.executable", "weights[", ".fit(", "export.export(")


def _runs_something_slow(function) -> bool:
    import inspect

    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return any(call in source for call in SLOW_CALLS)


def pytest_collection_modifyitems(items):
    """Mark slow the tests that, or whose fixtures, run something slow (see SLOW_CALLS)."""
    for item in items:
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs
                    if d.baseid]  # this suite's own fixtures, not pytest's
        if any(_runs_something_slow(f) for f in [item.function, *fixtures]) or \
                "trains" in item.name:
            item.add_marker(pytest.mark.slow)


def render_in_chromium(path: Path) -> dict:
    """Open the HTML file ``path`` in headless Chromium (Debian's chromium and chromium-driver,
    through selenium): its title, each image's alt text and decoded width, and the console's
    errors. The test is skipped where no Chromium is installed."""
    import shutil

    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(path.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        return {"title": driver.title, "images": images, "errors": errors}
    finally:
        driver.quit()
