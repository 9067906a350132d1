"""A trained model evaluated on a data set's split: accuracy, precision, recall and F1 overall
and per class, the confusion matrix, logged to its own MLflow run when asked.

It takes a `reference.LoadedModel`; `autocnn evaluate` and pipelines call the same function.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from autocnn import data
from autocnn import metrics as evaluate
from autocnn.config import DataConfig
from autocnn.errors import ConfigError
from autocnn.trained.reference import LoadedModel, predict_probabilities
from autocnn.trained.tta import flips

SPLITS = ("test", "val", "train", "all")


def data_config_for(loaded: LoadedModel, config: DataConfig) -> DataConfig:
    """``config`` with the image size and channels the model takes, unless the user set them."""
    height, width, channels = loaded.input_shape
    return dataclasses.replace(config, image_size=config.image_size or (height, width),
                               channels=config.channels or channels)


@dataclass
class Evaluation:
    metrics: dict  # evaluate.compute_metrics
    split: str
    count: int
    run_id: str | None  # the MLflow run it was logged to


def evaluate_model(loaded: LoadedModel, dataset: data.Dataset, split: str = "test",
                   tracker=None, tta: bool = True) -> Evaluation:
    """The full metric set of ``loaded`` on ``dataset``'s ``split``; logged when ``tracker``.
    ``tta``: each image's prediction averaged with those of the flips the model was trained
    with (see `tta.py`)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    part = _split(dataset, split)
    labels, names = _labels_for(loaded, dataset, part.labels)
    probabilities = predict_probabilities(loaded.model, dataset.batches(part, 256), tta=tta)
    metrics = evaluate.compute_metrics(labels, probabilities.argmax(axis=-1), names)
    run_id = None
    if tracker is not None:
        run_id = tracker.start_run(
            f"evaluate-{split}", params={"model": loaded.reference, "dataset": dataset.name,
                                         "split": split, "images": len(part),
                                         "test_time_flips": flips(loaded.model) if tta
                                         else "none"},
            tags={"autocnn.stage": "evaluate", "autocnn.dataset": dataset.name,
                  **({"autocnn.model_run": loaded.run_id} if loaded.run_id else {})})
        tracker.log_inputs(run_id, data.absolute_source(dataset.name), dataset.inputs(
            ("train", "val", "test") if split == "all" else (split,)))
        tracker.log_metrics(run_id, evaluate.flatten_metrics(metrics, prefix=f"{split}_"))
        title = f"Per class ({dataset.name}, {split} split)"
        tracker.log_figure(evaluate.plot_per_class(metrics, title),
                           "plots/per_class.png")
        tracker.log_text(evaluate.format_class_report(metrics), "evaluation/per_class.txt")
        tracker.log_dict(metrics, "evaluation/metrics.json")
        tracker.end_run()
        import matplotlib.pyplot as plt

        plt.close("all")
    return Evaluation(metrics, split, len(part), run_id)


def _split(dataset, split):
    if split == "all":
        return dataset.train.concat(dataset.val).concat(dataset.test)
    return getattr(dataset, split)


def _labels_for(loaded: LoadedModel, dataset: data.Dataset, labels: np.ndarray):
    """``labels`` as indices of the model's classes, and the names to report them by: matched
    by name when both sides have names, by position when the model's are only numbered."""
    model_names, data_names = list(loaded.class_names), list(dataset.class_names)
    if len(model_names) != len(data_names):
        raise ConfigError(f"the model predicts {len(model_names)} classes and {dataset.name} "
                          f"has {len(data_names)}; evaluate it on data with the same classes")
    if model_names == data_names or model_names == [str(i) for i in range(len(model_names))]:
        return labels, data_names
    if set(model_names) != set(data_names):
        missing = sorted(set(data_names) - set(model_names))
        raise ConfigError(f"{dataset.name} has classes the model does not know "
                          f"({', '.join(missing[:5])}); the model knows "
                          f"{', '.join(model_names[:10])}")
    order = np.array([model_names.index(name) for name in data_names])
    return order[labels], model_names
