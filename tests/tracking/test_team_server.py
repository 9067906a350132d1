"""A team's setup, for real: a throwaway PostgreSQL cluster, `autocnn server` over it, and a
chief with two workers searching through that server; the database password shown nowhere."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from autocnn.errors import TrackingError
from autocnn.tracking.store import check_database, redact


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster of its own in a temporary folder, on a free local port, with a
    password; run as the postgres user when the tests run as root (PostgreSQL refuses root)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or \
        [p for p in [shutil.which("initdb")] if p]
    if not found:
        pytest.skip("no PostgreSQL here: apt-get install postgresql (.ci/run does)")
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="autocnn-pg-"))  # /tmp: reachable by postgres
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    password = f"pw-{uuid.uuid4().hex[:12]}"
    (folder / "password").write_text(password)
    if as_user:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "password", "postgres")
    port = free_port()
    data = folder / "data"
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "autocnn",
                    "-A", "scram-sha-256", "--pwfile", folder / "password"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log",
                    "-w", "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
                    "start"], check=True, capture_output=True)
    try:
        subprocess.run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                        "autocnn", "mlflow"], check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": password})
        yield f"postgresql://autocnn:{password}@127.0.0.1:{port}/mlflow", password
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """`autocnn server` over the cluster, artifacts served from a temporary folder."""
    uri, _ = postgres
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "autocnn", "server", "--artifacts", str(folder / "artifacts"),
         "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "AUTOCNN_DB": uri}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5)
            break
        except OSError:
            time.sleep(1)
    assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
    yield url, folder / "server.log"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def test_a_password_is_redacted_wherever_it_would_be_shown():
    assert redact("postgresql://ml:s3cret@db.lan:5432/mlflow") == \
        "postgresql://ml:***@db.lan:5432/mlflow"
    assert redact("postgresql://db.lan/mlflow") == "postgresql://db.lan/mlflow"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_a_database_the_server_cannot_use_is_one_clear_line():
    with pytest.raises(TrackingError, match=r"not a database autocnn serves"):
        check_database("mysql://ml:s3cret@db.lan/mlflow")
    with pytest.raises(TrackingError) as error:
        check_database(f"postgresql://ml:s3cret@127.0.0.1:{free_port()}/mlflow")
    message = str(error.value)
    assert message.startswith("cannot use the database postgresql://ml:***@127.0.0.1:")
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.slow
def test_a_chief_and_two_workers_search_through_a_server_on_postgresql(postgres, server,
                                                                         workdir):
    from mlflow.tracking import MlflowClient

    _, password = postgres
    url, server_log = server
    command = [sys.executable, "-m", "autocnn", "search", "--dataset", "digits",
               "--max-trials", "4", "--epochs", "2", "--seed", "3", "--set", "family=plain",
               "--set", "num_blocks=1", "--workers", "2", "--tracking-uri", url,
               "--project", "team"]
    chief = subprocess.run(command, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = chief.stdout + chief.stderr
    assert chief.returncode == 0, output[-3000:]
    assert "4 completed, 0 failed" in output

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("team")
    parents = client.search_runs([experiment.experiment_id],
                                 filter_string="tags.`autocnn.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trials = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert sorted(r.data.tags["trial_id"] for r in trials) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" for r in trials)
    version = client.get_model_version_by_alias("team", "champion")
    assert version.run_id == parents[0].info.run_id
    assert client.list_artifacts(parents[0].info.run_id, "report")  # served artifacts

    # The password: nowhere in the console, the server's log, a run's params or tags.
    shown = output + server_log.read_text()
    for run in [*parents, *trials]:
        shown += repr(run.data.params) + repr(run.data.tags)
    assert password not in shown
    assert "over postgresql://autocnn:***@127.0.0.1" in server_log.read_text()
