"""Training throughput: autocnn's `tf.data` pipeline against a bare `model.fit` on the same
in-memory arrays, side by side in one run.

One fixed model (the search space's defaults for the data) trains alternately through
`model.fit(x, y, batch_size=..., shuffle=True)` on float32 arrays prepared beforehand (the bare
baseline) and through the path a trial takes: `Dataset.pipeline` (uint8 images scaled in the
pipeline, shuffled, prefetched) rebatched to the trial's batch size by the hypermodel's `fit`.
Each round runs one `fit` of each with ``--epochs`` epochs; the first epoch of every `fit`
(tracing, setting up its input) is left out, and the median images/s of the others reported.
Alternating makes a noisy machine slow both alike. The table goes to OUTPUT/throughput.md.

    python benchmarks/throughput.py                        # Fashion-MNIST, 12,000 images
    python benchmarks/throughput.py --dataset digits --rounds 3
"""

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", help="any autocnn data set")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train", type=int, default=12_000, help="training images an epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="fits of each, alternating")
    parser.add_argument("--epochs", type=int, default=3, help="epochs a fit (at least 2)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    import keras
    import keras_tuner as kt
    from fashion_mnist import _arrays, _hardware

    from autocnn import CNNHyperModel, DataConfig, load_data

    dataset = load_data(DataConfig(dataset=args.dataset, data_dir=args.data_dir, seed=args.seed))
    train = dataset.train.take(range(min(args.train, len(dataset.train))))
    x, y = _arrays(train)
    keras.utils.set_random_seed(args.seed)
    hypermodel = CNNHyperModel(dataset.input_shape, dataset.num_classes,
                               rules={"batch_size": args.batch_size})
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    # 64 a batch, as a search's input yields them (each trial rebatches to its own size).
    pipeline = dataset.batches(train, 64, shuffle=True, seed=args.seed)

    def bare(timer):
        model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
                  verbose=0, callbacks=[timer])

    def through_autocnn(timer):
        hypermodel.fit(hp, model, pipeline, epochs=args.epochs, shuffle=False, verbose=0,
                       callbacks=[timer])

    speeds = {"bare": [], "autocnn": []}
    for round_ in range(1, args.rounds + 1):
        for name, fit in (("bare", bare), ("autocnn", through_autocnn)):
            timer = epoch_timer()
            fit(timer)
            speeds[name] += [len(train) / seconds for seconds in timer.seconds[1:]]
        print(f"round {round_}: bare {speeds['bare'][-1]:,.0f} images/s, autocnn "
              f"{speeds['autocnn'][-1]:,.0f} images/s", flush=True)
    bare_speed, autocnn_speed = (statistics.median(speeds[k]) for k in ("bare", "autocnn"))
    table = (f"# Training throughput: autocnn's pipeline against a bare model.fit\n\n"
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {_hardware()}\n"
             f"{dataset.name}, {len(train)} training images an epoch, batch size "
             f"{args.batch_size}, the space's default model ({model.count_params():,} "
             f"parameters); median of {len(speeds['bare'])} epochs each ({args.rounds} "
             f"alternating fits of {args.epochs} epochs, the first epoch of each left out)\n\n"
             "| input | images/s | ratio to bare |\n| --- | --- | --- |\n"
             f"| bare `model.fit` on float32 arrays | {bare_speed:,.0f} | 1.00 |\n"
             f"| autocnn's `tf.data` pipeline | {autocnn_speed:,.0f} | "
             f"{autocnn_speed / bare_speed:.2f} |\n")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text(table)
    print(f"\n{table}\nwritten to {out / 'throughput.md'}")


def epoch_timer():
    """A Keras callback that keeps each epoch's seconds (``.seconds``)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.began)

    return EpochTimer()


if __name__ == "__main__":
    main()
