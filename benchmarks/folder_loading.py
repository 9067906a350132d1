"""Image-folder loading at scale: peak memory, loader throughput and training throughput.

Writes N random RGB PNGs (default 100,000 of 64x64) into one folder of 10 classes, then measures,
in this one process:
  1. the up-front check of every file (images/s);
  2. the tf.data loader alone, one pass over the training split (images/s);
  3. one epoch of a small CNN streaming from that loader (images/s);
  4. the peak resident memory of the whole run.

    python benchmarks/folder_loading.py --images 100000 --folder /tmp/folder-bench
"""

import argparse
import resource
import time
from pathlib import Path

import numpy as np


def write_folder(root: Path, images: int, size: int, classes: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    per_class = images // classes
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        existing = len(list(folder.iterdir()))
        for i in range(existing, per_class):
            # Smooth random blobs compress like photos do, unlike pure noise.
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.BILINEAR).save(folder / f"{i}.png")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--folder", default="/tmp/autocnn-folder-bench")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cache", choices=["auto", "memory", "none"], default="auto")
    args = parser.parse_args()

    root = Path(args.folder)
    started = time.perf_counter()
    write_folder(root, args.images, args.size, classes=10)
    print(f"folder ready: {args.images} images in {time.perf_counter() - started:.0f}s")

    import keras

    import autocnn
    from autocnn import DataConfig, load_data

    started = time.perf_counter()
    autocnn.show_progress()
    ds = load_data(DataConfig(str(root), cache=args.cache))
    scan = time.perf_counter() - started
    n = len(ds.train) + len(ds.val) + len(ds.test)
    print(f"1. checked {n} files in {scan:.1f}s: {n / scan:.0f} images/s; "
          f"cache in memory: {ds._cache_for(ds.train)}; peak RSS {peak_rss_mib():.0f} MiB")

    train = ds.batches(ds.train, args.batch_size, shuffle=True, seed=0)
    for attempt in ("first pass (decoding)", "second pass (from the cache, if any)"):
        started = time.perf_counter()
        count = sum(int(x.shape[0]) for x, _ in train)
        load = count / (time.perf_counter() - started)
        print(f"2. loader alone, {attempt}: {load:.0f} images/s; "
              f"peak RSS {peak_rss_mib():.0f} MiB")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(ds.input_shape),
        keras.layers.Conv2D(16, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(ds.num_classes, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(train, epochs=1, shuffle=False, verbose=2)
    fit = len(ds.train) / (time.perf_counter() - started)
    print(f"3. one training epoch: {fit:.0f} images/s; loader / training = {load / fit:.1f}x")
    print(f"4. peak RSS of the whole run: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
