"""The `autocnn` command line: one click command per stage.

Heavy libraries (TensorFlow, MLflow) are imported inside the commands, so `--help` is instant.
Any `AutoCNNError` or usage error becomes one line on stderr and exit status 2.
"""

import os
import sys

import click

from autocnn import __version__
from autocnn.config import (
    CACHES,
    CHAMPION_METRICS,
    DEFAULT_TRACKING_URI,
    DEFAULT_TUNER_DIR,
    TUNERS,
    DataConfig,
    SearchConfig,
)
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


class ImageSize(click.ParamType):
    """HxW (64x48) or N (64x64)."""

    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().split("x")
        if len(parts) in (1, 2) and all(p.strip().isdigit() and int(p) > 0 for p in parts):
            return (int(parts[0]), int(parts[-1]))
        self.fail(f"{value!r} is not HxW (for example 64x64, or 64)", param, ctx)


DATASET_HELP = ("digits (embedded), fashion_mnist, a folder of class sub-folders (PATH/), a .npz "
                "file, idx:DIR or tfds:NAME. `autocnn datasets` lists them.")


def data_options(command):
    """The options every command that loads a data set shares."""
    options = [
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Where fashion_mnist and tfds:NAME look for their files first."),
        click.option("--image-size", type=ImageSize(), default=None,
                     help="Resize images to HxW [default: the source's own size; for a folder "
                          "the most common one]."),
        click.option("--channels", type=click.Choice(["1", "3"]), default=None,
                     help="1 (grayscale) or 3 (RGB) [default: the source's own; for a folder 3 "
                          "if any image has colour]."),
        click.option("--skip-bad-files", is_flag=True,
                     help="Skip unreadable images and report them, instead of stopping."),
        click.option("--cache", type=click.Choice(CACHES), default="auto", show_default=True,
                     help="Keep decoded folder images in memory (auto: when they fit in 1 GiB)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_data_config(dataset, seed, data_dir, image_size, channels, skip_bad_files, cache,
                     **_) -> DataConfig:
    return DataConfig(dataset=dataset, seed=seed, data_dir=data_dir, image_size=image_size,
                      channels=int(channels) if channels else None,
                      skip_bad_files=skip_bad_files, cache=cache)


DATA_KEYS = ("dataset", "data_dir", "image_size", "channels", "skip_bad_files", "cache")


def parse_sets(ctx, param, values) -> dict:
    """--set NAME=VALUE pairs as a dict, each value read as a bool, int, float or string."""
    fixed = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE (for example family=residual)",
                                     ctx, param)
        fixed[name.strip()] = _parse_value(raw.strip())
    return fixed


def _parse_value(raw: str):
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


class InputShape(click.ParamType):
    """HxWxC, for example 32x32x3."""

    name = "HxWxC"

    def convert(self, value, param, ctx):
        parts = str(value).lower().split("x")
        if len(parts) == 3 and all(p.isdigit() and int(p) > 0 for p in parts):
            return tuple(int(p) for p in parts)
        self.fail(f"{value!r} is not HxWxC (for example 32x32x1)", param, ctx)


SET_HELP = "Fix a hyperparameter, e.g. --set family=residual --set num_blocks=3 (repeatable)."
SPACE_HELP = ("A YAML file that fixes, restricts or widens hyperparameters, or preset:NAME for a "
              "classic architecture (lenet5, alexnet, vgg11, vgg16, resnet18, resnet34, densenet, "
              "inception, mobilenet, nin); --set applies on top.")


def space_options(command):
    """--space FILE and --set NAME=VALUE, shared by the commands that take a search space."""
    command = click.option("--set", "sets", multiple=True, callback=parse_sets,
                           help=SET_HELP)(command)
    return click.option("--space", "space_file", type=click.Path(dir_okay=False), default=None,
                        help=SPACE_HELP)(command)


def make_rules(space_file, sets, input_shape=None) -> dict:
    """The rules of --space (a YAML file, or preset:NAME sized for ``input_shape``) and --set."""
    from autocnn.presets import preset, split_space
    from autocnn.rules import load_rules

    file, name = split_space(space_file)
    base = load_rules(file) if file else {}
    if name and input_shape is not None:
        base = preset(name, input_shape)
    return {**base, **sets}


@cli.command()
@click.option("--dataset", default="digits", show_default=True, help=DATASET_HELP)
@data_options
@click.option("--tuner", type=click.Choice(TUNERS), default="random", show_default=True,
              help="keras-tuner algorithm.")
@click.option("--max-trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Most trials to run; architectures rejected by sizing count as trials.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most epochs per trial (Hyperband's max_epochs).")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop a trial after this many epochs without a better val_accuracy.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Fixes the split, the tuner's choices and the weight initialisation.")
@click.option("--max-failed-trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Give up after this many failed trials in a row.")
@click.option("--max-params", type=click.IntRange(min=1), default=None,
              help="Reject architectures with more parameters, before building them.")
@space_options
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
def search(no_register, space_file, sets, **options):
    """Search for a CNN, retrain the best, evaluate it on the test split, register it.

    \b
    Example:
      autocnn search --dataset digits --tuner bayesian --max-trials 20 --epochs 30
    """
    data_config = make_data_config(**options)
    settings = {k: v for k, v in options.items() if k not in DATA_KEYS}
    from autocnn.presets import preset, split_space

    _, preset_name = split_space(space_file)
    if preset_name:
        preset(preset_name, (32, 32, 1))  # an unknown name fails now, before the data loads
        settings.update(tuner="random", max_trials=1)  # one fixed configuration: one trial
    config = SearchConfig(data=data_config, register=not no_register, preset=preset_name,
                          space=make_rules(space_file, sets), **settings)
    _quiet_tensorflow()
    from autocnn import data as data_module

    dataset = data_module.load(data_config, echo=click.echo)  # bad data fails before the search
    from autocnn.report import format_summary
    from autocnn.search import run_search

    result = run_search(config, echo=click.echo, dataset=dataset)
    click.echo(format_summary(result, config))


@cli.command()
@click.option("--input", "input_shape", type=InputShape(), default="32x32x1", show_default=True,
              help="The input the architecture is sized for.")
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
@space_options
def explain(input_shape, classes, space_file, sets):
    """Print an architecture's per-layer table before building it.

    Each layer's output shape, parameters and receptive field, computed with
    out = floor((W - F + 2P) / S) + 1; unset hyperparameters take their defaults.

    \b
    Example:
      autocnn explain --input 28x28x1 --set family=residual --set num_blocks=3
    """
    _quiet_tensorflow()
    import keras_tuner as kt

    from autocnn import sizing, space

    hp = kt.HyperParameters()
    rules = space.check_rules(make_rules(space_file, sets, input_shape), input_shape)
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
def show(input_shape, space_file, sets):
    """Print every hyperparameter with its values, default and condition, and the space's size.

    \b
    Example:
      autocnn space show --space my_space.yaml --input 28x28x1
    """
    _quiet_tensorflow()
    from autocnn import rules as rules_module
    from autocnn import space

    rules = space.check_rules(make_rules(space_file, sets, input_shape), input_shape,
                              where=f"{space_file}: " if space_file else "")
    rows, size = rules_module.describe(space.explore(rules, input_shape))
    header = ("hyperparameter", "values", "default", "when")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        click.echo("  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)).rstrip())
    click.echo(f"\nsize: {size}")


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
              help="Where to write the PNG grid of samples [default: DATASET-samples.png].")
def inspect(dataset, output, **options):
    """Counts per class and split, image shape and value range, and a PNG grid of samples.

    \b
    Examples:
      autocnn data inspect fashion_mnist
      autocnn data inspect ~/pictures/pets/ --image-size 64x64 --skip-bad-files
    """
    config = make_data_config(dataset=dataset, **options)
    _quiet_tensorflow()
    from autocnn import data as data_module
    from autocnn import inspection

    loaded = data_module.load(config, echo=click.echo)
    click.echo(inspection.describe(loaded))
    output = output or f"{data_module.slug(dataset)}-samples.png"
    inspection.plot_samples(loaded).savefig(output, dpi=100)
    click.echo(f"\nsample grid written to {output}")


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
