"""Every data source loaded into one `Dataset`: the dispatcher from a name to its source, then
the seeded, stratified splits a source did not bring."""

import os

from autocnn.config import DataConfig
from autocnn.data.splits import Dataset, Loaded, stratified_split
from autocnn.errors import DataError


def load(config: DataConfig | str) -> Dataset:
    """Load the data set ``config.dataset`` and split it, stratified by class and seeded."""
    from autocnn.data import folders, sources

    if isinstance(config, str):
        config = DataConfig(dataset=config)
    name = config.dataset
    if name in sources.NAMED:
        loaded = sources.NAMED[name](config)
    elif name.startswith("idx:"):
        loaded = sources.load_idx_dir(name[4:], config)
    elif name.startswith("tfds:"):
        loaded = sources.load_tfds(name[5:], config)
    elif name.lower().endswith(".npz"):
        loaded = sources.load_npz(name, config)
    elif name.endswith(os.sep) or os.path.isdir(name):
        loaded = folders.load_folder(name, config)
    else:
        hint = "a file of an unknown kind" if os.path.exists(name) else "no such file or folder"
        raise DataError(f"unknown data set {name!r} ({hint}): choose one of "
                        f"{', '.join(sources.NAMED)}, a folder of class sub-folders (PATH/), "
                        "a .npz file, idx:DIR or tfds:NAME (see `autocnn datasets`)")
    return _finish(name, loaded, config)


def _finish(name, loaded: Loaded, config: DataConfig) -> Dataset:
    splits = dict(loaded.splits)
    names = loaded.class_names
    if "test" not in splits:
        splits["train"], splits["test"] = stratified_split(
            splits["train"], config.test_fraction, config.seed, names, name, "test")
    if "val" not in splits:
        splits["train"], splits["val"] = stratified_split(
            splits["train"], config.val_fraction, config.seed, names, name, "validation")
    return Dataset(name, splits["train"], splits["val"], splits["test"], tuple(names),
                   loaded.input_shape, loaded.skipped, config.cache,
                   orientation_matters=name == "digits" or name.startswith("idx:"))
