"""How a finalist's learning rate falls over the epochs the budget gives it: its own schedule,
or a cosine over those epochs.

A model (VGG-13 by default, the warm start that won a 15-minute search) trains for
``--share-epochs`` on a quarter of Fashion-MNIST's training images with its own recipe, as a
trial would (the presets cut the rate when validation accuracy stalls); then for ``--epochs``
on all of them from the quarter's best weights and optimizer state, as a last-rung finalist
would, twice: with its own schedule, and with a cosine from its base rate towards 0 over those
epochs. Each row gives the best validation accuracy and the test accuracy of that epoch's
weights; the seconds are wall time on whatever else the machine ran, not a speed figure.

    python benchmarks/finalist_schedule.py --model vgg13 --share-epochs 7 --epochs 5
"""

import argparse
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from finalist_start import append_table, describe, stratified_quarter, train
from recipe import subset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    args = share_then_finalists(__doc__, epochs=5, help="epochs on all the images") \
        .parse_args(argv)
    data, own = data_and_rules(args)
    checkpoint, share = train_share(args, data, own)
    rows = [row(args, "a quarter", args.share_epochs, "its own", share)]
    print(rows[-1], flush=True)
    for schedule, rules in (("its own", own), ("cosine over them", {**own,
                                                                    "lr_schedule": "cosine"})):
        result = train(data, data.train, args.epochs, args.seed, load=checkpoint, rules=rules)
        rows.append(row(args, "all", args.epochs, schedule, result))
        print(rows[-1], flush=True)
    write(Path(args.output) / "finalist_schedule.md", rows, data)


def share_then_finalists(doc: str, epochs: int, help: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark that trains a model on a share, then finalists from it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="vgg13", help="a preset's name, or 'defaults'")
    parser.add_argument("--share-epochs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=epochs, help=help)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--train", type=int, default=None,
                        help="use only this many training images: a smoke run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    return parser


def data_and_rules(args):
    """The data (a subset with ``--train``) and the rules that fix ``--model``."""
    from autocnn import DataConfig, get_preset, load_data

    data = load_data(DataConfig(dataset=args.dataset, seed=args.seed))
    if args.train:
        data = subset(data, args.train, args.seed)
    return data, get_preset(args.model, data.input_shape) if args.model != "defaults" else {}


def train_share(args, data, rules):
    """The model trained for ``--share-epochs`` on a stratified quarter of the training images,
    as a trial would: the checkpoint of its best weights and optimizer state, and its result
    (see finalist_start.train)."""
    checkpoint = Path(tempfile.mkdtemp()) / "share.weights.h5"
    return checkpoint, train(data, stratified_quarter(data.train, args.seed), args.share_epochs,
                             args.seed, save=checkpoint, rules=rules)


def row(args, images, epochs, schedule, result) -> str:
    val, test, seconds = result
    return (f"| {args.model} | {images} | {epochs} | {schedule} | {val:.4f} | {test:.4f} | "
            f"{seconds:.0f} | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} |")


def write(path: Path, rows, data) -> None:
    append_table(path, rows, f"{data.name}: how a finalist's learning rate falls",
                 describe(data), ["model", "images", "epochs", "schedule", "best val accuracy",
                                  "test accuracy", "seconds", "finished (UTC)"])


if __name__ == "__main__":
    main()
