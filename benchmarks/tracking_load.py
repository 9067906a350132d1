"""Many processes logging trials through one MLflow tracking server, over SQLite and over
PostgreSQL, side by side in one run.

Each of N processes logs what a trial of a search logs: a child run under one parent run, 30
hyperparameters, EPOCHS epochs of 4 metrics (one request an epoch, as a trial's callback sends
them), a small text artifact, and its end status. All N start together. For each store and N:
runs and metric values written per second (wall time from the first start to the last end),
the slowest process's logging time, and what went wrong, read back from the server afterwards:
runs missing, metric values missing, runs left RUNNING, and processes whose logging raised
(all must be 0). Both stores sit behind the same `autocnn server` (4 worker processes),
artifacts served, on this machine.

    python benchmarks/tracking_load.py                                   # 16 and 32, both
    python benchmarks/tracking_load.py --processes 4 --stores sqlite --output /tmp/load
"""

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import postgres  # noqa: E402  (benchmarks/postgres.py)

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per run
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
COLUMNS = ("store", "processes", "runs/s", "metric values/s", "slowest process (s)",
           "runs lost", "values lost", "left RUNNING", "errors")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="16,32", help="comma-separated process counts")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    rows = []
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="autocnn-load-") as folder, \
                _database(store, Path(folder)) as db, \
                postgres.tracking_server(db, Path(folder) / "server") as server:
            for count in counts:
                rows.append((store, count, *load(server.url, count, args.epochs)))
                print(_row(rows[-1]), flush=True)
    _write(Path(args.output), rows, args.epochs)


@contextlib.contextmanager
def _database(store: str, folder: Path):
    if store == "sqlite":
        yield f"sqlite:///{folder}/mlflow.db"
    else:
        with postgres.cluster() as (uri, _):
            yield uri


def load(url: str, count: int, epochs: int) -> tuple:
    """``count`` processes logging a trial each under a new parent run of ``url``: runs/s,
    values/s, the slowest process's seconds, runs lost, values lost, runs left RUNNING, errors."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment = client.create_experiment(f"load-{count}-{time.time_ns()}")
    parent = client.create_run(experiment, run_name="search").info.run_id
    context = multiprocessing.get_context("spawn")
    # All start at once, after every process has imported MLflow (about a second each).
    start_at = time.time() + 10 + count
    with context.Pool(count) as pool:
        results = pool.starmap(log_trial, [(url, experiment, parent, i, epochs, start_at)
                                           for i in range(count)])
    seconds = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    client.set_terminated(parent)
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'",
                              max_results=10000)
    values = sum(len(client.get_metric_history(run.info.run_id, key))
                 for run in runs for key in METRICS)
    errors = [error for _, _, error in results if error]
    for error in sorted(set(errors)):
        print(f"  {errors.count(error)} processes: {error}")
    return (len(runs) / seconds, values / seconds, max(e - s for s, e, _ in results),
            count - len(runs), count * epochs * len(METRICS) - values,
            sum(run.info.status == "RUNNING" for run in runs), len(errors))


def log_trial(url: str, experiment: str, parent: str, index: int, epochs: int,
              start_at: float):
    """One trial's logging, as a search's worker does it, from ``start_at`` (wall clock): its
    start and end (wall clock) and its error ("" when none)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    try:
        client = MlflowClient(url)
        run = client.create_run(experiment, run_name=f"trial-{index + 1:02d}",
                                tags={"mlflow.parentRunId": parent, "trial_id": str(index)})
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(f"hp_{k}", str(k * index)) for k in range(30)])
        for epoch in range(epochs):
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(key, 1.0 / (epoch + 1), now, epoch)
                                              for key in METRICS])
        client.log_text(run_id, f"trial {index}\n" * 20, "summary.txt")
        client.set_terminated(run_id, "FINISHED")
    except Exception as err:  # what the row counts, with the first line of why
        return started, time.time(), f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return started, time.time(), ""


def _row(row) -> str:
    store, count, runs, values, slowest, *lost = row
    cells = [store, str(count), f"{runs:.1f}", f"{values:.0f}", f"{slowest:.1f}",
             *(str(n) for n in lost)]
    return "| " + " | ".join(cells) + " |"


def _write(folder: Path, rows, epochs: int) -> None:
    import autocnn

    folder.mkdir(parents=True, exist_ok=True)
    machine = f"{autocnn.cpu_model()}, {multiprocessing.cpu_count()} cores"
    lines = ["# Tracking load: many processes through one MLflow server", "",
             f"Each process logs one trial ({epochs} epochs of {len(METRICS)} metrics, 30 "
             f"params, an artifact); {time.strftime('%Y-%m-%d %H:%M')}, {machine}.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|",
             *(_row(row) for row in rows), ""]
    (folder / "tracking_load.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
