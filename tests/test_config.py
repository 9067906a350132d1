import pytest

from autocnn.config import SearchConfig
from autocnn.errors import ConfigError


@pytest.mark.parametrize("field, value, message", [
    ("tuner", "grid", r"unknown tuner 'grid': choose one of random, bayesian, hyperband"),
    ("max_trials", 0, r"max_trials must be at least 1, got 0"),
    ("epochs", -1, r"epochs must be at least 1"),
    ("test_fraction", 1.0, r"test_fraction must be between 0 and 1"),
    ("champion_metric", "loss", r"unknown champion_metric 'loss'"),
])
def test_bad_values_are_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**{field: value})


def test_names_default_to_the_data_set():
    config = SearchConfig(dataset="digits")
    assert config.project_name == "autocnn-digits"
    assert config.registered_name == "autocnn-digits"
    assert SearchConfig(project="p", model_name="m").registered_name == "m"
