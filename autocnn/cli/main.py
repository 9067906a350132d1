"""The `autocnn` command line: one click command per stage.

Heavy libraries (TensorFlow, MLflow) are imported inside the commands, so `--help` is instant.
Any `AutoCNNError` or usage error becomes one line on stderr and exit status 2.
"""

import sys

import click

from autocnn import __version__
from autocnn.cli import inspect_commands, model_commands, search_commands, server_commands
from autocnn.cli.options import (
    parse_sets,
    quiet_tensorflow,
)
from autocnn.console import show_progress
from autocnn.errors import AutoCNNError, Interrupted


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="autocnn")
def cli():
    """autocnn searches for a good convolutional image classifier.

    keras-tuner runs the search, the best model is retrained and evaluated on a held-out test
    split, and everything is tracked in MLflow (`autocnn ui` to look at it).
    """


@cli.command(name="run")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, callback=parse_sets,
              help="Override the file: data.path=..., settings.seed=..., or STAGE.OPTION=... "
                   "(search.max_trials=3). Repeatable.")
@click.option("--rerun", is_flag=True, help="Run every stage again, even those finished before.")
def run_command(pipeline, sets, rerun):
    """Run a pipeline file: its stages (search, evaluate, predict, export) in order, each
    stage's model passed to the next; finished stages are skipped when it runs again.

    \b
    Examples:
      autocnn run pipelines/digits.yaml
      autocnn run pipelines/transfer_folder.yaml --set data.path=~/pictures/pets/
    """
    quiet_tensorflow()
    from autocnn.cli import pipelines

    spec = pipelines.load(pipeline, sets)
    commands = {"search": search_commands.search,
                **{c.name: c for c in model_commands.COMMANDS}}
    results = pipelines.run(spec, commands, rerun=rerun)
    click.echo(f"pipeline {spec['name']}: {len(results)} stages done")


for _command in (search_commands.search, search_commands.worker, *model_commands.COMMANDS,
                 *inspect_commands.COMMANDS, *server_commands.COMMANDS):
    cli.add_command(_command)


def main(argv=None):
    """Console entry point: progress on stdout, one-line errors with exit status 2, never a
    traceback for bad input."""
    show_progress()
    try:
        code = cli.main(args=argv, prog_name="autocnn", standalone_mode=False)
    except click.ClickException as err:
        hint = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        click.echo(f"Error: {err.format_message()}{hint}", err=True)
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except Interrupted as err:
        click.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except AutoCNNError as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def console():
    """The ``autocnn`` command: main() with TensorFlow's native start-up notices kept off the
    console (see native_logs)."""
    from autocnn.cli import native_logs

    if native_logs.wanted(sys.argv[1:]):
        native_logs.filter_stderr()
    main()


if __name__ == "__main__":
    console()
