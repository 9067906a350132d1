"""Frozen-backbone trials with and without the feature cache, side by side in one process.

Trains the head of a backbone model (frozen base, no augmentation) for a few trials that share
the backbone and its weights, once running the backbone on every batch of every epoch and once
with `autocnn.FeatureCache` (features computed once, then reused by every epoch and trial). The
weights are the backbone's random initialisation saved to a file, so every trial loads the same
ones, as with ImageNet weights; the timings do not depend on what the weights are.

    python benchmarks/transfer_features.py --dataset fashion_mnist --train 5000 --trials 3
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--train", type=int, default=5000, help="training images used")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras
    import keras_tuner as kt

    import autocnn
    from autocnn import DataConfig, FeatureCache, build_model, fit_transfer, get_backbone

    autocnn.show_progress()
    dataset = autocnn.load_data(DataConfig(dataset=args.dataset))
    train_split = dataset.train.take(range(min(args.train, len(dataset.train))))
    val_split = dataset.val.take(range(min(args.train // 5, len(dataset.val))))
    train = dataset.batches(train_split, 64, shuffle=True, seed=0)
    val = dataset.batches(val_split, 64)
    entry = get_backbone(args.backbone)
    size = entry.input_size(dataset.input_shape[:2])
    weights = os.path.join(tempfile.mkdtemp(), f"{entry.name}.weights.h5")
    entry.build((*size, 3), None).save_weights(weights)
    print(f"{entry.name} at {size[0]}x{size[1]} on {len(train_split)} training and "
          f"{len(val_split)} validation images of {dataset.name}; {args.trials} trials of "
          f"{args.epochs} epochs each, head units 64/128/256 in turn")

    results = {}
    for mode, cache in (("backbone every epoch", None), ("feature cache", FeatureCache())):
        seconds = []
        for trial in range(args.trials):
            keras.backend.clear_session()
            keras.utils.set_random_seed(trial)
            hp = kt.HyperParameters()
            rules = {"family": "backbone", "backbone": entry.name,
                     "dense_units": [64, 128, 256][trial % 3]}
            model = build_model(hp, dataset.input_shape, dataset.num_classes, rules=rules,
                                weights=weights)
            started = time.perf_counter()
            history = fit_transfer(model, hp, train, batch_size=args.batch_size,
                                   epochs=args.epochs, validation_data=val, cache=cache,
                                   verbose=0)
            seconds.append(time.perf_counter() - started)
            print(f"  {mode:<21} trial {trial + 1}: {seconds[-1]:6.1f}s, "
                  f"val_accuracy {history.history['val_accuracy'][-1]:.4f}")
        results[mode] = seconds
        if cache is not None:
            print(f"  feature cache: {cache.misses} extractions ({cache.seconds:.1f}s), "
                  f"{cache.hits} reuses")

    plain, cached = results["backbone every epoch"], results["feature cache"]
    print("\n| | backbone every epoch | feature cache | speed-up |\n|---|---|---|---|")
    print(f"| first trial | {plain[0]:.1f}s | {cached[0]:.1f}s | {plain[0] / cached[0]:.1f}x |")
    if len(plain) > 1:
        later_plain, later_cached = sum(plain[1:]) / (len(plain) - 1), sum(cached[1:]) / (
            len(cached) - 1)
        print(f"| each later trial | {later_plain:.1f}s | {later_cached:.1f}s | "
              f"{later_plain / later_cached:.1f}x |")
    print(f"| all {len(plain)} trials | {sum(plain):.1f}s | {sum(cached):.1f}s | "
          f"{sum(plain) / sum(cached):.1f}x |")


if __name__ == "__main__":
    main()
