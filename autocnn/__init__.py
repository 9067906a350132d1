"""autocnn: search for a good convolutional image classifier with keras-tuner, tracked in MLflow.

The public API is what this package exports (``autocnn.__all__``); each name loads its module
on first use, so ``import autocnn`` stays light. Its progress goes to the "autocnn" logger
(silent until configured); ``show_progress()`` prints it as the command line does.

    import autocnn

    autocnn.show_progress()
    result = autocnn.run_search(autocnn.SearchConfig(max_trials=5))
    model = autocnn.load_model(result.registration.model_uri)
"""

import importlib
import logging

from autocnn.console import show_progress
from autocnn.space.registration import register_with_keras

__version__ = "0.2.0"

logging.getLogger("autocnn").addHandler(logging.NullHandler())
register_with_keras()  # a saved backbone model then loads with any Keras or MLflow loader

# name -> (module, attribute)
_PUBLIC = {
    "DataConfig": ("autocnn.config", "DataConfig"),
    "SearchConfig": ("autocnn.config", "SearchConfig"),
    "parse_duration": ("autocnn.control", "parse_duration"),
    "format_duration": ("autocnn.control", "format_duration"),
    "cpu_model": ("autocnn.devices", "cpu_model"),
    "load_data": ("autocnn.data", "load"),
    "Dataset": ("autocnn.data", "Dataset"),
    "CNNHyperModel": ("autocnn.space.hypermodel", "CNNHyperModel"),
    "build_model": ("autocnn.space.hypermodel", "build_model"),
    "get_backbone": ("autocnn.space.backbones", "get"),
    "get_preset": ("autocnn.space.presets", "preset"),
    "FeatureCache": ("autocnn.space.transfer", "FeatureCache"),
    "fit_transfer": ("autocnn.space.transfer", "fit"),
    "run_search": ("autocnn.search.run", "run_search"),
    "SearchResult": ("autocnn.search.run", "SearchResult"),
    "StopAt": ("autocnn.search.callbacks", "StopAt"),
    "load_model": ("autocnn.trained.reference", "load"),
    "evaluate_model": ("autocnn.trained.evaluation", "evaluate_model"),
    "predict_images": ("autocnn.trained.prediction", "predict_images"),
    "predict_probabilities": ("autocnn.trained.reference", "predict_probabilities"),
    "compute_metrics": ("autocnn.metrics", "compute_metrics"),
    "AutoCNNError": ("autocnn.errors", "AutoCNNError"),
    "SearchError": ("autocnn.errors", "SearchError"),
}

__all__ = ["__version__", "show_progress", *_PUBLIC]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'autocnn' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # loaded once
    return value


def __dir__():
    return sorted(__all__)
