"""Space files and --set: fixing, restricting and widening the search space, with clear errors."""

import re

import pytest

from autocnn.errors import ConfigError
from autocnn.space import hypermodel as space
from autocnn.space import rules


def write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_a_space_file_restricts_and_widens(tmp_path):
    loaded = rules.load_rules(write(tmp_path, """
family: [plain, residual]
kernel_size: [3, 5]
filters: [64, 128, 256]
num_blocks: {min: 1, max: 4}
learning_rate: {min: 0.0005, max: 0.005}
batch_norm: false
"""))
    space.check_rules(loaded)
    hp = space.explore(loaded, (32, 32, 1))[0]  # the plain branch
    declared = {h.name: h.get_config() for h in hp.space}
    assert declared["family"]["values"] == ["plain", "residual"]
    assert declared["filters"]["values"] == [64, 128, 256]
    assert declared["filters"]["default"] == 64  # 32, the default, was left out
    assert (declared["num_blocks"]["min_value"], declared["num_blocks"]["max_value"]) == (1, 4)
    assert declared["learning_rate"]["min_value"] == 0.0005
    assert declared["batch_norm"]["value"] is False


def test_the_space_size_follows_the_rules():
    _, scratch = rules.describe(space.explore(space.with_defaults({}), input_shape=(28, 28, 1)))
    _, full = rules.describe(space.explore(input_shape=(28, 28, 1)))
    _, small = rules.describe(space.explore({
        "family": "plain", "num_blocks": 2, "convs_per_block": 1, "filters": 32,
        "kernel_size": [3, 5], "stride": 1, "dilation": 1, "padding": "same", "batch_norm": True,
        "activation": "relu", "l2": 0.0, "pooling": "max", "pool_size": 2, "head": "flatten",
        "dense_units": 64, "dropout": 0.2, "optimizer": "adam", "lr_schedule": "constant",
        "batch_size": 32, "flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0,
        "random_crop": False, "contrast": 0.0, "blur": False, "noise": 0.0, "erasing": 0.0,
        "label_smoothing": 0.0, "filter_growth": 2.0, "dense_units_2": 0}))
    # dilation 1 or 2, erasing three ways, label smoothing two
    assert scratch.startswith(f"{70_214_291_030_016 * 3 * 2:,} discrete configurations")
    # Backbones add the augmentation settings x 10 backbones x 3 upscales x 2 poolings x
    # (1 + 4 x 4 x 2 fine-tuning settings) x 4 x 3 x 6 head settings x 3 optimizers x 3 schedules
    # x 4 batch sizes x 2 label smoothings.
    augmentation = 3 * 3 * 3 * 3 * 2 * 3 * 2 * 3 * 3
    backbone = augmentation * 10 * 3 * 2 * (1 + 4 * 4 * 2) * 4 * 3 * 6 * 3 * 3 * 4 * 2
    assert full.startswith(f"{70_214_291_030_016 * 6 + backbone:,} discrete configurations")
    assert small == "2 discrete configurations, times the continuous learning_rate"


@pytest.mark.parametrize("text, message", [
    ("famliy: [plain]", r"space.yaml: unknown hyperparameter\(s\) famliy: choose from flip"),
    ("kernel_size: []", r"kernel_size: the list of choices is empty"),
    ("num_blocks: {min: 4, max: 2}", r"num_blocks: impossible range, min 4 is above max 2"),
    ("num_blocks: {min: 0, max: 2}", r"num_blocks: min must be at least 1, got 0"),
    ("num_blocks: {low: 1}", r"num_blocks: a range is \{min: LOW, max: HIGH\}"),
    ("learning_rate: {min: 0, max: 0.1}", r"learning_rate: a log-scale range must start above 0"),
    ("family: [plain, transformer]", r"family='transformer' is not allowed: choose one of plain"),
    ("filters: {min: 8, max: 64}", r"filters takes a list of values or one value, not a range"),
    ("filters: [32, -1]", r"filters=-1 must not be negative"),
    ("- a list", r"space.yaml: a space file maps hyperparameter names to values"),
    ("family: [plain", r"space.yaml, line 1, column 15: not valid YAML"),
])
def test_bad_space_files_are_named(tmp_path, capsys, text, message):
    from autocnn.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["space", "show", "--space", write(tmp_path, text)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_space_show_prints_every_hyperparameter(capsys):
    from autocnn.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["space", "show", "--input", "8x8x1", "--set", "family=dense"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert "fixed: dense" in rows["family"]
    assert "1 .. 2" in rows["num_blocks"]  # an 8x8 input takes two blocks at most
    assert "family in dense" in rows["growth_rate"]
    assert "bottleneck" not in rows  # not a dense net's
    assert out.strip().splitlines()[-1].startswith("size: ")


def test_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere.yaml: no such space file"):
        rules.load_rules(str(tmp_path / "nowhere.yaml"))
