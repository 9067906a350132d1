"""The `autocnn` command line: one click command per stage.

Heavy libraries (TensorFlow, MLflow) are imported inside the commands, so `--help` is instant.
Any `AutoCNNError` or usage error becomes one line on stderr and exit status 2.
"""

import os
import sys

import click

from autocnn import __version__
from autocnn.config import (CHAMPION_METRICS, DEFAULT_TRACKING_URI, DEFAULT_TUNER_DIR,
                            TUNERS, SearchConfig)
from autocnn.errors import AutoCNNError

TRACKING_HELP = ("MLflow tracking URI: a SQLite file (the default, beside an artifacts/ folder) "
                 "or an MLflow server's http(s) address. Also read from MLFLOW_TRACKING_URI.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="autocnn")
def cli():
    """autocnn searches for a good convolutional image classifier.

    keras-tuner runs the search, the best model is retrained and evaluated on a held-out test
    split, and everything is tracked in MLflow (`autocnn ui` to look at it).
    """


@cli.command()
@click.option("--dataset", default="digits", show_default=True,
              help="Data set to search on: digits (scikit-learn's 8x8 digits, embedded).")
@click.option("--tuner", type=click.Choice(TUNERS), default="random", show_default=True,
              help="keras-tuner algorithm.")
@click.option("--max-trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Most trials to run; architectures rejected by sizing count as trials.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most epochs per trial (Hyperband's max_epochs).")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop a trial after this many epochs without a better val_accuracy.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True,
              help="Fixes the split, the tuner's choices and the weight initialisation.")
@click.option("--max-failed-trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Give up after this many failed trials in a row.")
@click.option("--project", default="", help="Tuner project and MLflow experiment name "
              "[default: autocnn-DATASET]. Rerunning the same project resumes it.")
@click.option("--tuner-dir", default=DEFAULT_TUNER_DIR, show_default=True,
              type=click.Path(file_okay=False), help="Where keras-tuner keeps its trials.")
@click.option("--overwrite", is_flag=True, help="Start the project afresh instead of resuming.")
@click.option("--tracking-uri", default=DEFAULT_TRACKING_URI, show_default=True,
              envvar="MLFLOW_TRACKING_URI", help=TRACKING_HELP)
@click.option("--model-name", default="", help="Registered model name [default: the project].")
@click.option("--champion-metric", type=click.Choice(CHAMPION_METRICS), default="f1_macro",
              show_default=True, help="Test metric that decides whether a new model becomes "
              "the 'champion' alias.")
@click.option("--no-register", is_flag=True, help="Evaluate the best model but do not "
              "register it in the MLflow model registry.")
@click.option("-v", "--verbose", count=True, help="Show Keras's per-epoch progress.")
def search(no_register, **options):
    """Search for a CNN, retrain the best, evaluate it on the test split, register it.

    \b
    Example:
      autocnn search --dataset digits --tuner bayesian --max-trials 20 --epochs 30
    """
    config = SearchConfig(register=not no_register, **options)
    from autocnn import data

    if config.dataset not in data.SOURCES:
        data.load(config.dataset)  # raises the error that lists the valid names
    _quiet_tensorflow()
    from autocnn.search import run_search
    from autocnn.report import format_summary

    result = run_search(config, echo=click.echo)
    click.echo(format_summary(result, config))


@cli.command()
@click.option("--tracking-uri", default=DEFAULT_TRACKING_URI, show_default=True,
              envvar="MLFLOW_TRACKING_URI", help=TRACKING_HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; the default keeps the UI to this machine.")
def ui(tracking_uri, port, host):
    """Open the MLflow UI over the project's store (a parent run per search, a child per trial)."""
    from autocnn.tracking import resolve_tracking_uri

    uri, artifacts = resolve_tracking_uri(tracking_uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port)]
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    click.echo(f"MLflow UI on http://{host}:{port} over {uri} (Ctrl-C to stop)")
    os.execv(sys.executable, command)


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ start-up notices


def main(argv=None):
    """Console entry point: one-line errors with exit status 2, never a traceback for bad input."""
    try:
        code = cli.main(args=argv, prog_name="autocnn", standalone_mode=False)
    except click.ClickException as err:
        hint = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        click.echo(f"Error: {err.format_message()}{hint}", err=True)
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except AutoCNNError as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
