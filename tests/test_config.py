import pytest

from autocnn.config import DataConfig, SearchConfig, slug
from autocnn.errors import ConfigError


@pytest.mark.parametrize("field, value, message", [
    ("tuner", "grid", r"unknown tuner 'grid': choose one of auto, random, bayesian, hyperband"),
    ("max_trials", 0, r"max_trials must be at least 1, got 0"),
    ("epochs", -1, r"epochs must be at least 1"),
    ("finalists", 0, r"finalists must be at least 1, got 0"),
    ("champion_metric", "loss", r"unknown champion_metric 'loss'"),
    ("final_data", "val", r"unknown final_data 'val': choose one of auto, train, train\+val"),
])
def test_bad_search_values_are_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**{field: value})


@pytest.mark.parametrize("field, value, message", [
    ("test_fraction", 1.0, r"test_fraction must be between 0 and 1"),
    ("channels", 2, r"channels must be 1 or 3, got 2"),
    ("cache", "disk", r"unknown cache 'disk': choose one of auto, memory, none"),
    ("image_size", (0, 4), r"image size must be positive"),
])
def test_bad_data_values_are_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**{field: value})


def test_names_default_to_the_data_set():
    assert SearchConfig().project_name == "autocnn-digits"
    assert SearchConfig().registered_name == "autocnn-digits"
    assert SearchConfig(data=DataConfig("/data/pets/")).project_name == "autocnn-pets"
    assert SearchConfig(data=DataConfig("tfds:cifar10")).project_name == "autocnn-cifar10"
    assert SearchConfig(project="p", model_name="m").registered_name == "m"


def test_settings_flatten_for_mlflow():
    settings = SearchConfig(data=DataConfig("digits", image_size=(8, 8))).to_dict()
    assert settings["dataset"] == "digits" and settings["image_size"] == (8, 8)
    assert settings["tuner"] == "auto" and "data" not in settings


@pytest.mark.parametrize("name, expected", [
    ("digits", "digits"), ("/data/pets/", "pets"), ("x/y.npz", "y"), ("tfds:cifar10", "cifar10"),
    ("idx:/srv/mnist", "mnist"), ("my data!", "my-data"),
])
def test_slug(name, expected):
    assert slug(name) == expected
