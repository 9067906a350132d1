"""Where a last-rung finalist starts: afresh, or from its trial's best weights on a share.

The space's default model trains for ``--share-epochs`` on a quarter of Fashion-MNIST's training
images (stratified, as `--trial-fraction 0.25` takes it), as a trial would; then for ``--epochs``
on all of them twice, once afresh and once from the quarter's best weights (with its
optimizer's state), as a finalist would. Each row gives the best validation accuracy (the whole
validation split) and the test accuracy of that epoch's weights; the seconds are wall time on
whatever else the machine ran, not a speed figure.

    python benchmarks/finalist_start.py --share-epochs 6 --epochs 4
    python benchmarks/finalist_start.py --share-epochs 6 --epochs 2 --warm-first
"""

import argparse
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share-epochs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4, help="epochs on all the images")
    parser.add_argument("--warm-first", action="store_true",
                        help="train the warm start before the fresh one (order check)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    from autocnn import DataConfig, load_data

    data = load_data(DataConfig(dataset="fashion_mnist", seed=args.seed))
    quarter = stratified_quarter(data.train, args.seed)
    checkpoint = Path(tempfile.mkdtemp()) / "share.weights.h5"
    share = train(data, quarter, args.share_epochs, args.seed, save=checkpoint)
    starts = ["warm", "fresh"] if args.warm_first else ["fresh", "warm"]
    rows = [row(args, "share", share)]
    for start in starts:
        result = train(data, data.train, args.epochs, args.seed,
                       load=checkpoint if start == "warm" else None)
        rows.append(row(args, start, result))
        print(rows[-1], flush=True)
    write(Path(args.output) / "finalist_start.md", rows, data)


def stratified_quarter(split, seed):
    """A quarter of ``split``, stratified, as `--trial-fraction 0.25` takes it."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    _, kept = train_test_split(np.arange(len(split)), test_size=len(split) // 4,
                               stratify=split.labels, random_state=seed)
    return split.take(np.sort(kept))


def train(data, split, epochs, seed, save=None, load=None, rules=None, validate=True):
    """The space's default model (or the one ``rules`` fix) trained on ``split``: (best
    validation accuracy, test accuracy at that epoch, seconds); without ``validate`` (where
    ``split`` holds the validation images), (None, test accuracy at the last epoch, seconds)."""
    import keras
    import keras_tuner as kt
    import numpy as np

    from autocnn import CNNHyperModel

    keras.utils.set_random_seed(seed)
    keras.backend.clear_session()
    hypermodel = CNNHyperModel(data.input_shape, data.num_classes, rules=rules)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    if load is not None:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(load)
    best = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=epochs,
                                         restore_best_weights=True)
    started = time.monotonic()
    history = hypermodel.fit(hp, model, data.batches(split, 64, shuffle=True, seed=seed),
                             validation_data=data.batches(data.val, 256) if validate else None,
                             epochs=epochs, shuffle=False, callbacks=[best] if validate else [],
                             verbose=0)
    seconds = time.monotonic() - started
    if save is not None:
        model.save_weights(save)
    predicted = np.argmax(model.predict(data.batches(data.test, 256), verbose=0), axis=-1)
    return (max(history.history["val_accuracy"]) if validate else None,
            float(np.mean(predicted == data.test.labels)), seconds)


def row(args, start, result) -> str:
    val, test, seconds = result
    images = "a quarter" if start == "share" else "all"
    epochs = args.share_epochs if start == "share" else args.epochs
    begins = {"share": "afresh", "fresh": "afresh",
              "warm": f"from the quarter's best ({args.share_epochs} epochs)"}[start]
    order = "warm first" if args.warm_first else "fresh first"
    return (f"| {images} | {epochs} | {begins} | {val:.4f} | {test:.4f} | {seconds:.0f} | "
            f"{order} | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} |")


def write(path: Path, rows, data) -> None:
    append_table(path, rows, f"{data.name}: where a finalist starts",
                 f"{describe(data)}; the space's default model",
                 ["images", "epochs", "starts", "best val accuracy", "test accuracy",
                  "seconds", "order", "finished (UTC)"])


def describe(data) -> str:
    """The images of each split, and the machine."""
    import platform

    return (f"{len(data.train)} train / {len(data.val)} validation / {len(data.test)} test "
            f"images; {platform.machine()}, {os.cpu_count()} cores")


def append_table(path: Path, rows, title: str, about: str, columns) -> None:
    """Append this run's rows to the table at ``path``, begun with ``title``, ``about`` and
    ``columns`` where there is none yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {title}\n\n{about}\n\n| " + " | ".join(columns) + " |\n"
                        + "|---" * len(columns) + "|\n")
    with path.open("a") as table:
        table.write("\n".join(rows) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
