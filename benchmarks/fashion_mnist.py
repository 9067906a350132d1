"""Fashion-MNIST: autocnn against the reference CNN and a hand-run KerasTuner search, each given
the same wall-clock budget, on the same train / validation / test split.

1. autocnn: its search, retraining and evaluation, as `autocnn search --tuner auto
   --epochs 20 --patience 4 --trial-fraction 0.25 --time-budget BUDGET` runs it (each trial on a
   quarter of the training images, at 2, 6 or 20 epochs as it earns them, the best then
   trained on all the training and validation images to the budget's end); `autocnn-random` and
   `autocnn-bayesian` are the same with `--tuner random` and `--tuner bayesian` (KerasTuner's
   oracles, warm-started, every trial at the full epochs);
2. the reference CNN (CONV 16 5x5 pad 2 -> BN -> ReLU -> max-pool 2 -> CONV 32 5x5 pad 2 -> BN
   -> ReLU -> max-pool 2 -> dense), trained with Adam until the budget ends, early stopping on
   validation accuracy (best weights restored);
3. KerasTuner's `HyperResNet` and `HyperXception` with `RandomSearch`, as a user would write it
   (images resized to 32x32, the smallest a ResNet takes), stopped at the budget;
4. `autokeras`: AutoKeras 3.0's `ImageClassifier` with its defaults, stopped at the budget,
   in a virtual environment of its own (`--autokeras-python`; see autokeras_run.py);
5. `best-preset`: the best of autocnn's presets on this data, VGG-13, trained alone on all the
   training images, as `autocnn search --space preset:vgg13 --epochs 200 --patience 5
   --no-retrain --time-budget BUDGET` runs it: what a user gets without a search.

`--together` starts the methods at once, each in its own process, sharing the machine, so that
none gets a quieter machine than another (the search against `best-preset` is the comparison
that matters); their rows form their own table.

Each row: test accuracy, macro F1, wall time, trials, the best model's parameters and its
inference speed (images/s, `model.predict` in batches of 256, after a warm-up). The table goes to
OUTPUT/fashion_mnist.md with the hardware it ran on, and is printed.

    python benchmarks/fashion_mnist.py                       # 60 minutes each: about 6 hours
    python benchmarks/fashion_mnist.py --budget 10m --only autocnn,reference
    python benchmarks/fashion_mnist.py --budget 60m --only autocnn,best-preset --together
    python benchmarks/fashion_mnist.py --dataset digits --budget 15s --output /tmp/bench
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METHODS = ("autocnn", "autocnn-random", "autocnn-bayesian", "reference", "hyperresnet",
           "hyperxception", "autokeras", "best-preset")
TOGETHER = "## Started together, sharing the machine"
COLUMNS = ("method", "budget", "test accuracy", "macro F1", "wall time", "trials",
           "parameters", "inference images/s", "finished (UTC)", "machine")
HEADER = f"| {' | '.join(COLUMNS)} |\n|{'|'.join(' --- ' for _ in COLUMNS)}|\n"


def main(argv=None):
    from autocnn import parse_duration

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="60m", help="wall-clock budget per method (60m, 90s)")
    parser.add_argument("--dataset", default="fashion_mnist", help="any autocnn data set")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train", type=int, default=None, help="use only this many training "
                        "images (and a fifth as many validation and test images): a smoke run")
    parser.add_argument("--trial-fraction", type=float, default=0.25,
                        help="autocnn's --trial-fraction: the share of the training images each "
                             "trial trains on (the best is retrained on all)")
    parser.add_argument("--only", default=None,
                        help="comma-separated methods (default: all of them, autokeras where "
                             "its environment is given)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--autokeras-python", default=None,
                        help="the Python of AutoKeras's own virtual environment (default: "
                             "$AUTOKERAS_PYTHON), for --only autokeras")
    parser.add_argument("--together", action="store_true",
                        help="start the methods at once, each in its own process, sharing the "
                             "machine; their rows form a table of their own")
    args = parser.parse_args(argv)
    budget = parse_duration(args.budget)
    methods = ([m.strip() for m in args.only.split(",") if m.strip()] if args.only else
               [m for m in METHODS if m != "autokeras" or _autokeras_python(args)])
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    if "autokeras" in methods and _autokeras_python(args) is None:
        parser.error("autokeras runs in a virtual environment of its own: python3.11 -m venv "
                     ".autokeras && .autokeras/bin/pip install autokeras==3.0.0 'keras==3.12.*' "
                     "tensorflow tensorboard, then --autokeras-python .autokeras/bin/python")

    if args.together:
        return run_together(methods, args)
    import keras

    from autocnn import DataConfig, load_data

    dataset = _data(load_data(DataConfig(dataset=args.dataset, data_dir=args.data_dir,
                                         seed=args.seed)), args)
    print(dataset.summary(), flush=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in methods:
        print(f"\n== {method}: {args.budget}", flush=True)
        keras.utils.set_random_seed(args.seed)
        keras.backend.clear_session()
        started = time.monotonic()
        row = RUNNERS[method](dataset, budget, args)
        row.update(method=method, seconds=time.monotonic() - started, budget=args.budget,
                   when=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}", machine=_machine())
        rows.append(row)
        print(_format_row(row), flush=True)
        # After each method, so a long run keeps what it has; rows of methods this run did not
        # rerun stay, when they ran on the same data.
        path = out / "fashion_mnist.md"
        table = report(rows, dataset, args,
                       _earlier_rows(path, dataset, args.seed, methods, args.budget),
                       _earlier_runs(path, dataset, args.seed))
        (out / "fashion_mnist.md").write_text(table)
        curves = keep_curves(out / "fashion_mnist_curves.json", _data_line(dataset, args.seed),
                             rows)
        if curves:
            plot_anytime(curves, out / "fashion_mnist_anytime.png")
    print(f"\n{table}\nwritten to {out / 'fashion_mnist.md'}")


def _data(dataset, args):
    """The data set, or its first ``--train`` images."""
    return _subset(dataset, args.train) if args.train else dataset


def _subset(dataset, train: int):
    import dataclasses

    small = max(train // 5, dataset.num_classes)
    def first(split, count):
        return split.take(range(min(count, len(split))))

    return dataclasses.replace(dataset, train=first(dataset.train, train),
                               val=first(dataset.val, small), test=first(dataset.test, small))


def run_autocnn(dataset, budget, args, tuner="auto"):
    return _search_row(dataset, args, tuner=tuner, max_trials=1000, epochs=20, patience=4,
                       trial_fraction=args.trial_fraction, time_budget=budget)


def _search_row(dataset, args, **settings):
    """An autocnn search with ``settings``: its test scores and anytime curve, or no scores
    when the budget ended before a trial did."""
    import autocnn
    from autocnn import DataConfig, SearchConfig, SearchError, run_search

    with tempfile.TemporaryDirectory() as folder:
        config = SearchConfig(
            data=DataConfig(dataset=args.dataset, data_dir=args.data_dir, seed=args.seed),
            seed=args.seed, register=False, tracking_uri=f"sqlite:///{folder}/mlflow.db",
            tuner_dir=f"{folder}/tuner", project="benchmark", **settings)
        autocnn.show_progress()
        try:
            result = run_search(config, dataset=dataset)
        except SearchError as err:
            print(err, flush=True)
            return {"trials": 0}
        curve = anytime(config.tracking_uri, result.run_id)
    if result.metrics:  # the row scores each image alone, as every other method's does
        print(f"autocnn's own test accuracy, the training flips "
              f"({result.best_hyperparameters.get('flip', 'none')}) averaged in: "
              f"{result.metrics['accuracy']:.4f}", flush=True)
    return {**_scores(result.model, dataset, dataset.test), "curve": curve,
            "trials": result.trials_completed + result.trials_failed}


def anytime(tracking_uri: str, run_id: str) -> list[tuple[float, float]]:
    """(seconds since the search began, the best validation accuracy so far), at the end of
    each epoch of the search's trials (their MLflow child runs keep each epoch's metrics with
    the time it was logged); the final training is not among them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    ends = sorted(((m.timestamp - parent.info.start_time) / 1000, m.value)
                  for r in children for m in client.get_metric_history(r.info.run_id,
                                                                       "val_accuracy"))
    curve, best = [], 0.0
    for seconds, score in ends:
        best = max(best, score)
        curve.append((seconds, best))
    return curve


def keep_curves(path: Path, data_line: str, rows, run: str | None = None) -> list[dict]:
    """The anytime curves kept in ``path`` for this data, with those of ``rows`` replacing
    their methods' at the same budget: of the methods run alone ("autocnn at 60m"), or of the
    ``run`` of methods started together (a name such as "autocnn vs best-preset at 60m"). The
    file keeps them for later runs."""
    import json

    stored = json.loads(path.read_text()) if path.exists() else {}
    if stored.get("data") != data_line:
        stored = {"data": data_line}
    if run is None:  # one curve a method and budget (kept by method alone before)
        curves = stored["alone"] = {
            key if " at " in key else f"{key} at {kept['budget']}": {"method": key, **kept}
            for key, kept in stored.get("alone", {}).items()}
    else:  # one comparison: the methods started together this time
        curves = stored.setdefault("together", {})[run] = {}
    for row in rows:
        if row.get("curve"):
            key = row["method"] if run else f"{row['method']} at {row['budget']}"
            curves[key] = {"method": row["method"], "budget": row["budget"], "each": "epoch",
                           "curve": row["curve"]}
    path.write_text(json.dumps(stored, indent=1))
    return _curve_rows(curves)


def _curve_rows(curves: dict) -> list[dict]:
    """Kept curves (name -> method, budget and curve) as rows for plot_anytime."""
    return [{"method": name, **kept} for name, kept in curves.items()]


def plot_anytime(rows, path: Path) -> None:
    """Each method's best validation accuracy against wall time, one PNG (``rows``: each
    with its method, budget and curve), a panel for each budget: curves of different budgets
    are not to be compared."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = curves_by_budget(rows)
    methods = sorted({row["method"] for drawn in panels.values() for row in drawn})
    colors = {method: f"C{i % 10}" for i, method in enumerate(methods)}  # alike in each panel
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1.5, 4.2),
                                squeeze=False)
    for axis, (budget, drawn) in zip(axes[0], panels.items()):
        _draw_panel(axis, budget, drawn, colors)
    axes[0][0].set_ylabel("best validation accuracy so far")
    title = ("Anytime performance, at each epoch's end (autocnn's searches: their trials', "
             "the final training not shown; older curves as the legend says)")
    figure.suptitle(textwrap.fill(title, 55 * len(panels)), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def curves_by_budget(rows) -> dict[str, list[dict]]:
    """The rows that have a curve, grouped by budget, the shortest budget first."""
    from autocnn import parse_duration

    drawn = [row for row in rows if row.get("curve")]
    budgets = sorted({row["budget"] for row in drawn}, key=parse_duration)
    return {budget: [row for row in drawn if row["budget"] == budget] for budget in budgets}


def _draw_panel(axis, budget: str, rows, colors: dict) -> None:
    for row in rows:
        seconds, scores = zip(*row["curve"])
        # Markers: a method of one trial has one point, which a step line alone hides.
        each = " (each trial's end)" if _each_trial(row) else ""
        axis.step([s / 60 for s in seconds], scores, where="post", marker="o",
                  markersize=4, color=colors[row["method"]], label=f"{row['method']}{each}")
    axis.set(xlabel="minutes since the method began", title=f"budget {budget}")
    axis.set_ylim(bottom=max(0.0, min(min(s for _, s in r["curve"]) for r in rows) - 0.02))
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize=8)


def _each_trial(row) -> bool:
    """Whether a kept curve has a point at each trial's end only: an autocnn search's before
    its curves were taken at each epoch's end (those name it)."""
    return row.get("each", "trial" if row["method"].startswith("autocnn") or
                   row["method"] == "best-preset" else "epoch") == "trial"


def reference_cnn(input_shape, classes):
    """The course notes' CNN: two 5x5 convolutions (16 and 32 filters, padding 2) with batch
    norm, ReLU and 2x2 max-pooling, then a dense softmax layer."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(16, 5, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 5, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(classes, activation="softmax"),
    ])


def run_reference(dataset, budget, args):
    import keras

    from autocnn import StopAt

    curve = _epoch_curve()
    model = reference_cnn(dataset.input_shape, dataset.num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _arrays(dataset.train)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=5,
                                         restore_best_weights=True)
    model.fit(x, y, batch_size=64, epochs=10_000, validation_data=_arrays(dataset.val),
              callbacks=[stop, StopAt(_deadline(budget)), curve], verbose=2)
    return {**_scores(model, dataset, dataset.test), "trials": 1, "curve": curve.points}


def _epoch_curve():
    """The anytime curve of a method that is not autocnn's: a Keras callback that notes, at
    each epoch's end, the seconds since it was made and the best validation accuracy so far
    (over every trial of a KerasTuner search, which copies its callbacks for each trial: the
    copies share the notes)."""
    import keras

    class EpochCurve(keras.callbacks.Callback):
        def __init__(self, started=None, points=None):
            super().__init__()
            self.started = time.time() if started is None else started
            self.points = [] if points is None else points

        def __deepcopy__(self, memo):
            return EpochCurve(self.started, self.points)

        def on_epoch_end(self, epoch, logs=None):
            score = (logs or {}).get("val_accuracy")
            if score is not None:
                best = max([score, *(s for _, s in self.points)])
                self.points.append((time.time() - self.started, float(best)))

    return EpochCurve()


def run_hyperresnet(dataset, budget, args):
    import keras_tuner as kt

    return _keras_tuner(kt.applications.HyperResNet, dataset, budget, args)


def run_hyperxception(dataset, budget, args):
    import keras_tuner as kt

    return _keras_tuner(kt.applications.HyperXception, dataset, budget, args)


def _keras_tuner(application, dataset, budget, args):
    """RandomSearch over a KerasTuner application, stopped at the budget: no trial starts after
    it, and the running one stops there (its partial epoch is validated)."""
    import keras
    import keras_tuner as kt

    from autocnn import StopAt

    deadline = _deadline(budget)
    curve = _epoch_curve()

    class OutOfTime(Exception):
        pass

    class TimedRandomSearch(kt.RandomSearch):
        def pre_create_trial(self):
            if time.time() >= deadline:
                raise OutOfTime

    size = max(32, *dataset.input_shape[:2])  # a ResNet needs 32x32 at least
    resize = _resizer(size)
    x, y = _arrays(dataset.train)
    val = _arrays(dataset.val)
    # The applications compile with categorical cross-entropy: one-hot labels.
    y, val = (keras.utils.to_categorical(y, dataset.num_classes),
              (val[0], keras.utils.to_categorical(val[1], dataset.num_classes)))
    hypermodel = application(input_shape=(size, size, dataset.input_shape[2]),
                             classes=dataset.num_classes)
    with tempfile.TemporaryDirectory() as folder:
        tuner = TimedRandomSearch(hypermodel, objective="val_accuracy", max_trials=10_000,
                                  seed=args.seed, directory=folder, project_name="p")
        try:
            tuner.search(resize(x), y, epochs=20, validation_data=(resize(val[0]), val[1]),
                         callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=3),
                                    StopAt(deadline), curve], verbose=2)
        except OutOfTime:
            pass
        trials = len(tuner.oracle.trials)
        best = tuner.oracle.get_best_trials(1)
        if not best or best[0].status != "COMPLETED" or best[0].score is None:
            return {"trials": trials, "curve": curve.points}
        model = tuner.get_best_models(1)[0]
        return {**_scores(model, dataset, dataset.test, resize), "trials": trials,
                "curve": curve.points}


def run_autokeras(dataset, budget, args):
    """AutoKeras 3.0's ImageClassifier as a user would run it (its defaults, every image),
    stopped at the budget, in its own virtual environment (``--autokeras-python``): it needs
    Keras 3.12 (with 3.15 it fails on ``Dense(units=...)`` given a numpy integer) and
    tensorboard. See autokeras_run.py."""
    import json
    import subprocess

    import numpy as np

    python = _autokeras_python(args)
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        x_train, y_train = _arrays(dataset.train)
        x_val, y_val = _arrays(dataset.val)
        np.savez(Path(folder) / "data.npz", x_train=x_train, y_train=y_train, x_val=x_val,
                 y_val=y_val, x_test=_arrays(dataset.test)[0])
        subprocess.run([python, str(Path(__file__).parent / "autokeras_run.py"), folder,
                        str(_deadline(budget)), str(args.seed)], check=True)
        result = json.loads((Path(folder) / "result.json").read_text())
    # Its curve is timed in its own process, by the clock: from this method's start here.
    curve = [(seconds - started, score) for seconds, score in result.get("curve", [])]
    if result["predicted"] is None:
        return {"trials": result["trials"], "curve": curve}
    return {**_row_scores(dataset, dataset.test.labels, np.array(result["predicted"]),
                          result["parameters"], result["images_per_second"]),
            "trials": result["trials"], "curve": curve}


def _autokeras_python(args) -> str | None:
    python = args.autokeras_python or os.environ.get("AUTOKERAS_PYTHON")
    return python if python and Path(python).exists() else None


def _deadline(budget: float) -> float:
    # What the budget leaves after the final evaluation (as autocnn keeps for its own).
    return time.time() + budget - min(max(0.05 * budget, 5.0), 60.0)


def _arrays(split):
    images = split.images.astype("float32")
    if split.images.dtype.kind == "u":
        images /= 255.0
    return images, split.labels


def _resizer(size):
    def resize(images):
        import numpy as np
        import tensorflow as tf

        if images.shape[1:3] == (size, size):
            return images
        return np.concatenate([tf.image.resize(images[i:i + 4096], (size, size)).numpy()
                               for i in range(0, len(images), 4096)])

    return resize


def _scores(model, dataset, split, prepare=lambda images: images):
    """Test accuracy and macro F1, parameters, and images per second through ``predict``."""
    import numpy as np

    images, labels = _arrays(split)
    images = prepare(images)
    model.predict(images[:256], batch_size=256, verbose=0)  # warm-up: tracing, allocation
    started = time.perf_counter()
    predicted = np.argmax(model.predict(images, batch_size=256, verbose=0), axis=-1)
    speed = len(images) / (time.perf_counter() - started)
    return _row_scores(dataset, labels, predicted, model.count_params(), speed)


def _row_scores(dataset, labels, predicted, parameters: int, speed: float) -> dict:
    """A row's scores from the test split's predicted labels."""
    from autocnn import compute_metrics

    metrics = compute_metrics(labels, predicted, dataset.class_names)
    return {"accuracy": metrics["accuracy"], "f1": metrics["f1_macro"],
            "parameters": parameters, "images_per_second": speed}


def _format_row(row) -> str:
    def number(key, spec):
        return format(row[key], spec) if row.get(key) is not None else "no trial finished"

    from autocnn import format_duration

    return (f"| {row['method']} | {row['budget']} | {number('accuracy', '.4f')} | "
            f"{number('f1', '.4f')} | {format_duration(row['seconds'])} | "
            f"{row.get('trials', 0)} | {number('parameters', ',')} | "
            f"{number('images_per_second', ',.0f')} | {row['when']} | {row['machine']} |")


def report(rows, dataset, args, earlier=(), together=()) -> str:
    """The markdown tables, with what they ran on: the methods run alone, a table for each
    budget (rows at different budgets are not to be compared); ``earlier``: rows kept from a
    previous run; ``together``: a table of its own for each set of methods started together,
    as (methods, rows)."""
    alone = _by_budget([*earlier, *(_format_row(row) for row in rows)])
    runs = "".join(f"\n### {', '.join(methods)}, {_budget(run[0])}\n\n{HEADER}"
                   + "\n".join(run) + "\n" for methods, run in together)
    pairs = (f"\n{TOGETHER}\n\nStarted at the same time, each in its own process, on the "
             f"same machine: a table for each run.\n{runs}") if together else ""
    return (f"# {dataset.name}: the same wall-clock budget for each method\n\n"
            f"{_data_line(dataset, args.seed)}\nThe latest run's machine: {_hardware()}\n\n"
            f"Each alone on the machine, a table for each budget.\n{alone}{pairs}")


def _by_budget(lines) -> str:
    """The rows (table lines) as a table for each budget, the shortest budget first."""
    from autocnn import parse_duration

    budgets = sorted({_budget(line) for line in lines}, key=parse_duration)
    return "".join(f"\n### {budget}\n\n{HEADER}"
                   + "\n".join(line for line in lines if _budget(line) == budget) + "\n"
                   for budget in budgets)


def _data_line(dataset, seed) -> str:
    return (f"{dataset.name}: {len(dataset.train)} train / {len(dataset.val)} validation / "
            f"{len(dataset.test)} test images; seed {seed}")


def _earlier_rows(path: Path, dataset, seed, methods, budget=None) -> list[str]:
    """The rows of the methods run alone in a table written before on the same data and split,
    in the table's order, but for those of ``methods`` at ``budget`` (this run's)."""
    if not _same_data(path, dataset, seed):
        return []
    alone = path.read_text().partition(TOGETHER)[0]
    rows = [line for line in alone.splitlines() if line.startswith("| ")
            and not line.startswith(("| method |", "| --- |"))]  # no table's header lines
    return [row for row in rows if _method(row) not in methods or _budget(row) != budget]


def _earlier_runs(path: Path, dataset, seed, methods=None,
                  budget=None) -> list[tuple[list[str], list[str]]]:
    """The tables of methods started together written before on the same data and split, as
    (methods, rows), but for a run of the same ``methods`` at the same ``budget`` (a new run
    replaces it; one at another budget is another comparison)."""
    if not _same_data(path, dataset, seed):
        return []
    runs = []
    for table in path.read_text().partition(TOGETHER)[2].split("\n### ")[1:]:
        rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
        same = sorted(map(_method, rows)) == sorted(methods or ()) and \
            {_budget(row) for row in rows} == {budget}
        if rows and not same:
            runs.append(([_method(row) for row in rows], rows))
    return runs


def _same_data(path: Path, dataset, seed) -> bool:
    return path.exists() and _data_line(dataset, seed) in path.read_text().splitlines()


def _method(row: str) -> str:
    return row.split("|")[1].strip()


def _budget(row: str) -> str:
    return row.split("|")[2].strip()


def _machine() -> str:
    """The CPU's model and cores, and the GPUs', short, for a row of the table."""
    return _hardware().split(";")[0]


def _hardware() -> str:
    import tensorflow as tf

    import autocnn

    cpu = autocnn.cpu_model()
    gpus = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    return (f"{cpu}, {os.cpu_count()} cores, " + (", ".join(gpus) if gpus else "no GPU")
            + f"; Python {sys.version.split()[0]}, TensorFlow {tf.__version__}")


def run_best_preset(dataset, budget, args):
    """VGG-13 alone, as `autocnn search --space preset:vgg13 --epochs 200 --patience 5
    --no-retrain --time-budget BUDGET` trains it: one trial on all the training images."""
    return _search_row(dataset, args, preset="vgg13", tuner="random", max_trials=1, epochs=200,
                       patience=5, retrain=False, time_budget=budget)


def run_together(methods, args) -> None:
    """Start every method at once in its own process (this script, one method each), wait for
    all, and write their rows as the table of methods started together."""
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        started = {}
        for method in methods:
            command = [sys.executable, __file__, "--only", method, "--output",
                       f"{folder}/{method}", *_shared_arguments(args)]
            log = open(f"{folder}/{method}.log", "w")
            started[method] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            log.close()  # the child has its own copy
            print(f"started {method}: its progress in {folder}/{method}.log", flush=True)
        rows, curves = [], []
        for method, process in started.items():
            table = Path(f"{folder}/{method}/fashion_mnist.md")
            if process.wait() or not table.exists():
                sys.exit(f"{method} failed (exit status {process.returncode}): "
                         + Path(f"{folder}/{method}.log").read_text()[-2000:])
            rows += [row for row in table.read_text().splitlines()
                     if row.startswith(f"| {method} |")]
            # The search's closing lines (its trials, finalists and summary), before the log goes.
            log_lines = Path(f"{folder}/{method}.log").read_text().splitlines()
            print(f"\n== {method}\n" + "\n".join(log_lines[-40:]), flush=True)
            curves += _curves(Path(f"{folder}/{method}/fashion_mnist_curves.json"))
    from autocnn import DataConfig, load_data

    dataset = _data(load_data(DataConfig(dataset=args.dataset, data_dir=args.data_dir,
                                         seed=args.seed)), args)
    path = Path(args.output) / "fashion_mnist.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_runs(path, dataset, args.seed, methods, args.budget)
    path.write_text(report([], dataset, args, _earlier_rows(path, dataset, args.seed, ()),
                           [*earlier, (methods, rows)]))
    run = f"{' vs '.join(methods)} at {args.budget}"
    kept = keep_curves(path.parent / "fashion_mnist_curves.json", _data_line(dataset, args.seed),
                       curves, run)
    if kept:
        name = run.replace(" at ", "_").replace(" ", "_")
        plot_anytime(kept, path.parent / f"fashion_mnist_together_{name}.png")
    print(f"\n{path.read_text()}\nwritten to {path}")


def _curves(path: Path) -> list[dict]:
    """A child's rows of curves (method, budget, curve), from its curves file."""
    import json

    if not path.exists():
        return []
    return _curve_rows(json.loads(path.read_text()).get("alone", {}))


def _shared_arguments(args) -> list[str]:
    shared = ["--budget", args.budget, "--dataset", args.dataset, "--seed", str(args.seed),
              "--trial-fraction", str(args.trial_fraction)]
    if args.data_dir:
        shared += ["--data-dir", args.data_dir]
    if args.train:
        shared += ["--train", str(args.train)]
    if args.autokeras_python:
        shared += ["--autokeras-python", args.autokeras_python]
    return shared


RUNNERS = {"autocnn": run_autocnn, "best-preset": run_best_preset,
           "autocnn-random": lambda dataset, budget, args: run_autocnn(dataset, budget, args,
                                                                       tuner="random"),
           "autocnn-bayesian": lambda dataset, budget, args: run_autocnn(dataset, budget, args,
                                                                         tuner="bayesian"),
           "reference": run_reference, "hyperresnet": run_hyperresnet,
           "hyperxception": run_hyperxception, "autokeras": run_autokeras}

if __name__ == "__main__":
    main()
