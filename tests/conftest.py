import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty temporary folder, so the default mlruns/ lands there, not in the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def seed():
    import keras

    keras.utils.set_random_seed(1234)
    return 1234
