"""Training speed by precision and XLA: float32 against mixed precision, XLA off and on, for the
space's default model and VGG-13, through autocnn's pipeline and a bare `model.fit`; and whether
GPU memory grows as needed instead of being taken whole.

Each cell is one `fit` of ``--epochs`` epochs; the first (tracing, XLA's compilation) is left
out and the median images/s of the others reported. Every cell runs in this one process, one
after another, so a busy machine slows them alike. `gpu_check.sh` runs it with a short search;
on a machine without a GPU it measures the CPU, and says so.

    python benchmarks/gpu_check.py                       # Fashion-MNIST, 12,000 images
    python benchmarks/gpu_check.py --dataset digits --models defaults --epochs 2
"""

import argparse
import itertools
import os
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As every process of an autocnn search sets it, before TensorFlow first touches a GPU.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
sys.path.insert(0, str(Path(__file__).parent))

PRECISIONS = ("float32", "mixed_float16")
MODELS = ("defaults", "vgg13")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", help="any autocnn data set")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train", type=int, default=12_000, help="training images an epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="epochs a cell (at least 2)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--xla", default="off,on", help="off, on or both (XLA compiles each "
                        "model afresh: on a CPU that takes longer than the training)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    from fashion_mnist import _arrays, _hardware

    from autocnn import DataConfig, load_data

    dataset = load_data(DataConfig(dataset=args.dataset, data_dir=args.data_dir, seed=args.seed))
    train = dataset.train.take(range(min(args.train, len(dataset.train))))
    arrays = _arrays(train)
    pipeline = dataset.batches(train, 64, shuffle=True, seed=args.seed)
    rows = []
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    head = (f"# Training speed by precision and XLA\n\n"
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {_hardware()}\n"
            f"{dataset.name}, {len(train)} training images an epoch, batch size "
            f"{args.batch_size}; median images/s of {args.epochs - 1} epochs a cell (the "
            f"first, with tracing and compilation, left out)\n\n"
            "| model | parameters | precision | XLA | input | images/s |\n"
            "| --- | --- | --- | --- | --- | --- |\n")
    path = Path(args.output) / "gpu_check.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    xlas = [value.strip() == "on" for value in args.xla.split(",")]
    for model, precision, xla in itertools.product(models, PRECISIONS, xlas):
        for source in ("bare", "autocnn"):
            speed, params = measure(dataset, model, precision, xla, source, arrays, pipeline,
                                    args)
            rows.append((model, f"{params:,}", precision, "on" if xla else "off", source,
                         f"{speed:,.0f}"))
            print(" | ".join(rows[-1]), flush=True)
            # After each cell, so a run stopped early keeps what it measured.
            path.write_text(head + "\n".join(f"| {' | '.join(row)} |" for row in rows) + "\n")
    path.write_text(f"{path.read_text()}\n{memory_line()}")
    print(f"\n{path.read_text()}\nwritten to {path}")


def measure(dataset, model_name, precision, xla, path, arrays, pipeline, args):
    """Images/s of one cell, and the model's parameters."""
    import keras
    import keras_tuner as kt
    from throughput import epoch_timer

    from autocnn import CNNHyperModel, get_preset

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(args.seed)
    rules = get_preset(model_name, dataset.input_shape) if model_name != "defaults" else {}
    hypermodel = CNNHyperModel(dataset.input_shape, dataset.num_classes,
                               rules={**rules, "batch_size": args.batch_size})
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    model.jit_compile = xla
    timer = epoch_timer()
    if path == "bare":
        model.fit(*arrays, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
                  verbose=0, callbacks=[timer])
    else:
        hypermodel.fit(hp, model, pipeline, epochs=args.epochs, shuffle=False, verbose=0,
                       callbacks=[timer])
    keras.mixed_precision.set_global_policy("float32")
    return statistics.median(len(arrays[1]) / s for s in timer.seconds[1:]), model.count_params()


def memory_line() -> str:
    """The first GPU's peak memory in this process against its total: growth as needed takes
    a fraction; without it TensorFlow takes nearly all of the card at once."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "No GPU visible: the figures above are the CPU's.\n"
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30
    total = tf.config.experimental.get_device_details(gpus[0]).get("memory_limit")
    growth = tf.config.experimental.get_memory_growth(gpus[0]) or \
        os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH") == "true"
    return (f"GPU memory: peak {peak:.1f} GiB in this process"
            + (f" of {total / 2**30:.0f} GiB" if total else "")
            + f"; memory growth {'on' if growth else 'OFF: the process takes the whole card'}.\n")


if __name__ == "__main__":
    main()
