"""What a shared search survives, for real: the tracking server (over PostgreSQL) killed and
started again mid-search, the chief killed and started again with the same command while its
workers go on, and a tracking server gone for longer than MLflow's retries (the trial it cut
off runs again)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import postgres_servers

pytestmark = pytest.mark.slow

SEARCH = [sys.executable, "-m", "autocnn", "search", "--dataset", "digits", "--max-trials", "4",
          "--tuner", "random", "--epochs", "4", "--patience", "4", "--seed", "7",
          "--set", "family=plain", "--set", "num_blocks=1", "--set", "padding=same",
          "--set", "stride=1", "--image-size", "32x32", "--no-register"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def server(postgres, tmp_path):
    """`autocnn server` over the throwaway PostgreSQL cluster (each test its own project)."""
    server = postgres_servers.TrackingServer(postgres[0], tmp_path / "server", workers=1)
    yield server.start()
    server.stop()


class Lines:
    """A process's output read in a thread, line by line, with a wait for a line."""

    def __init__(self, process):
        self.process, self.lines, self._new = process, [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 240) -> str:
        until = time.monotonic() + timeout
        with self._new:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found or time.monotonic() > until or self.process.poll() is not None:
                    assert found, f"no {text!r} in:\n{self.text}"
                    return found
                self._new.wait(1)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def start(command, **kwargs):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**ENV, **kwargs.pop("env", {})}, **kwargs)
    return Lines(process)


def trial_runs(url, project):
    """The search's one parent run and its trial runs, active and deleted, by trial id."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(project).experiment_id
    parents = client.search_runs([experiment], "tags.`autocnn.role` = 'search'")
    assert len(parents) == 1
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = "
                              f"'{parents[0].info.run_id}'", run_view_type=ViewType.ALL)
    active = {}
    for run in runs:
        if run.info.lifecycle_stage == "active":
            active.setdefault(run.data.tags["trial_id"], []).append(run)
    deleted = [run for run in runs if run.info.lifecycle_stage == "deleted"]
    epochs = {trial: [m.step for m in client.get_metric_history(found[0].info.run_id,
                                                                "val_accuracy")]
              for trial, found in active.items()}
    return parents[0], active, deleted, epochs


def assert_every_trial_once(url, project, output, deleted_runs=0):
    """Each of the 4 trials once, finished, with its 4 epochs of metrics; the parent finished."""
    parent, active, deleted, epochs = trial_runs(url, project)
    assert parent.info.status == "FINISHED", output
    assert sorted(active) == ["0", "1", "2", "3"], output
    assert all(len(runs) == 1 and runs[0].info.status == "FINISHED"
               for runs in active.values()), output
    assert all(steps == [0, 1, 2, 3] for steps in epochs.values()), (epochs, output)
    assert len(deleted) == deleted_runs, output
    return parent


def test_the_tracking_server_killed_mid_search_and_restarted(server, workdir):
    """MLflow's client retries (about 4 minutes) cover a restart: nothing fails or is lost."""
    chief = start([*SEARCH, "--workers", "2", "--tracking-uri", server.url,
                   "--project", "outage"])
    chief.wait_for("started on worker-1")
    time.sleep(2)
    server.kill()
    went = time.monotonic()
    time.sleep(8)
    server.start()
    # Well inside the retries, however slowly a loaded machine starts the server again: a
    # longer outage is the last test's case.
    assert time.monotonic() - went < 120
    assert chief.process.wait(timeout=400) == 0, chief.text
    assert "4 completed, 0 failed" in chief.text
    assert_every_trial_once(server.url, "outage", chief.text)


def test_a_chief_killed_and_restarted_keeps_its_workers_and_their_trials(server, workdir):
    address = f"127.0.0.1:{postgres_servers.free_port()}"  # the same port after the restart
    command = [*SEARCH, "--distributed", "chief", "--oracle-address", address,
               "--worker-timeout", "90s", "--tracking-uri", server.url, "--project", "restart"]
    chief = start(command)
    chief.wait_for("oracle serving on")
    workers = [start([sys.executable, "-m", "autocnn", "worker", "--oracle-address", address,
                      "--worker-id", name]) for name in ("w1", "w2")]
    line = chief.wait_for("started on w1")
    running = line.split("trial ")[1].split()[0]  # "N/4"
    time.sleep(2)
    chief.process.send_signal(signal.SIGKILL)
    chief.process.wait(timeout=30)
    again = start(command)  # the same command, while the workers wait for it
    assert again.process.wait(timeout=400) == 0, again.text
    for worker in workers:
        assert worker.process.wait(timeout=60) == 0, worker.text  # never restarted
    said = again.text + "".join(w.text for w in workers)
    assert f"{running} was running on w1 when the chief stopped" in again.text, said
    # w1 waited for the chief and went on. Its heartbeat may say "answers again" or not: a
    # restarted chief can finish the search before the next beat.
    assert "w1: the chief at" in said and "does not answer" in workers[0].text, said
    assert "trials run; the search is over" in workers[0].text, said
    assert "4 completed, 0 failed" in again.text, said
    # No trial ran twice: no run was left behind to delete; the search resumed once.
    parent = assert_every_trial_once(server.url, "restart", said, deleted_runs=0)
    assert parent.data.tags["autocnn.resumes"] == "1"


def test_a_trial_cut_off_by_a_long_outage_runs_again(tmp_path, workdir):
    """With MLflow's retries shortened to a second, the server is gone longer than they last:
    the trial it cut off runs again once the server answers, and ends with one run."""
    server = postgres_servers.TrackingServer(f"sqlite:///{tmp_path}/mlflow.db",
                                             tmp_path / "server", workers=1).start()
    try:
        search = start([*SEARCH, "--max-trials", "3", "-v", "--tracking-uri", server.url,
                        "--project", "lost"],
                       env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"})
        search.wait_for("Epoch 2/4")  # the first trial's second epoch: one epoch logged
        server.kill()
        search.wait_for("the trial runs again once it answers")
        server.start()
        assert search.process.wait(timeout=400) == 0, search.text
        assert "3 completed, 0 failed" in search.text
        parent, active, deleted, epochs = trial_runs(server.url, "lost")
        assert sorted(active) == ["0", "1", "2"] and len(deleted) == 1, search.text
        assert deleted[0].data.tags["trial_id"] == "0"  # the run the outage cut off
        assert all(steps == [0, 1, 2, 3] for steps in epochs.values()), epochs
    finally:
        server.stop()
