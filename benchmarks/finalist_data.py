"""Which images a last-rung finalist trains on, at the same number of steps: the training
images, validation choosing the epoch, or the training and validation images together, the
cosine's last epoch kept.

A model (VGG-13 by default) trains for ``--share-epochs`` on a quarter of Fashion-MNIST's
training images, as a trial would; then, from the quarter's best weights and optimizer state,
as a finalist would, twice, each on a cosine over its epochs: for ``--epochs`` on the training
images, the epoch with the best validation accuracy kept (what the last rung does), and on the
training and validation images together for as many steps (a fifth fewer epochs with
Fashion-MNIST's 48,000 / 12,000 split), its last epoch kept, as nothing is left to choose
another. Each row gives the best validation accuracy (none where validation was trained on)
and the test accuracy of the weights kept; the seconds are wall time on whatever else the
machine ran, not a speed figure.

    python benchmarks/finalist_data.py --model vgg13 --share-epochs 7 --epochs 10 --seed 7
"""

import os
from datetime import datetime, timezone
from pathlib import Path

from finalist_schedule import data_and_rules, share_then_finalists, train_share
from finalist_start import append_table, describe, train

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    args = share_then_finalists(__doc__, epochs=10, help="epochs on the training images (the "
                                "other finalist gets as many steps)").parse_args(argv)
    data, own = data_and_rules(args)
    cosine = {**own, "lr_schedule": "cosine"}
    checkpoint, share = train_share(args, data, own)
    rows = [row(args, "a quarter of train", args.share_epochs, "the best", share)]
    print(rows[-1], flush=True)
    result = train(data, data.train, args.epochs, args.seed, load=checkpoint, rules=cosine)
    rows.append(row(args, "train", args.epochs, "the best", result))
    print(rows[-1], flush=True)
    both = data.train.concat(data.val)
    epochs = max(round(args.epochs * len(data.train) / len(both)), 1)  # as many steps
    result = train(data, both, epochs, args.seed, load=checkpoint, rules=cosine,
                   validate=False)
    rows.append(row(args, "train + val", epochs, "the last", result))
    print(rows[-1], flush=True)
    append_table(Path(args.output) / "finalist_data.md", rows,
                 f"{data.name}: which images a finalist trains on", describe(data),
                 ["model", "seed", "images", "epochs", "epoch kept", "best val accuracy",
                  "test accuracy", "seconds", "finished (UTC)"])


def row(args, images, epochs, kept, result) -> str:
    val, test, seconds = result
    val = "-" if val is None else f"{val:.4f}"
    return (f"| {args.model} | {args.seed} | {images} | {epochs} | {kept} | {val} | {test:.4f} | "
            f"{seconds:.0f} | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} |")


if __name__ == "__main__":
    main()
