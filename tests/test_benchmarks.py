"""A smoke run of the Fashion-MNIST benchmark: a tiny budget on a subset, through its command
line, writing its table (the benchmark itself runs with `make bench`)."""

import subprocess
import sys
from pathlib import Path

from autocnn.sources import DEBIAN_FASHION_DIR

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "fashion_mnist.py"


def test_the_benchmark_writes_its_table(tmp_path):
    dataset = "fashion_mnist" if Path(DEBIAN_FASHION_DIR).is_dir() else "digits"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", dataset, "--train", "500", "--budget", "20s",
         "--only", "autocnn,reference,hyperresnet", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "fashion_mnist.md").read_text()
    assert f"# {dataset}: 20s per method" in table
    assert "500 train / 100 validation / 100 test images" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| method", "| autocnn", "| reference", "| hyperresnet"]
    autocnn = rows[1].split(" | ")
    assert 0.1 < float(autocnn[1]) <= 1 and int(autocnn[5].replace(",", "")) > 0
    assert "cores" in table  # the hardware it ran on


def test_an_unknown_method_is_refused():
    result = subprocess.run([sys.executable, str(SCRIPT), "--only", "autokeras"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown method autokeras" in result.stderr
