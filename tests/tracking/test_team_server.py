"""A team's setup, for real: a throwaway PostgreSQL cluster, `autocnn server` over it, and a
chief with two workers searching through that server; the database password shown nowhere."""

import os
import subprocess
import sys

import pytest
from conftest import postgres_servers

from autocnn.errors import TrackingError
from autocnn.tracking.store import check_database, redact, redact_text


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """`autocnn server` over the cluster, artifacts served from a temporary folder."""
    with postgres_servers.tracking_server(postgres[0], tmp_path_factory.mktemp("server"),
                                          workers=1) as found:
        yield found


def test_a_password_is_redacted_wherever_it_would_be_shown():
    assert redact("postgresql://ml:s3cret@db.lan:5432/mlflow") == \
        "postgresql://ml:***@db.lan:5432/mlflow"
    assert redact("postgresql://db.lan/mlflow") == "postgresql://db.lan/mlflow"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    # A pipeline's file and its stages' commands, shown and logged.
    assert redact_text("stages:\n  - search: {tracking_uri: 'postgresql+psycopg://ml:s3:cret@h"
                       "/db', dataset: http://x/a}") == \
        "stages:\n  - search: {tracking_uri: 'postgresql+psycopg://ml:***@h/db', dataset: http://x/a}"


def test_a_database_the_server_cannot_use_is_one_clear_line():
    with pytest.raises(TrackingError, match=r"not a database autocnn serves"):
        check_database("mysql://ml:s3cret@db.lan/mlflow")
    with pytest.raises(TrackingError) as error:
        check_database(f"postgresql://ml:s3cret@127.0.0.1:{postgres_servers.free_port()}/mlflow")
    message = str(error.value)
    assert message.startswith("cannot use the database postgresql://ml:***@127.0.0.1:")
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.slow
def test_a_chief_and_two_workers_search_through_a_server_on_postgresql(postgres, server,
                                                                         workdir):
    from mlflow.tracking import MlflowClient

    _, password = postgres
    url, server_log = server.url, server.log_path
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
