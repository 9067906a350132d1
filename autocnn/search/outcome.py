"""What a search leaves in MLflow besides its trials: the data, the final model's evaluation
on the test split, what it learned (explain/), its registration, its model card and report."""

import logging
import tempfile
from pathlib import Path

import numpy as np

from autocnn import data
from autocnn import metrics as evaluate
from autocnn.data import inspection
from autocnn.tracking import CHAMPION, Registration
from autocnn.trained.reference import predict_probabilities
from autocnn.trained.tta import flips

log = logging.getLogger(__name__)


def probabilities_on_test(model, dataset) -> np.ndarray:
    return predict_probabilities(model, dataset.batches(dataset.test, 256))


def log_explanations(tracker, model, dataset, probabilities) -> None:
    """Where the model looked for each class, and the mistakes it was surest of, on the test
    split, each stage's feature maps of an image per class, and its first layer's filters:
    explain/class_maps.png, mistakes.png, feature_maps.png and filters.png (the filters when
    they see the image's own channels)."""
    import matplotlib.pyplot as plt

    from autocnn.trained import explanations

    labels = dataset.test.labels
    picks = explanations.class_picks(probabilities, labels, dataset.num_classes)
    mistakes = explanations.confident_mistakes(probabilities, labels)
    shown = sorted({i for column in picks for i in column if i is not None} | set(mistakes))
    if not shown:
        return
    arrays = [np.asarray(x) for x, _ in dataset.batches(dataset.test.take(shown), 64)]
    images = dict(zip(shown, np.concatenate(arrays)))
    names = dataset.class_names
    tracker.log_figure(explanations.plot_class_maps(model, images, picks, probabilities, names),
                       "explain/class_maps.png")
    tracker.log_figure(explanations.plot_mistakes(images, mistakes, probabilities, labels, names),
                       "explain/mistakes.png")
    firsts = {k: images[c[0]] for k, c in enumerate(picks) if c[0] is not None}
    if firsts:
        tracker.log_figure(explanations.plot_feature_maps(model, firsts, names),
                           "explain/feature_maps.png")
    kernels = explanations.first_kernels(model)
    if kernels is not None and kernels.shape[-1] in (1, 3):
        tracker.log_figure(explanations.plot_filters(kernels), "explain/filters.png")
    plt.close("all")


def log_evaluation(tracker, metrics, history, trained_on: str):
    tracker.log_metrics(tracker.parent_run_id, evaluate.flatten_metrics(metrics))
    fig = evaluate.plot_per_class(metrics)
    tracker.log_figure(fig, "plots/per_class.png")
    if history:
        for epoch, values in enumerate(zip(*history.values())):
            tracker.log_metrics(tracker.parent_run_id,
                                {f"retrain_{k}": v for k, v in zip(history, values)}, step=epoch)
        title = f"The best configuration's final training, on {trained_on}"
        tracker.log_figure(evaluate.plot_history(history, title), "plots/retrain_curves.png")
    tracker.log_text(evaluate.format_class_report(metrics), "evaluation/per_class.txt")
    tracker.log_dict(metrics, "evaluation/metrics.json")
    import matplotlib.pyplot as plt

    plt.close("all")


def log_data(tracker, dataset):
    """The data as the parent run's dataset inputs, its fingerprint, summary, a grid of samples
    per class, and any skipped files."""
    tracker.log_inputs(tracker.parent_run_id, data.absolute_source(dataset.name),
                       dataset.inputs())
    tracker.log_dict(dataset.fingerprint, "data/fingerprint.json")
    tracker.log_text(inspection.describe(dataset), "data/summary.txt")
    tracker.log_figure(inspection.plot_samples(dataset), "data/samples.png")
    tracker.log_metrics(tracker.parent_run_id, {"skipped_files": len(dataset.skipped)})
    if dataset.skipped:
        tracker.log_text("\n".join(dataset.skipped) + "\n", "data/skipped_files.txt")


def register(config, dataset, tracker, model, metrics) -> Registration:
    """Register the final model, tagged with its data and headline test metrics; a model no
    better than always answering the most common class is never the champion."""
    example = next(iter(dataset.batches(dataset.test.take(range(5)), 5)))[0].numpy()
    chance = evaluate.chance_level(dataset.test.labels, metrics["accuracy"])
    if chance:
        log.warning(f"{chance}; it is registered without the {CHAMPION} alias")
    return tracker.register_model(
        model, example, config.registered_name, f"test_{config.champion_metric}",
        metrics[config.champion_metric], dataset.fingerprint,
        metadata={"class_names": list(dataset.class_names),
                  "dataset": data.absolute_source(dataset.name),
                  "input_shape": list(dataset.input_shape), "seed": config.data.seed},
        # The test metrics average the flips the model trained with (tta.py); a server of the
        # logged model that does not gives single-view figures, so the version says which.
        tags={**{f"test_{k}": f"{metrics[k]:.6f}" for k in ("accuracy", "f1_macro")},
              "autocnn.test_time_flips": flips(model)},
        uncrowned=chance)


def log_report(tracker, folder) -> Path:
    """The model card and the HTML report, built from what the run logged (see reports):
    report/model_card.md, report/report.html and the search's figures on the run, the card as
    the run's and each registered version's description, and the page as report.html in
    ``folder``."""
    from autocnn import reports

    report = reports.build(tracker.tracking_uri, tracker.parent_run_id)
    tracker.set_tag("mlflow.note.content", report.card)  # the run's Description in the UI
    for version in report.record.versions:
        tracker.describe_version(version["name"], version["version"], report.card)
    with tempfile.TemporaryDirectory(prefix="autocnn-report-") as staging:
        for name, png in report.figures.items():
            (Path(staging) / name).write_bytes(png)
        (Path(staging) / "model_card.md").write_text(report.card)
        (Path(staging) / "report.html").write_text(report.html)
        tracker.log_artifacts(staging, "report")
    path = Path(folder) / "report.html"
    path.write_text(report.html)
    return path
