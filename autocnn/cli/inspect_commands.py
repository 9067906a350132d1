"""The commands that look before a search: an architecture's per-layer table (`explain`), the
space (`space show`), the backbones, the data sources, and a data set (`data inspect`)."""

from pathlib import Path

import click

from autocnn.cli.options import (
    InputShape,
    data_options,
    make_data_config,
    make_rules,
    quiet_tensorflow,
    space_options,
)
from autocnn.config import DataConfig, slug
from autocnn.tables import format_table


@click.command()
@click.option("--input", "input_shape", type=InputShape(), default="32x32x1", show_default=True,
              help="The input the architecture is sized for.")
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
@space_options
def explain(input_shape, classes, space_file, sets, backbone):
    """Print an architecture's per-layer table before building it.

    Each layer's output shape, parameters and receptive field, computed with
    out = floor((W + 2P - D(F - 1) - 1) / S) + 1 (D: the dilation, 1 unless set);
    unset hyperparameters take their defaults.
    With --backbone, the backbone model (the first name given).

    \b
    Examples:
      autocnn explain --input 28x28x1 --set family=residual --set num_blocks=3
      autocnn explain --input 28x28x1 --backbone resnet50 --set upscale=4
    """
    quiet_tensorflow()
    import keras_tuner as kt

    from autocnn.space import hypermodel as space
    from autocnn.space import sizing

    hp = kt.HyperParameters()
    rules = make_rules(space_file, sets, backbone, input_shape)
    if "backbone" in rules:
        rules.setdefault("family", "backbone")
    rules = space.check_rules(space.with_defaults(rules), input_shape)
    ops = space.size_model(hp, input_shape, classes, rules=rules)
    values = " ".join(f"{k}={v}" for k, v in space.active_values(hp).items())
    click.echo(f"input {'x'.join(map(str, input_shape))}, {classes} classes: {values}\n")
    click.echo(sizing.format_table(ops))


@click.group(name="space")
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
    from autocnn.space import hypermodel as space
    from autocnn.space import rules as rules_module

    rules = space.check_rules(space.with_defaults(make_rules(space_file, sets, backbone,
                                                             input_shape)),
                              input_shape, where=f"{space_file}: " if space_file else "")
    rows, size = rules_module.describe(space.explore(rules, input_shape))
    header = ("hyperparameter", "values", "default", "when")
    click.echo(format_table(header, rows, rule=True))
    click.echo(f"\nsize: {size}")


@click.command(name="backbones")
def backbones_command():
    """List the pretrained backbones: parameters, input sizes, preprocessing.

    Images are resized up to the backbone's input size and grayscale is repeated to three
    channels inside the model. `--weights imagenet` weights are downloaded once by Keras into
    ~/.keras/models (or $KERAS_HOME/models).
    """
    from autocnn.space import backbones

    click.echo(backbones.describe())
    click.echo(f"\nImageNet weights are kept in {backbones.keras_cache()}")


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Also look for data sets here.")
def datasets(data_dir):
    """List the kinds of data source and what is found on this machine."""
    from autocnn.data.sources import describe_sources

    for name, what, found in describe_sources(DataConfig(data_dir=data_dir)):
        click.echo(f"{name:<14} {what}")
        if found:
            click.echo(f"{'':<14} {found}")


@click.group()
def data():
    """Look at a data set before searching it."""


@data.command()
@click.argument("dataset")
@data_options
@click.option("--seed", type=int, default=DataConfig.seed, show_default=True,
              help="Fixes the split.")
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
    from autocnn.data import inspection

    loaded = data_module.load(config)
    click.echo(inspection.describe(loaded))
    output = Path(output or f"mlruns/inspect/{slug(dataset)}-samples.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    inspection.plot_samples(loaded).savefig(output, dpi=100)
    click.echo(f"\nsample grid written to {output.resolve()}")


COMMANDS = (explain, space_group, backbones_command, datasets, data)
