"""The commands for the stages after a search: evaluate, predict, export, compare, report."""

from pathlib import Path

import click
import numpy as np

from autocnn.cli.options import (
    DATASET_HELP,
    data_options,
    make_data_config,
    quiet_tensorflow,
    tracking_option,
)
from autocnn.config import DataConfig, slug
from autocnn.tables import format_table
from autocnn.trained.export import FORMATS

TTA_HELP = ("Average each image's prediction with those of its flips, the flips the model was "
            "trained with (test-time augmentation; a model trained without flips is "
            "unaffected, and an export serves the network alone).")


@click.command(name="evaluate")
@click.argument("model")
@click.option("--dataset", default=None, help=DATASET_HELP + " [default: the data set the "
              "model was trained on, as recorded with it]")
@data_options
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test",
              show_default=True, help="Which split; with the search's seed, 'test' is the "
              "split the search held out.")
@click.option("--seed", type=int, default=None, help="Fixes the split [default: the seed "
              "recorded with the model, else 42].")
@tracking_option()
@click.option("--experiment", default="", help="MLflow experiment of the evaluation run "
              "[default: autocnn-DATASET].")
@click.option("--no-log", is_flag=True, help="Print the metrics without logging an MLflow run.")
@click.option("--tta/--no-tta", default=True, show_default=True, help=TTA_HELP)
def evaluate_command(model, split, tracking_uri, experiment, no_log, tta, **options):
    """Evaluate a trained model on a data set: accuracy, precision, recall, F1 (macro, weighted,
    per class), confusion matrix; logged to MLflow as an 'evaluate' run.

    \b
    MODEL is models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID/model or a .keras file.
    Example:
      autocnn evaluate models:/autocnn-digits@champion --dataset digits
    """
    quiet_tensorflow()
    from autocnn import data as data_module
    from autocnn import metrics as evaluate
    from autocnn.cli import summaries
    from autocnn.trained import evaluation as stages
    from autocnn.trained import reference as models

    loaded = models.load(model, tracking_uri)
    options.update(dataset=_recorded_dataset(loaded, options["dataset"], "evaluate it on"),
                   seed=_seed(loaded, options["seed"]))
    config = stages.data_config_for(loaded, make_data_config(**options))
    dataset = data_module.load(config)
    tracker = None
    if not no_log:
        from autocnn.errors import TrackingError
        from autocnn.tracking import Tracker

        name = experiment or f"autocnn-{slug(config.dataset)}"
        try:
            tracker = Tracker(tracking_uri, name, create_store=False)
        except TrackingError as err:
            raise TrackingError(f"{err}; or --no-log to print the metrics alone") from None
    result = stages.evaluate_model(loaded, dataset, split, tracker, tta)
    m = result.metrics
    click.echo(f"{model} on {dataset.name} ({split} split, {result.count} images)")
    click.echo("\n".join(summaries.format_rows(summaries.metric_rows(m))) + "\n")
    click.echo(evaluate.format_class_report(m))
    if result.run_id:
        click.echo(f"\nlogged to MLflow run {result.run_id} (per-class figure and table, "
                   "confusion matrix, metrics); `autocnn ui` to look")
    return {"evaluation_run_id": result.run_id, "accuracy": m["accuracy"]}


@click.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many classes to show per image.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.option("--explain", "explain_dir", type=click.Path(file_okay=False), default=None,
              help="Also draw where the model looked for its top class (a class activation "
                   "map over each image) into this folder, one NAME.png per image.")
@click.option("--tta/--no-tta", default=True, show_default=True, help=TTA_HELP)
@tracking_option()
def predict(model, images, top_k, fmt, explain_dir, tta, tracking_uri):
    """Class names and probabilities for image files, or every image in folders.

    Images are converted and resized to the model's input as in training.

    \b
    MODEL is models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID/model or a .keras file.
    Examples:
      autocnn predict models:/autocnn-pets@champion photo.jpg ~/more-photos/
      autocnn predict model.keras scan.png --top-k 1 --format json
      autocnn predict models:/autocnn-digits@champion digits/ --explain explained/
    """
    quiet_tensorflow()
    from autocnn.trained import prediction
    from autocnn.trained import reference as models

    prediction.image_files(images)  # a missing file fails before the model loads
    loaded = models.load(model, tracking_uri)
    predictions = prediction.predict_images(loaded, images, top_k, tta)
    click.echo(prediction.format_predictions(predictions, fmt))
    if explain_dir:
        written = prediction.explain_images(loaded, predictions, explain_dir)
        # On stderr: a --format json or csv output stays one document on stdout.
        click.echo(f"where the model looked: {len(written)} images in {explain_dir}", err=True)


@click.command(name="export")
@click.argument("model")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              required=True, help="keras (.keras file), savedmodel (TensorFlow Serving), tflite "
              "(LiteRT, for phones and edge devices) or onnx (needs the onnx extra: pip install "
              "'autocnn[onnx]').")
@click.option("--output", required=True, type=click.Path(), help="File or folder to write "
              "(class names go beside it, in NAME.classes.json).")
@click.option("--dataset", default=None, help="Images to check the export on [default: the "
              "data set the model was trained on, when recorded].")
@click.option("--check-images", type=click.IntRange(min=1), default=256, show_default=True,
              help="How many test images the check runs on.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest allowed difference of any class probability.")
@tracking_option()
def export_command(model, fmt, output, dataset, check_images, tolerance, tracking_uri):
    """Export a model for serving, then check that the export predicts what the model does.

    The exported model and the Keras model both run on test images of the data set; the command
    reports the largest difference in any class probability and how often the top class
    agrees, and fails (exit 1) when the difference exceeds --tolerance.

    \b
    MODEL is models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID/model or a .keras file.
    Examples:
      autocnn export models:/autocnn-digits@champion --format tflite --output digits.tflite
      autocnn export model.keras --format savedmodel --output serving/digits --dataset digits
    """
    quiet_tensorflow()
    from autocnn import data as data_module
    from autocnn.trained import evaluation as stages
    from autocnn.trained import export
    from autocnn.trained import reference as models

    loaded = models.load(model, tracking_uri)
    dataset = _recorded_dataset(loaded, dataset, "check the export on")
    config = stages.data_config_for(loaded, DataConfig(dataset=dataset, seed=_seed(loaded)))
    loaded_data = data_module.load(config)
    test = loaded_data.test.take(range(min(check_images, len(loaded_data.test))))
    images = np.concatenate([x.numpy() for x, _ in loaded_data.batches(test, 256)])
    path = export.export(loaded, fmt, output)
    result = export.check(loaded, fmt, path, images, tolerance)
    click.echo(f"exported {model} as {fmt} to {path}")
    click.echo(f"checked on {result.images} {dataset} test images: largest probability "
               f"difference {result.max_difference:.2e} (tolerance {tolerance:.0e}), top class "
               f"agrees on {result.agreement:.1%}")
    if not result.passed:
        raise click.ClickException("the export does not predict what the model does")
    return {"path": str(path)}


@click.command()
@click.option("--experiment", default=None, help="The searches' experiment (with --models: the "
              "registered model's name) [default: all].")
@click.option("--models", "kind", flag_value="models", help="Compare registered model versions "
              "instead of trials.")
@click.option("--trials", "kind", flag_value="trials", default=True, help="Compare trials "
              "(the default).")
@click.option("--metric", default=None, help="Sort by this metric [default: best_val_accuracy "
              "for trials, test_f1_macro for models].")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@tracking_option()
def compare(experiment, kind, metric, limit, tracking_uri):
    """A leaderboard from MLflow: trials (status, score, epochs, time, architecture) or
    registered model versions (aliases, test metrics, parameters), best first.

    \b
    Examples:
      autocnn compare --experiment autocnn-digits
      autocnn compare --models --metric test_accuracy
    """
    from autocnn.tracking import leaderboard

    columns, rows = leaderboard(tracking_uri, experiment, kind, metric)
    if not rows:
        click.echo(f"no {kind} yet in {tracking_uri}")
        return
    cells = [[_cell(row[c]) for c in columns] for row in rows[:limit]]
    click.echo(format_table(columns, cells))
    if len(rows) > limit:
        click.echo(f"... {len(rows) - limit} more (--limit)")


@click.command(name="report")
@click.argument("search")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML page [default: report-RUN.html here, RUN the "
              "run id's first 8 characters].")
@click.option("--card", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the model card (markdown) to this file.")
@tracking_option()
def report_command(search, output, card, tracking_uri):
    """Build the HTML report of a finished search from what it logged to MLflow: the model
    card, per-class scores, where the model looked, its mistakes, feature maps and filters,
    the search's progress, costs and hyperparameter importance, and the leaderboard. One
    self-contained file (images embedded), to open in any browser or send on.

    \b
    SEARCH is the search's MLflow run id (a trial's run id finds its search),
    models:/NAME/VERSION or models:/NAME@ALIAS.
    Example:
      autocnn report models:/autocnn-digits@champion --output digits.html
    """
    from autocnn import reports

    built = reports.build(tracking_uri, search)
    output = output or Path(f"report-{built.record.run_id[:8]}.html")
    output.write_text(built.html)
    click.echo(f"wrote the report of search run {built.record.run_id} "
               f"({built.record.params.get('dataset', '?')}) to {output}")
    if card:
        card.write_text(built.card)
        click.echo(f"wrote its model card to {card}")
    return {"path": str(output)}


def _recorded_dataset(loaded, given: str | None, purpose: str) -> str:
    """The data set the user gave, else the one recorded with the model."""
    if given or loaded.dataset:
        return given or loaded.dataset
    raise click.UsageError(f"{loaded.reference} does not record its data set: pass --dataset "
                           f"to {purpose}")


def _seed(loaded, given: int | None = None) -> int:
    if given is not None:
        return given
    return loaded.seed if loaded.seed is not None else DataConfig.seed


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 1000 else f"{value:.4f}" if value < 1 else f"{value:.1f}"
    return str(value)


COMMANDS = (evaluate_command, predict, export_command, compare, report_command)
