"""Predictions for the user's own image files: the top classes of each, as a table, CSV or JSON."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocnn.data.splits import Split
from autocnn.errors import DataError
from autocnn.tables import format_table
from autocnn.trained.reference import LoadedModel, predict_probabilities


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most likely first


def image_files(inputs) -> list[str]:
    """The image files among ``inputs``: files as given, folders searched recursively."""
    from autocnn.data.folders import IMAGE_EXTENSIONS

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


def predict_images(loaded: LoadedModel, inputs, top_k: int = 3,
                   tta: bool = True) -> list[Prediction]:
    """The ``top_k`` classes of each image, read and resized as in training; with ``tta``,
    averaged over the image and the flips the model was trained with."""
    from autocnn.data.folders import check_images
    from autocnn.data.inputs import batches

    files = image_files(inputs)
    _, bad = check_images(files)
    if bad:
        path, reason = next(iter(bad.items()))
        raise DataError(f"{path}: cannot read this image ({reason})")
    split = Split(np.zeros(len(files), "int64"), paths=tuple(files))
    probabilities = predict_probabilities(loaded.model, batches(split, loaded.input_shape, 64),
                                          tta=tta)
    k = max(1, min(top_k, probabilities.shape[-1]))
    predictions = []
    for path, row in zip(files, probabilities):
        best = np.argsort(row)[::-1][:k]
        predictions.append(Prediction(path, [(loaded.class_names[i], float(row[i]))
                                             for i in best]))
    return predictions


def explain_images(loaded: LoadedModel, predictions: list[Prediction], folder) -> list[Path]:
    """For each predicted image, its heat map for the top class drawn over it (see gradcam.py),
    as ``folder``/NAME.png; the files written."""
    from autocnn.data.inputs import batches
    from autocnn.trained import gradcam

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = Split(np.zeros(len(predictions), "int64"), paths=tuple(p.path for p in predictions))
    images = np.concatenate([np.asarray(x) for x, _ in batches(split, loaded.input_shape, 64)])
    classes = [loaded.class_names.index(p.top[0][0]) for p in predictions]
    written = []
    for prediction, image, heatmap in zip(predictions, images,
                                          gradcam.heatmaps(loaded.model, images, classes)):
        name, probability = prediction.top[0]
        path = _unique(folder / f"{Path(prediction.path).stem}.png", written)
        gradcam.save_figure(image, heatmap, f"{Path(prediction.path).name}: predicted "
                            f"{name} (probability {probability:.2f})", path)
        written.append(path)
    return written


def _unique(path: Path, taken: list[Path]) -> Path:
    """``path``, or NAME-2.png, NAME-3.png... when an image of the same name came first."""
    count, candidate = 1, path
    while candidate in taken:
        count += 1
        candidate = path.with_name(f"{path.stem}-{count}{path.suffix}")
    return candidate


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
    rows = [(p.path, ", ".join(f"{name} {prob:.3f}" for name, prob in p.top))
            for p in predictions]
    return format_table(("image", "predictions"), rows)
