"""A smoke run of the Fashion-MNIST benchmark: a tiny budget on a subset, through its command
line, writing its table (the benchmark itself runs with `make bench`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from autocnn.data.sources import DEBIAN_FASHION_DIR

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "fashion_mnist.py"


def run_benchmark(dataset, budget, only, output, *flags):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", dataset, "--train", "500", "--budget", budget,
         "--only", only, "--output", str(output), *flags],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (output / "fashion_mnist.md").read_text()
    return table, [line.split(" | ") for line in table.splitlines()
                   if line.startswith("| ") and "---" not in line and "| method" not in line]


def test_the_benchmark_writes_its_table(tmp_path):
    dataset = "fashion_mnist" if Path(DEBIAN_FASHION_DIR).is_dir() else "digits"
    # 25 s: the search's set-up (its MLflow store, the data) takes up to 10 s of a cold
    # machine's budget, and a search refuses a first trial it cannot finish.
    table, rows = run_benchmark(dataset, "25s", "autocnn,hyperresnet", tmp_path)
    assert f"{dataset}: 500 train / 100 validation / 100 test images; seed 42" in table
    assert [row[:2] for row in rows] == [["| autocnn", "25s"], ["| hyperresnet", "25s"]]
    autocnn = rows[0]
    # Scored, not necessarily learned: on a slow machine 25 s leave one epoch on 125 images.
    assert 0 <= float(autocnn[2]) <= 1 and int(autocnn[5]) >= 1
    assert int(autocnn[6].replace(",", "")) > 0
    assert "cores" in table  # the hardware it ran on
    assert (tmp_path / "fashion_mnist_anytime.png").stat().st_size > 5000  # autocnn's curve
    # A later run of one method at another budget adds its row; the others stay.
    table, again = run_benchmark(dataset, "5s", "reference", tmp_path)
    assert [row[:2] for row in again] == [["| reference", "5s"], ["| autocnn", "25s"],
                                          ["| hyperresnet", "25s"]]
    assert again[1] == autocnn and table.index("### 5s") < table.index("### 25s")
    # Methods started together get a table of their own; the others' rows stay.
    table, together = run_benchmark(dataset, "30s", "best-preset,reference", tmp_path,
                                    "--together")
    alone, pair = table.split("## Started together, sharing the machine")
    assert "| reference | 5s |" in alone and "| best-preset |" not in alone
    assert [row[:2] for row in together] == [*(row[:2] for row in again),
                                             ["| best-preset", "30s"], ["| reference", "30s"]]
    assert 0 < float(together[-2][2]) <= 1  # VGG-13 alone trained and was scored
    assert "### best-preset, reference, 30s" in pair
    # The anytime curves are kept for later runs, each method's: autocnn's at each of its
    # trials' epochs, the others' at each epoch's end (when one ended within the budget).
    curves = json.loads((tmp_path / "fashion_mnist_curves.json").read_text())
    assert {"autocnn at 25s", "reference at 5s"} <= set(curves["alone"])
    assert curves["alone"]["autocnn at 25s"]["each"] == "epoch"
    assert set(curves["alone"]) <= {"autocnn at 25s", "hyperresnet at 25s", "reference at 5s"}
    assert set(curves["together"]) == {"best-preset vs reference at 30s"}
    pair_curves = curves["together"]["best-preset vs reference at 30s"]
    assert set(pair_curves) == {"best-preset", "reference"}
    reference = [score for _, score in pair_curves["reference"]["curve"]]
    assert reference == sorted(reference) and 0 < reference[-1] <= 1  # the best so far
    assert (tmp_path / "fashion_mnist_anytime.png").stat().st_size > 5000
    assert (tmp_path / "fashion_mnist_together_best-preset_vs_reference_30s.png").stat() \
        .st_size > 5000


def test_an_unknown_method_is_refused():
    result = subprocess.run([sys.executable, str(SCRIPT), "--only", "autosklearn"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown method autosklearn" in result.stderr


def test_autokeras_without_its_own_environment_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--only", "reference,autokeras",
                             "--autokeras-python", str(tmp_path / "none"), "--output",
                             str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "AUTOKERAS_PYTHON": ""})
    assert result.returncode == 2
    assert "autokeras runs in a virtual environment of its own" in result.stderr
    assert not (tmp_path / "fashion_mnist.md").exists()  # the reference did not run either


def test_the_gpu_check_measures_every_cell_and_says_what_it_ran_on(tmp_path):
    script = SCRIPT.parent / "gpu_check.py"
    result = subprocess.run(
        [sys.executable, str(script), "--dataset", "digits", "--models", "defaults", "--train",
         "256", "--epochs", "2", "--xla", "off", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text()
    cells = [line.split(" | ") for line in table.splitlines() if line.startswith("| defaults")]
    assert [cell[2:5] for cell in cells] == [
        [precision, "off", source] for precision in ("float32", "mixed_float16")
        for source in ("bare", "autocnn")]
    assert all(float(cell[5].rstrip(" |").replace(",", "")) > 0 for cell in cells)
    assert "No GPU visible: the figures above are the CPU's." in table  # this machine has none


def test_each_run_of_methods_started_together_keeps_a_table_of_its_own(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import fashion_mnist as bench

    dataset = SimpleNamespace(name="digits", train=range(8), val=range(2), test=range(2))
    args = SimpleNamespace(seed=1)
    path = tmp_path / "fashion_mnist.md"

    def row(method, accuracy, budget="1m"):
        return bench._format_row({"method": method, "budget": budget, "accuracy": accuracy,
                                  "f1": accuracy, "seconds": 60, "trials": 3,
                                  "parameters": 10, "images_per_second": 5.0,
                                  "when": "2026-12-01 10:00", "machine": "a CPU, 2 cores"})

    def run_together(*rows):
        methods = [r.split("|")[1].strip() for r in rows]
        earlier = bench._earlier_runs(path, dataset, 1, methods, rows[0].split("|")[2].strip())
        path.write_text(bench.report([], dataset, args, [], [*earlier, (methods, list(rows))]))
        return bench._earlier_runs(path, dataset, 1)

    run_together(row("autocnn", 0.9), row("best-preset", 0.8))
    runs = run_together(row("autocnn", 0.7), row("autocnn-random", 0.6))
    assert [methods for methods, _ in runs] == [["autocnn", "best-preset"],
                                                ["autocnn", "autocnn-random"]]
    assert "| autocnn | 1m | 0.9000 |" in runs[0][1][0] and "a CPU, 2 cores |" in runs[0][1][0]
    # A new run of the same methods replaces theirs; the other run's table stays.
    runs = run_together(row("autocnn", 0.95), row("best-preset", 0.85))
    assert [methods for methods, _ in runs] == [["autocnn", "autocnn-random"],
                                                ["autocnn", "best-preset"]]
    assert "| autocnn | 1m | 0.9500 |" in runs[1][1][0]
    assert "### autocnn, best-preset, 1m" in path.read_text()
    # The same methods at another budget are another comparison: both tables stay.
    runs = run_together(row("autocnn", 0.97, "5m"), row("best-preset", 0.96, "5m"))
    assert [(methods, rows[0].split("|")[2].strip()) for methods, rows in runs] == [
        (["autocnn", "autocnn-random"], "1m"), (["autocnn", "best-preset"], "1m"),
        (["autocnn", "best-preset"], "5m")]
    assert bench._earlier_runs(path, SimpleNamespace(name="other", train=range(8), val=range(2),
                                                     test=range(2)), 1) == []  # other data


def test_a_method_run_alone_keeps_a_row_for_each_budget(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import fashion_mnist as bench

    dataset = SimpleNamespace(name="digits", train=range(8), val=range(2), test=range(2))
    path = tmp_path / "fashion_mnist.md"

    def run_alone(method, budget, accuracy):
        row = {"method": method, "budget": budget, "accuracy": accuracy, "f1": accuracy,
               "seconds": 60, "trials": 3, "parameters": 10, "images_per_second": 5.0,
               "when": "2026-12-01 10:00", "machine": "a CPU, 2 cores"}
        earlier = bench._earlier_rows(path, dataset, 1, [method], budget)
        path.write_text(bench.report([row], dataset, SimpleNamespace(seed=1), earlier))
        return [(bench._method(r), bench._budget(r), r.split("|")[3].strip())
                for r in bench._earlier_rows(path, dataset, 1, ())]

    run_alone("autocnn", "15m", 0.92)
    assert run_alone("autocnn", "60m", 0.93) == [("autocnn", "15m", "0.9200"),
                                                 ("autocnn", "60m", "0.9300")]
    assert run_alone("reference", "60m", 0.88)[-1] == ("reference", "60m", "0.8800")
    assert run_alone("autocnn", "15m", 0.925) == [("autocnn", "15m", "0.9250"),  # replaced
                                                  ("autocnn", "60m", "0.9300"),
                                                  ("reference", "60m", "0.8800")]
    # A table for each budget, the shortest first: rows at different budgets are not compared.
    text = path.read_text()
    assert text.count("| method | budget |") == 2 and text.index("### 15m") < text.index("### 60m")


def test_the_anytime_plot_draws_a_panel_for_each_budget(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import fashion_mnist as bench

    rows = [{"method": "autocnn", "budget": "60m", "curve": [(30, 0.8), (90, 0.9)]},
            {"method": "reference", "budget": "90s", "curve": [(20, 0.7)]},
            {"method": "autocnn", "budget": "90s", "curve": [(10, 0.6), (60, 0.75)]},
            {"method": "autokeras", "budget": "60m", "curve": []}]  # no trial in its budget
    panels = bench.curves_by_budget(rows)
    assert list(panels) == ["90s", "60m"]  # the shortest budget first, not in the rows' order
    assert [row["method"] for row in panels["90s"]] == ["reference", "autocnn"]
    assert [row["method"] for row in panels["60m"]] == ["autocnn"]
    bench.plot_anytime(rows, tmp_path / "anytime.png")
    assert (tmp_path / "anytime.png").stat().st_size > 5000


def test_the_tracking_load_benchmark_counts_what_reached_the_server(tmp_path):
    script = SCRIPT.parent / "tracking_load.py"
    result = subprocess.run([sys.executable, str(script), "--processes", "2", "--stores",
                             "sqlite", "--epochs", "3", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "tracking_load.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| sqlite"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:2] == ["sqlite", "2"] and float(cells[2]) > 0
    assert cells[5:] == ["0", "0", "0", "0"]  # nothing lost, none left RUNNING, no error


def test_the_recipe_benchmark_keeps_another_seeds_run_beside_the_default_ones(tmp_path):
    def run(*flags):
        result = subprocess.run(
            [sys.executable, str(SCRIPT.parent / "recipe.py"), "--dataset", "digits", "--train",
             "200", "--epochs", "1", "--models", "defaults", "--variants", "own recipe",
             "--output", str(tmp_path), *flags], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run()
    run("--seed", "7")
    default, repeat = (tmp_path / "recipe.md").read_text(), (tmp_path / "recipe_seed7.md")
    assert "seed 42" in default and "seed 7" in repeat.read_text()
    assert "| defaults | own recipe | 1 |" in default  # the repeat did not replace it
    assert "| defaults | own recipe | 1 |" in repeat.read_text()


def finalist_benchmark(name, output, epochs):
    """The rows of a finalist benchmark's smoke run on 400 digits (VGG-13, a 2-epoch share)."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / f"{name}.py"), "--dataset", "digits", "--train",
         "400", "--share-epochs", "2", "--epochs", str(epochs), "--output", str(output)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in
            (output / f"{name}.md").read_text().splitlines() if line.startswith("| vgg13")]


def test_the_finalist_schedule_benchmark_trains_a_share_then_both_schedules(tmp_path):
    rows = finalist_benchmark("finalist_schedule", tmp_path, epochs=2)
    assert [row[1:4] for row in rows] == [["a quarter", "2", "its own"], ["all", "2", "its own"],
                                          ["all", "2", "cosine over them"]]
    assert all(0 < float(row[5]) <= 1 for row in rows)  # test accuracy, scored


def test_the_finalist_data_benchmark_gives_train_and_val_together_as_many_steps(tmp_path):
    rows = finalist_benchmark("finalist_data", tmp_path, epochs=3)
    # 400 training and 100 validation images: 3 epochs of 400 are about 2 of 500.
    assert [row[1:5] for row in rows] == [["42", "a quarter of train", "2", "the best"],
                                          ["42", "train", "3", "the best"],
                                          ["42", "train + val", "2", "the last"]]
    assert rows[2][5] == "-" and 0 < float(rows[1][5]) <= 1  # no validation left to score
    assert all(0 < float(row[6]) <= 1 for row in rows)  # test accuracy, scored


def test_a_search_s_anytime_curve_has_a_point_at_each_epoch_of_its_trials(tmp_path,
                                                                          monkeypatch):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import fashion_mnist as bench

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench")
    parent = client.create_run(experiment, start_time=1_000_000)
    for epochs in ([0.5, 0.7], [0.6, 0.65, 0.9]):  # two trials, as a search logs them
        child = client.create_run(experiment, tags={"mlflow.parentRunId": parent.info.run_id})
        client.log_batch(child.info.run_id, metrics=[
            Metric("val_accuracy", score, 1_000_000 + 1000 * (len(epochs) * 10 + step), step)
            for step, score in enumerate(epochs)])
    curve = bench.anytime(uri, parent.info.run_id)
    # Each epoch's end, in time order, the best so far: 20 s 0.5, 21 s 0.7, 30 s 0.6 ...
    assert curve == [(20.0, 0.5), (21.0, 0.7), (30.0, 0.7), (31.0, 0.7), (32.0, 0.9)]
    # Curves kept before say they are per trial (autocnn's searches) or per epoch (the others).
    assert bench._each_trial({"method": "best-preset", "curve": curve})
    assert not bench._each_trial({"method": "best-preset", "each": "epoch", "curve": curve})
    assert not bench._each_trial({"method": "reference", "curve": curve})
