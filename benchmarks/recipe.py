"""The training recipe, one piece at a time: each on its own against the model's own recipe.

Every row trains the same model for the same epochs on the same images from the same seed, and
changes one hyperparameter of the recipe (or all of them, "all"): label smoothing, random
erasing, AdamW's decoupled weight decay, a cosine learning-rate schedule, horizontal flips.
A model trained with flips gets a second row from the same training, its test images scored
with their flips averaged in (test-time augmentation, as `autocnn.predict_probabilities`
does). Three pieces the space has no hyperparameter for are tried on the compiled model, to
decide whether it should: an exponential moving average of the weights (Keras's ``use_ema``,
validated and kept with the averaged weights), and the cosine schedule per step instead of per
epoch, with and without a linear warm-up over the first epoch (Keras's ``CosineDecay``).
Test accuracy is that of the epoch best on validation, as a search keeps it.
The models are the space's defaults and VGG-13 (the preset a person would pick). What it
measures is test accuracy after the epochs, not speed: the rows may share a machine.

    python benchmarks/recipe.py                            # Fashion-MNIST, 12,000 images
    python benchmarks/recipe.py --models defaults --epochs 3 --train 1000 --output /tmp/r
"""

import argparse
import os
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# One change each from the model's own recipe; "all" takes every change together.
VARIANTS = {
    "own recipe": {},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "random erasing 0.5": {"erasing": 0.5},
    "AdamW": {"optimizer": "adamw"},
    "cosine schedule": {"lr_schedule": "cosine"},
    "horizontal flips": {"flip": "horizontal"},
}
# Pieces made on the compiled model, each as the rules it needs (a schedule object replaces
# the per-epoch one) and its optimizer, built from the steps an epoch has and the epochs.
TRIED = {
    "EMA": {},
    "cosine per step": {"lr_schedule": "constant"},
    "warm-up then cosine per step": {"lr_schedule": "constant"},
}
TTA = ", flips averaged at test"  # the suffix of the row scored with test-time augmentation
MODELS = ("defaults", "vgg13")
SEED = 42


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train", type=int, default=12000,
                        help="training images (stratified); validation: a quarter as many")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--variants", default=",".join([*VARIANTS, "all", *TRIED]),
                        help="comma-separated, from: " + ", ".join([*VARIANTS, "all", *TRIED]))
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"another seed than {SEED} writes recipe_seedN.md beside recipe.md")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - {*VARIANTS, "all", *TRIED})
    if unknown:
        parser.error(f"unknown variant {', '.join(unknown)}: choose from "
                     f"{', '.join([*VARIANTS, 'all', *TRIED])}")

    from autocnn import DataConfig, load_data

    dataset = subset(load_data(DataConfig(dataset=args.dataset, data_dir=args.data_dir,
                                          seed=args.seed)), args.train, args.seed)
    print(dataset.summary(), flush=True)
    rows = []
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    path = out / results_name(args.seed)
    earlier = earlier_rows(path, data_line(dataset, args),
                           {(m, v + tta) for m in models for v in variants for tta in ("", TTA)})
    for model in models:
        for variant in variants:
            for row in train(dataset, model, variant, args):
                rows.append(row)
                print(format_row(row, rows, earlier), flush=True)
            path.write_text(report(rows, dataset, args, earlier))
    print(f"\nwritten to {path}")


def results_name(seed: int) -> str:
    """``recipe.md`` for the default seed, ``recipe_seed7.md`` for seed 7: another seed's run
    is a repeat of the same measurement, kept beside it rather than replacing it."""
    return "recipe.md" if seed == SEED else f"recipe_seed{seed}.md"


def subset(dataset, train: int, seed: int):
    """``train`` training images and a quarter as many validation images, stratified; the
    whole test split."""
    import dataclasses

    import numpy as np
    from sklearn.model_selection import train_test_split

    def share(split, count):
        if count >= len(split):
            return split
        _, kept = train_test_split(np.arange(len(split)), test_size=count, stratify=split.labels,
                                   random_state=seed)
        return split.take(np.sort(kept))

    return dataclasses.replace(dataset, train=share(dataset.train, train),
                               val=share(dataset.val, train // 4))


def rules_for(dataset, model: str, variant: str) -> dict:
    from autocnn import get_preset

    own = get_preset(model, dataset.input_shape) if model != "defaults" else {}
    changes = ({k: v for change in VARIANTS.values() for k, v in change.items()}
               if variant == "all" else {**VARIANTS, **TRIED}[variant])
    return {**own, **changes}


def train(dataset, model: str, variant: str, args) -> list[dict]:
    """One training of ``model`` with ``variant``'s recipe: its best validation accuracy and
    the test accuracy of that epoch's weights; a second row scored with test-time
    augmentation when it learnt flips."""
    import keras
    import keras_tuner as kt
    import numpy as np

    from autocnn import CNNHyperModel, predict_probabilities

    keras.utils.set_random_seed(args.seed)
    keras.backend.clear_session()
    hypermodel = CNNHyperModel(dataset.input_shape, dataset.num_classes,
                               rules=rules_for(dataset, model, variant))
    hp = kt.HyperParameters()
    network = hypermodel.build(hp)
    callbacks = tried(network, variant, hp, -(-len(dataset.train) // hypermodel.batch_size(hp)),
                      args.epochs)
    # The weights of the best epoch on validation, as a search keeps them: a last epoch at a
    # constant learning rate scores a point up or down by chance.
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=args.epochs, restore_best_weights=True))
    started = time.monotonic()
    history = hypermodel.fit(
        hp, network, dataset.batches(dataset.train, 64, shuffle=True, seed=args.seed),
        validation_data=dataset.batches(dataset.val, 256), epochs=args.epochs, shuffle=False,
        callbacks=callbacks, verbose=0)
    row = {"model": model, "variant": variant, "epochs": args.epochs,
           "seconds": time.monotonic() - started, "val": max(history.history["val_accuracy"]),
           "when": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}"}
    rows = []
    for averaged in (False, True)[:1 + (hp.get("flip") != "none")]:
        probabilities = predict_probabilities(network, dataset.batches(dataset.test, 256),
                                              tta=averaged)
        test = float(np.mean(np.argmax(probabilities, axis=-1) == dataset.test.labels))
        rows.append({**row, "test": test, "variant": variant + TTA * averaged})
    return rows


def tried(network, variant: str, hp, steps: int, epochs: int) -> list:
    """For a piece of `TRIED`: ``network`` compiled again with its optimizer, for epochs of
    ``steps``; the callbacks it needs (to come before the others)."""
    import keras

    if variant not in TRIED:
        return []
    base = hp.get("learning_rate")
    if variant == "EMA":  # an average over about the last 1,000 steps, two to three epochs
        optimizer = keras.optimizers.Adam(base, use_ema=True, ema_momentum=0.999)
    elif variant == "cosine per step":
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            base, epochs * steps))
    else:
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            0.0, (epochs - 1) * steps, warmup_target=base, warmup_steps=steps))
    network.compile(optimizer=optimizer, loss=network.loss, metrics=["accuracy"])
    # Validated, and kept as the best epoch, with the averaged weights.
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if variant == "EMA" else []


def format_row(row, rows, earlier=()) -> str:
    """``row`` as a table row, its test accuracy against the same model's own recipe (from
    ``rows`` of this run, else from the ``earlier`` table rows)."""
    base = next((r["test"] for r in rows if r["model"] == row["model"]
                 and r["variant"] == "own recipe" and r is not row), None)
    for line in earlier:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if base is None and cells[:2] == [row["model"], "own recipe"]:
            base = float(cells[4])
    own = row["variant"] == "own recipe"
    delta = f"{100 * (row['test'] - base):+.2f}" if base is not None and not own else ""
    return (f"| {row['model']} | {row['variant']} | {row['epochs']} | {row['val']:.4f} | "
            f"{row['test']:.4f} | {delta} | {row['seconds']:.0f} | {row['when']} |")


def data_line(dataset, args) -> str:
    return (f"{len(dataset.train)} train / {len(dataset.val)} validation / "
            f"{len(dataset.test)} test images; seed {args.seed}")


def earlier_rows(path: Path, line: str, rerun: set) -> list[str]:
    """The rows of a table written before on the same data, but those of ``rerun`` (pairs of
    model and variant), in the table's order. A model whose own recipe runs again loses all
    its earlier rows: their points were against the recipe it had then."""
    if not path.exists() or line not in path.read_text().splitlines():
        return []
    rows = [row for row in path.read_text().splitlines()
            if row.startswith("| ") and not row.startswith("| model |")]
    again = {model for model, variant in rerun if variant == "own recipe"}
    keys = [tuple(c.strip() for c in row.split("|")[1:3]) for row in rows]
    return [row for row, key in zip(rows, keys) if key not in rerun and key[0] not in again]


def report(rows, dataset, args, earlier=()) -> str:
    import platform

    header = ("| model | recipe | epochs | best val accuracy | test accuracy | "
              "points against its own | seconds | finished (UTC) |\n" + "|---" * 8 + "|\n")
    lines = [*earlier, *(format_row(row, rows[:i + 1], earlier) for i, row in enumerate(rows))]
    return (f"# {dataset.name}: the training recipe, one piece at a time\n\n"
            f"{data_line(dataset, args)}\n{platform.machine()}, {os.cpu_count()} cores; the "
            f"points are test accuracy against the same model's own recipe\n\n{header}"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
