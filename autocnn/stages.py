"""The stages after a search, on any trained model: evaluate it on a data set, predict images.

Each takes a `models.LoadedModel`; the command line (`autocnn evaluate`, `autocnn predict`) and
pipelines call the same functions.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocnn import data, evaluate
from autocnn.config import DataConfig
from autocnn.errors import ConfigError, DataError
from autocnn.models import LoadedModel, predict_probabilities

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
                   tracker=None) -> Evaluation:
    """The full metric set of ``loaded`` on ``dataset``'s ``split``; logged when ``tracker``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    part = _split(dataset, split)
    labels, names = _labels_for(loaded, dataset, part.labels)
    probabilities = predict_probabilities(loaded.model, dataset.pipeline(part, 256))
    metrics = evaluate.compute_metrics(labels, probabilities.argmax(axis=-1), names)
    run_id = None
    if tracker is not None:
        run_id = tracker.start_run(
            f"evaluate-{split}", params={"model": loaded.reference, "dataset": dataset.name,
                                         "split": split, "images": len(part)},
            tags={"autocnn.stage": "evaluate", "autocnn.dataset": dataset.name,
                  **({"autocnn.model_run": loaded.run_id} if loaded.run_id else {})})
        tracker.log_metrics(run_id, evaluate.flatten_metrics(metrics, prefix=f"{split}_"))
        title = f"Confusion matrix ({dataset.name}, {split} split)"
        tracker.log_figure(evaluate.plot_confusion_matrix(metrics, title),
                           "plots/confusion_matrix.png")
        tracker.log_text(evaluate.format_per_class(metrics), "evaluation/per_class.txt")
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


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most likely first


def image_files(inputs) -> list[str]:
    """The image files among ``inputs``: files as given, folders searched recursively."""
    from autocnn.folders import IMAGE_EXTENSIONS

    files = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{item}: no image files in this folder")
            files += found
        elif path.is_file():
            files.append(str(path))
        else:
            raise DataError(f"{item}: no such file or folder")
    return files


def predict_images(loaded: LoadedModel, inputs, top_k: int = 3) -> list[Prediction]:
    """The ``top_k`` classes of each image, read and resized as in training."""
    from autocnn import inputs as pipelines
    from autocnn.folders import check_images

    files = image_files(inputs)
    _, bad = check_images(files)
    if bad:
        path, reason = next(iter(bad.items()))
        raise DataError(f"{path}: cannot read this image ({reason})")
    split = data.Split(np.zeros(len(files), "int64"), paths=tuple(files))
    batches = pipelines.batches(split, loaded.input_shape, 64)
    probabilities = predict_probabilities(loaded.model, batches)
    k = max(1, min(top_k, probabilities.shape[-1]))
    predictions = []
    for path, row in zip(files, probabilities):
        best = np.argsort(row)[::-1][:k]
        predictions.append(Prediction(path, [(loaded.class_names[i], float(row[i]))
                                             for i in best]))
    return predictions


def format_predictions(predictions: list[Prediction], fmt: str = "table") -> str:
    """``table`` for people, ``json`` or ``csv`` (one row per image and rank) for programs."""
    if fmt == "json":
        import json

        return json.dumps([{"path": p.path, "predictions": [
            {"class": name, "probability": round(prob, 6)} for name, prob in p.top]}
            for p in predictions], indent=1)
    if fmt == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "rank", "class", "probability"])
        for p in predictions:
            for rank, (name, prob) in enumerate(p.top, 1):
                writer.writerow([p.path, rank, name, f"{prob:.6f}"])
        return out.getvalue().rstrip("\n")
    width = max(len("image"), *(len(p.path) for p in predictions))
    lines = [f"{'image':<{width}}  predictions"]
    for p in predictions:
        lines.append(f"{p.path:<{width}}  " + ", ".join(f"{name} {prob:.3f}"
                                                         for name, prob in p.top))
    return "\n".join(lines)
