"""The `autocnn` command line: one click command per stage.

Heavy libraries (TensorFlow, MLflow) are imported inside the commands, so `--help` is instant.
Any `AutoCNNError` or usage error becomes one line on stderr and exit status 2.
"""

import os
import socket
import sys
from pathlib import Path

import click

from autocnn import __version__, stage_commands
from autocnn.config import (
    CHAMPION_METRICS,
    DEFAULT_MAX_TRIALS,
    DEFAULT_TRACKING_URI,
    DEFAULT_TUNER_DIR,
    DISTRIBUTED,
    PRECISIONS,
    STRATEGIES,
    TUNERS,
    DataConfig,
    SearchConfig,
)
from autocnn.control import Interrupted
from autocnn.errors import AutoCNNError
from autocnn.options import (
    DATA_KEYS,
    DATASET_HELP,
    TRACKING_HELP,
    WEIGHTS_HELP,
    Duration,
    InputShape,
    data_options,
    make_data_config,
    make_rules,
    parse_sets,
    quiet_tensorflow,
    space_options,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="autocnn")
def cli():
    """autocnn searches for a good convolutional image classifier.

    keras-tuner runs the search, the best model is retrained and evaluated on a held-out test
    split, and everything is tracked in MLflow (`autocnn ui` to look at it).
    """


@cli.command()
@click.option("--dataset", default="digits", show_default=True, help=DATASET_HELP)
@data_options
@click.option("--tuner", type=click.Choice(TUNERS), default="random", show_default=True,
              help="keras-tuner algorithm.")
@click.option("--max-trials", type=click.IntRange(min=1), default=None,
              help="Most trials to run; architectures rejected by sizing count as trials "
                   f"[default: {DEFAULT_MAX_TRIALS}; with --time-budget, no limit: the budget "
                   "decides].")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most epochs per trial (Hyperband's max_epochs).")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop a trial after this many epochs without a better val_accuracy.")
@click.option("--trial-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, metavar="FRACTION",
              help="Train each trial on this share of the training images (stratified, the "
                   "same for every trial): cheaper trials, more of them in a budget. The best "
                   "configurations then train on all of them (--finalists), validation "
                   "choosing the epoch and the winner.")
@click.option("--finalists", type=click.IntRange(1), default=2, show_default=True, metavar="N",
              help="With --trial-fraction: how many of the best configurations train on all the "
                   "training images at the end. A small share ranks configurations roughly (one "
                   "that needs more data to shine ranks low), so the best few get the full "
                   "data; the one with the best validation accuracy is the result. Each counts "
                   "against --time-budget; those it cannot afford are skipped.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Fixes the split, the tuner's choices and the weight initialisation.")
@click.option("--max-failed-trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Give up after this many failed trials in a row.")
@click.option("--max-params", type=click.IntRange(min=1), default=None,
              help="Reject architectures with more parameters, before building them "
                   "[default: no limit].")
@click.option("--time-budget", type=Duration(), default=None,
              help="Wall-clock limit for the search, retraining and evaluation: 90s, 45m, 2h, "
                   "1h30m. No trial starts that would not end in time; the running one stops "
                   "at the budget with its best epoch kept [default: none].")
@click.option("--isolate", is_flag=True, help="Run each trial in a fresh process: no memory "
              "builds up, and a trial that crashes its process fails alone (a few seconds more "
              "per trial).")
@click.option("--deterministic", is_flag=True, help="Enable TensorFlow's op determinism, so a "
              "GPU gives the same numbers for the same --seed (slower on a GPU; CPU runs are "
              "reproducible without it).")
@click.option("--distributed", type=click.Choice(DISTRIBUTED), default="none",
              show_default=True, help="chief: serve the search's oracle to workers (`autocnn "
              "worker`) that run the trials; this process then retrains and evaluates the best.")
@click.option("--oracle-address", default="", metavar="HOST:PORT", help="Where the chief "
              "listens [default: 127.0.0.1 on a free port]; 0.0.0.0:PORT for other machines.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start this many local worker processes (one GPU each when there are); "
                   "implies --distributed chief.")
@click.option("--worker-timeout", type=Duration(), default="2m", show_default=True,
              help="A worker silent this long has its trial handed to another worker.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="none", show_default=True,
              help="mirrored: train each trial on all visible GPUs (tf.distribute."
                   "MirroredStrategy); the batch size searched is per GPU.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Keras's dtype policy. auto: mixed_float16 on GPUs with Tensor Cores "
                   "(compute capability 7.0+), float32 elsewhere; mixed_bfloat16 suits TPUs "
                   "and recent GPUs.")
@space_options
@click.option("--weights", default="imagenet", show_default=True, metavar="imagenet|none|PATH",
              help=WEIGHTS_HELP)
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
@click.option("--no-retrain", is_flag=True, help="Keep the best trial's own model (trained on "
              "train, or its --trial-fraction share, at its best epoch) instead of retraining "
              "it (on train + val; with --trial-fraction, on all of train).")
@click.option("--no-evaluate", is_flag=True, help="Skip the test-split evaluation (and so the "
              "registration, which needs its score).")
@click.option("--no-register", is_flag=True, help="Evaluate the best model but do not "
              "register it in the MLflow model registry.")
@click.option("-v", "--verbose", count=True, help="Show Keras's per-epoch progress.")
def search(no_retrain, no_evaluate, no_register, space_file, sets, backbone, **options):
    """Search for a CNN, retrain the best, evaluate it on the test split, register it.

    \b
    Examples:
      autocnn search --dataset digits --tuner bayesian --max-trials 20 --epochs 30
      autocnn search --dataset ~/pictures/pets/ --backbone mobilenet_v2,efficientnet_b0
    """
    data_config = make_data_config(**options)
    settings = {k: v for k, v in options.items() if k not in DATA_KEYS}
    from autocnn.presets import preset, split_space

    _, preset_name = split_space(space_file)
    if preset_name:
        preset(preset_name, (32, 32, 1))  # an unknown name fails now, before the data loads
        settings.update(tuner="random", max_trials=1)  # one fixed configuration: one trial
    config = SearchConfig(data=data_config, retrain=not no_retrain, evaluate=not no_evaluate,
                          register=not (no_register or no_evaluate), preset=preset_name,
                          space=make_rules(space_file, sets, backbone), **settings)
    quiet_tensorflow()
    from autocnn import data as data_module

    dataset = data_module.load(data_config, echo=click.echo)  # bad data fails before the search
    from autocnn.report import format_summary
    from autocnn.search import run_search

    result = run_search(config, echo=click.echo, dataset=dataset)
    click.echo(format_summary(result, config))
    return {"model": result.registration.model_uri if result.registration else None,
            "run_id": result.run_id, "tracking_uri": config.tracking_uri}


@cli.command()
@click.option("--oracle-address", required=True, metavar="HOST:PORT",
              help="The chief's address, as `autocnn search --distributed chief` printed it.")
@click.option("--worker-id", default=socket.gethostname(), show_default="this machine's name",
              help="Unique per worker; restarted with the same id, a worker takes its trial "
                   "back.")
@click.option("--connect-timeout", type=Duration(), default="30s", show_default=True,
              help="How long to wait for the chief to answer.")
@click.option("--tuner-dir", type=click.Path(file_okay=False), default=None,
              help="Where the chief's tuner folder is mounted here [default: the chief's path].")
@click.option("--tracking-uri", default=None,
              help="The MLflow store to log trials to [default: the one the chief gives].")
@click.option("-v", "--verbose", count=True, help="Show Keras's per-epoch progress.")
def worker(oracle_address, worker_id, connect_timeout, tuner_dir, tracking_uri, verbose):
    """Run trials for a distributed search until its chief ends it.

    The chief gives the search (data, space, MLflow run); the worker needs the tuner folder at
    the same path (a shared file system) or --tuner-dir. Finished trials stay with the chief:
    a worker can be stopped at any time.

    \b
    Examples:
      autocnn search --dataset digits --distributed chief --oracle-address 0.0.0.0:8000
      autocnn worker --oracle-address chief-host:8000 --worker-id gpu-box-1
    """
    from autocnn.distributed import Address, join

    link = join(Address.parse(oracle_address), worker_id, connect_timeout, tuner_dir,
                tracking_uri)
    quiet_tensorflow()
    from autocnn.search import run_worker

    run_worker(link, verbose=verbose, echo=click.echo)


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
    from autocnn import pipelines

    spec = pipelines.load(pipeline, sets)
    commands = {"search": search, **{c.name: c for c in stage_commands.COMMANDS}}
    results = pipelines.run(spec, commands, echo=click.echo, rerun=rerun)
    click.echo(f"pipeline {spec['name']}: {len(results)} stages done")


@cli.command()
@click.option("--input", "input_shape", type=InputShape(), default="32x32x1", show_default=True,
              help="The input the architecture is sized for.")
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
@space_options
def explain(input_shape, classes, space_file, sets, backbone):
    """Print an architecture's per-layer table before building it.

    Each layer's output shape, parameters and receptive field, computed with
    out = floor((W - F + 2P) / S) + 1; unset hyperparameters take their defaults.
    With --backbone, the backbone model (the first name given).

    \b
    Examples:
      autocnn explain --input 28x28x1 --set family=residual --set num_blocks=3
      autocnn explain --input 28x28x1 --backbone resnet50 --set upscale=4
    """
    quiet_tensorflow()
    import keras_tuner as kt

    from autocnn import sizing, space

    hp = kt.HyperParameters()
    rules = make_rules(space_file, sets, backbone, input_shape)
    if "backbone" in rules:
        rules.setdefault("family", "backbone")
    rules = space.check_rules(space.with_defaults(rules), input_shape)
    ops = space.size_model(hp, input_shape, classes, rules=rules)
    values = " ".join(f"{k}={v}" for k, v in space.active_values(hp).items())
    click.echo(f"input {'x'.join(map(str, input_shape))}, {classes} classes: {values}\n")
    click.echo(sizing.format_table(ops))


@cli.group(name="space")
def space_group():
    """Look at the search space."""


@space_group.command()
@click.option("--input", "input_shape", type=InputShape(), default="32x32x1", show_default=True,
              help="The input the space adapts to (the most blocks it allows).")
@space_options
def show(input_shape, space_file, sets, backbone):
    """Print every hyperparameter with its values, default and condition, and the space's size.

    Pretrained backbones are part of the space when asked for (--backbone, or a rule on
    family or on a backbone hyperparameter).

    \b
    Examples:
      autocnn space show --space my_space.yaml --input 28x28x1
      autocnn space show --backbone all
    """
    quiet_tensorflow()
    from autocnn import rules as rules_module
    from autocnn import space

    rules = space.check_rules(space.with_defaults(make_rules(space_file, sets, backbone,
                                                             input_shape)),
                              input_shape, where=f"{space_file}: " if space_file else "")
    rows, size = rules_module.describe(space.explore(rules, input_shape))
    header = ("hyperparameter", "values", "default", "when")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        click.echo("  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)).rstrip())
    click.echo(f"\nsize: {size}")


@cli.command(name="backbones")
def backbones_command():
    """List the pretrained backbones: parameters, input sizes, preprocessing.

    Images are resized up to the backbone's input size and grayscale is repeated to three
    channels inside the model. `--weights imagenet` weights are downloaded once by Keras into
    ~/.keras/models (or $KERAS_HOME/models).
    """
    from autocnn import backbones

    click.echo(backbones.describe())
    click.echo(f"\nImageNet weights are kept in {backbones.keras_cache()}")


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Also look for data sets here.")
def datasets(data_dir):
    """List the kinds of data source and what is found on this machine."""
    from autocnn.sources import describe_sources

    for name, what, found in describe_sources(DataConfig(data_dir=data_dir)):
        click.echo(f"{name:<14} {what}")
        if found:
            click.echo(f"{'':<14} {found}")


@cli.group()
def data():
    """Look at a data set before searching it."""


@data.command()
@click.argument("dataset")
@data_options
@click.option("--seed", type=int, default=42, show_default=True, help="Fixes the split.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write the PNG grid of samples [default: "
                   "mlruns/inspect/DATASET-samples.png].")
def inspect(dataset, output, **options):
    """Counts per class and split, image shape and value range, and a PNG grid of samples.

    \b
    Examples:
      autocnn data inspect fashion_mnist
      autocnn data inspect ~/pictures/pets/ --image-size 64x64 --skip-bad-files
    """
    config = make_data_config(dataset=dataset, **options)
    quiet_tensorflow()
    from autocnn import data as data_module
    from autocnn import inspection

    loaded = data_module.load(config, echo=click.echo)
    click.echo(inspection.describe(loaded))
    output = Path(output or f"mlruns/inspect/{data_module.slug(dataset)}-samples.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    inspection.plot_samples(loaded).savefig(output, dpi=100)
    click.echo(f"\nsample grid written to {output.resolve()}")


@cli.command()
@click.option("--tracking-uri", default=DEFAULT_TRACKING_URI, show_default=True,
              envvar="MLFLOW_TRACKING_URI", help=TRACKING_HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; the default keeps the UI to this machine.")
def ui(tracking_uri, port, host):
    """Open the MLflow UI over the project's store (a parent run per search, a child per trial)."""
    from autocnn.tracking import resolve_tracking_uri

    uri, artifacts = resolve_tracking_uri(tracking_uri, create=False)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port)]
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    click.echo(f"MLflow UI on http://{host}:{port} over {uri} (Ctrl-C to stop)")
    os.execv(sys.executable, command)


for _command in stage_commands.COMMANDS:
    cli.add_command(_command)


def main(argv=None):
    """Console entry point: one-line errors with exit status 2, never a traceback for bad input."""
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
    from autocnn import native_logs

    if native_logs.wanted(sys.argv[1:]):
        native_logs.filter_stderr()
    main()


if __name__ == "__main__":
    console()
