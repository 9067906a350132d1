"""Options and parameter types the commands share, each declared once: data, search space,
backbones, the tracking store, verbosity, and the search settings whose defaults are
SearchConfig's."""

import dataclasses
import os

import click

from autocnn.config import CACHES, DEFAULT_TRACKING_URI, DataConfig, SearchConfig

TRACKING_HELP = ("MLflow tracking URI: a SQLite file (the default, beside an artifacts/ folder) "
                 "or an MLflow server's http(s) address. Also read from MLFLOW_TRACKING_URI.")


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


class Duration(click.ParamType):
    """A wall-clock duration: 90s, 45m, 2h, 1h30m; seconds as a float."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        from autocnn.control import parse_duration
        from autocnn.errors import ConfigError

        try:
            return parse_duration(value)
        except ConfigError as err:
            self.fail(str(err), param, ctx)


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
              "classic architecture (lenet5, alexnet, vgg11, vgg13, vgg16, resnet18, resnet34, "
              "densenet, inception, mobilenet, nin); --set applies on top.")


BACKBONE_HELP = ("Pretrained backbones to search beside the families trained from scratch: "
                 "comma-separated names or 'all' (`autocnn backbones` lists them); with "
                 "--set family=backbone, backbones only.")


def space_options(command):
    """--space FILE, --set NAME=VALUE and --backbone NAMES: the commands that take a space."""
    command = click.option("--backbone", "backbone", default=None, metavar="NAMES",
                           help=BACKBONE_HELP)(command)
    command = click.option("--set", "sets", multiple=True, callback=parse_sets,
                           help=SET_HELP)(command)
    return click.option("--space", "space_file", type=click.Path(dir_okay=False), default=None,
                        help=SPACE_HELP)(command)


def make_rules(space_file, sets, backbone=None, input_shape=None) -> dict:
    """The rules of --space (a YAML file, or preset:NAME sized for ``input_shape``),
    --backbone and --set, later ones winning."""
    from autocnn.space.backbones import parse_names
    from autocnn.space.presets import preset, split_space
    from autocnn.space.rules import load_rules

    file, name = split_space(space_file)
    base = load_rules(file) if file else {}
    if name and input_shape is not None:
        base = preset(name, input_shape)
    if backbone:
        names = parse_names(backbone)
        base["backbone"] = names if len(names) > 1 else names[0]
    return {**base, **sets}


WEIGHTS_HELP = ("Backbone weights: imagenet (downloaded once by Keras into ~/.keras/models), "
                "none (random initialisation) or the path of a weights file.")




def quiet_tensorflow():
    from autocnn.devices import share_gpu_memory

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ start-up notices
    share_gpu_memory()


# The search's defaults have one source, SearchConfig: the command line shows and uses them.
SEARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SearchConfig)
                   if f.default is not dataclasses.MISSING}


def setting(flag: str, **kwargs):
    """A click option for the SearchConfig field ``flag`` names (--max-trials: max_trials),
    with that field's default."""
    name = flag.lstrip("-").replace("-", "_")
    kwargs.setdefault("show_default", True)
    if isinstance(kwargs.get("type"), Duration) and kwargs["show_default"] is True:
        kwargs["show_default"] = f"{SEARCH_DEFAULTS[name]:g}s"
    return click.option(flag, default=SEARCH_DEFAULTS[name], **kwargs)


def tracking_option(default: str | None = DEFAULT_TRACKING_URI, help: str = TRACKING_HELP):
    """--tracking-uri: the MLflow store (also MLFLOW_TRACKING_URI, when it has a default)."""
    return click.option("--tracking-uri", default=default, show_default=default is not None,
                        envvar="MLFLOW_TRACKING_URI" if default else None, help=help)


verbose_option = click.option("-v", "--verbose", count=True,
                              help="Show Keras's per-epoch progress.")
