"""Distributed search: the chief's bookkeeping in-process with a fake clock, then a chief and two
local workers on digits with one worker killed mid-trial, and the errors a worker can meet."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import keras_tuner as kt
import pytest

from autocnn.config import DataConfig, SearchConfig
from autocnn.distributed import protocol, restart
from autocnn.distributed import worker as worker_link
from autocnn.distributed.chief import Chief
from autocnn.distributed.protocol import Address
from autocnn.errors import ConfigError, DistributedError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def oracle(tmp_path, max_trials=4):
    made = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=max_trials, seed=1)
    made._set_project_dir(str(tmp_path), "p")
    hp = kt.HyperParameters()
    hp.Int("units", 1, 64)
    made.update_space(hp)
    return made


def chief(tmp_path, **kwargs):
    return Chief(oracle(tmp_path), Address("127.0.0.1", 0), {"config": {}}, worker_timeout=10,
                 clock=Clock(), **kwargs)


def ask(chief, worker):
    return chief.create_trial(worker, lambda: chief.oracle.create_trial(worker))


def test_addresses_parse_and_bad_ones_say_the_form():
    assert Address.parse("10.0.0.5:8000") == Address("10.0.0.5", 8000)
    assert Address.parse(":8000") == Address("127.0.0.1", 8000)
    assert Address.parse("") == Address("127.0.0.1", 0)
    assert str(Address.parse("[::1]:9000")) == "[::1]:9000"
    for bad in ("host", "host:port", "host:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            Address.parse(bad)


def test_keras_tuner_settings_are_set_within_and_restored(monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "before")
    with protocol.keras_tuner_role(Address("10.1.2.3", 8000), "worker-1"):
        from keras_tuner.src.distribute import utils

        assert utils.has_chief_oracle() and not utils.is_chief_oracle()
        assert os.environ["KERASTUNER_ORACLE_PORT"] == "8000"
    assert "KERASTUNER_ORACLE_IP" not in os.environ
    assert os.environ["KERASTUNER_TUNER_ID"] == "before"


def test_a_silent_workers_trial_goes_to_the_next_worker(tmp_path, progress):
    made, lines = chief(tmp_path), progress
    for worker in ("w1", "w2"):
        made.beat({"worker": worker, "host": "h", "pid": 1, "hello": True})
    first = ask(made, "w1")
    assert ask(made, "w1").trial_id == first.trial_id  # asked again: the same trial
    made.clock.now = 5
    made.beat({"worker": "w2", "host": "h", "pid": 1})
    assert made.reassign_silent() == []  # 5 s of silence is within the timeout
    made.clock.now = 11
    made.beat({"worker": "w2", "host": "h", "pid": 1})
    assert made.reassign_silent() == [first.trial_id]
    assert "w1" not in made.oracle.ongoing_trials
    assert ask(made, "w2").trial_id == first.trial_id  # w2 takes it over
    assert any("silent" in line and "back in the queue" in line for line in lines)


def test_a_worker_restarted_in_time_takes_its_trial_back(tmp_path):
    made = chief(tmp_path)
    made.beat({"worker": "w1", "host": "h", "pid": 1, "hello": True})
    first = ask(made, "w1")
    made.clock.now = 4  # killed; back with a new process within the timeout
    reply = made.beat({"worker": "w1", "host": "h", "pid": 1, "hello": True})
    assert "manifest" in reply and made.reassign_silent() == []
    assert ask(made, "w1").trial_id == first.trial_id


def test_a_restarted_chief_keeps_the_running_trials_for_their_workers(tmp_path, progress):
    first = chief(tmp_path)
    first.beat({"worker": "w1", "host": "h", "pid": 1, "hello": True})
    running = ask(first, "w1")  # then the chief is killed: only its files are left
    reloaded = oracle(tmp_path)
    reloaded.reload()  # as keras-tuner's tuner does: the running trial is queued to run again
    assert reloaded._retry_queue == [running.trial_id]
    again = Chief(reloaded, Address("127.0.0.1", 0), {"config": {}}, worker_timeout=10,
                  clock=Clock())
    assert restart.take_back(reloaded, 4, 10) == [running.trial_id]
    assert reloaded._retry_queue == [] and reloaded.ongoing_trials["w1"] is not None
    assert any("1/4 was running on w1 when the chief stopped" in line for line in progress)
    assert ask(again, "w2").trial_id != running.trial_id  # not handed to another worker
    again.clock.now = 4
    again.beat({"worker": "w1", "host": "h", "pid": 1, "trial": running.trial_id,
                "seconds": 30.0})  # the worker outlived its chief and goes on
    assert again.roster.ended(running.trial_id) == (30.0, "w1")  # timed from its start
    again.clock.now = 15  # silent since: now it goes back in the queue
    again.beat({"worker": "w2", "host": "h", "pid": 2})
    assert again.reassign_silent() == [running.trial_id]


def test_a_worker_waits_for_a_restarted_chief_and_goes_on(tmp_path, capfd):
    made = chief(tmp_path)
    made.manifest = {"config": {"worker_timeout": 8, "seed": 3}, "search_id": "s1"}
    address = made.listen()
    link = worker_link.Link(address, "w1", connect_timeout=10)
    try:
        link.running("00")
        made.close(grace=0)
        time.sleep(3)  # a beat (every 2 s here) finds no chief
        again = Chief(oracle(tmp_path / "b"), address, made.manifest, worker_timeout=8)
        again.listen()
        said, until = "", time.monotonic() + 15
        while "answers again" not in said and time.monotonic() < until:
            time.sleep(0.2)
            said += capfd.readouterr().err
        assert again.roster.workers["w1"]["trial"] == "00"
        assert "does not answer; waiting up to 8s for it" in said and "answers again" in said
        again.close()
    finally:
        link.close()


def test_one_worker_id_in_two_live_processes_is_refused(tmp_path):
    made = chief(tmp_path)
    made.beat({"worker": "w1", "host": "a", "pid": 1, "hello": True})
    reply = made.beat({"worker": "w1", "host": "b", "pid": 2, "hello": True})
    assert "in use by process 1 on a" in reply["error"]
    made.beat({"worker": "w1", "host": "a", "pid": 1, "bye": "stopped"})
    assert "error" not in made.beat({"worker": "w1", "host": "b", "pid": 2, "hello": True})


def test_the_chief_ends_at_the_budget_and_tells_workers_to_stop(tmp_path):
    from autocnn.search import budget as budgets

    made = chief(tmp_path)
    clock = Clock()
    budget = budgets.SearchBudget(budgets.Clock(10, clock=clock))
    clock.now = 10
    assert made.serve(budget=budget, poll=0.01) == "time budget"
    trial = ask(made, "w9")
    assert trial.status == "STOPPED" and "w9" in made.told_to_stop


def test_the_chief_ends_when_its_trials_are_used(tmp_path):
    made = chief(tmp_path)
    made.oracle.max_trials = made.total_trials = 1
    made.beat({"worker": "w1", "host": "h", "pid": 1, "hello": True})
    trial = ask(made, "w1")
    ended = []
    thread = threading.Thread(target=lambda: ended.append(made.serve(
        on_trial_end=lambda t, seconds, worker: ended.append((t.trial_id, worker)), poll=0.01)))
    thread.start()
    trial.status = "COMPLETED"
    made.oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    made.oracle.end_trial(trial)
    assert ask(made, "w1").status == "STOPPED"
    thread.join(timeout=20)
    assert ended == [(trial.trial_id, "w1"), None]


def test_a_second_chief_on_a_port_in_use_fails_clearly(tmp_path):
    first = chief(tmp_path)
    address = first.listen()
    try:
        second = Chief(oracle(tmp_path / "b"), address, {})
        with pytest.raises(DistributedError, match=f"cannot listen on {address}"):
            second.listen()
    finally:
        first.close()


def test_a_worker_meets_the_chief_and_gets_the_search(tmp_path):
    made = chief(tmp_path)
    made.manifest = {"config": {"worker_timeout": 10, "seed": 3}, "run_id": "r"}
    address = made.listen()
    try:
        link = worker_link.Link(address, "w1", connect_timeout=10)
        assert link.manifest["run_id"] == "r" and link.seed == 3
        link.trial = "00"
        made.deadline = time.time() + 100  # the chief's budget, as seconds left to the worker
        link.send()
        assert made.roster.workers["w1"]["trial"] == "00"
        assert 95 < link.deadline - time.time() <= 100
        link.send(ended={"trial": "00", "message": "Traceback ...\nValueError: boom",
                         "epoch_seconds": 1.5})
        assert made.roster.messages == {"00": "Traceback ...\nValueError: boom"}
        assert made.roster.epoch_seconds == {"00": 1.5}
        link.close("time budget")
        assert made.roster.left == {"w1": "time budget"}
    finally:
        made.close()


def test_a_worker_that_cannot_work_here_says_so_and_leaves(tmp_path):
    made = chief(tmp_path)
    made.manifest = {"config": {"worker_timeout": 10, "seed": 3,
                                "tuner_dir": str(tmp_path / "elsewhere")},
                     "project_name": "p", "search_id": "s1"}
    address = made.listen()
    try:
        with pytest.raises(DistributedError, match="is not on this machine"):
            worker_link.join(address, "w1", connect_timeout=10)
        assert made.roster.left == {"w1": "error"}
    finally:
        made.close()


def test_the_chief_waits_for_workers_a_while_after_the_last_leaves(tmp_path):
    made = Chief(oracle(tmp_path), Address("127.0.0.1", 0), {}, worker_timeout=0.5)
    made.beat({"worker": "w1", "host": "h", "pid": 1, "hello": True})
    made.beat({"worker": "w1", "host": "h", "pid": 1, "bye": "error"})
    started = time.monotonic()
    assert made.serve(poll=0.01) == "no workers"
    assert time.monotonic() - started >= 0.5  # another worker could have joined meanwhile


def test_settings_travel_to_workers_and_back():
    config = SearchConfig(data=DataConfig(image_size=(16, 16)), workers=2, space={"filters": [8]})
    back = SearchConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config))))
    assert back == config


def test_options_that_only_make_sense_together_are_checked():
    with pytest.raises(ConfigError, match="--distributed chief"):
        SearchConfig(oracle_address="127.0.0.1:8000")
    with pytest.raises(ConfigError, match="choose one"):
        SearchConfig(workers=2, isolate=True)


def test_a_worker_needs_the_chiefs_folder_and_store(tmp_path, monkeypatch):
    project = tmp_path / "tuner" / "p"
    project.mkdir(parents=True)
    (project / "autocnn.json").write_text(json.dumps({"search_id": "s1"}))
    manifest = {"config": {"tuner_dir": str(tmp_path / "tuner")}, "project_name": "p",
                "search_id": "s1", "tracking_uri": "http://127.0.0.1:5000",
                "chief_host": "elsewhere"}
    assert worker_link.check_shared(manifest, None) == project
    with pytest.raises(DistributedError, match="--tuner-dir"):
        worker_link.check_shared({**manifest, "search_id": "other"}, None)
    with pytest.raises(DistributedError, match="make mlflow-server"):
        worker_link.check_tracking(manifest, None)
    assert worker_link.check_tracking(manifest, "http://mlflow:5000") == "http://mlflow:5000"
    here = {**manifest, "chief_host": socket.gethostname()}
    assert worker_link.check_tracking(here, None) == "http://127.0.0.1:5000"


def test_the_batch_size_searched_is_per_replica(monkeypatch):
    import numpy as np
    import tensorflow as tf

    from autocnn.space import hypermodel as space
    from autocnn.space import transfer

    seen = []
    monkeypatch.setattr(transfer, "rebatch", lambda data, size: seen.append(size) or data)
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    hypermodel = space.CNNHyperModel((8, 8, 1), 2, rules={"batch_size": 16, "num_blocks": 1},
                                     strategy=two_replicas)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 8, 8, 1), "float32"), np.array([0, 1, 0, 1]))).batch(4)
    hypermodel.fit(hp, model, data, epochs=1, verbose=0)
    assert seen == [32]


def test_an_unreachable_chief_is_one_line_and_status_2(workdir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "autocnn", "worker", "--oracle-address", f"127.0.0.1:{port}",
         "--worker-id", "w1", "--connect-timeout", "1s"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot reach the chief's oracle at 127.0.0.1:{port} within 1s: start the chief "
        f"first (autocnn search --distributed chief --oracle-address 127.0.0.1:{port}), and "
        "check the address and that the port is open to this machine"]


def test_a_chief_and_two_workers_finish_the_search_when_one_is_killed(workdir):
    """Every trial is run and recorded once, though worker-1 is SIGKILLed in its first trial."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir}/mlruns/mlflow.db"
    command = [sys.executable, "-m", "autocnn", "search", "--dataset", "digits",
               "--max-trials", "5", "--epochs", "4", "--patience", "4", "--seed", "5",
               "--set", "family=plain", "--set", "padding=same", "--set", "stride=1",
               "--set", "num_blocks=1", "--workers", "2", "--worker-timeout", "6s",
               "--no-register", "--tracking-uri", uri, "--project", "d"]
    started = time.monotonic()
    chief = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, pids, killed = [], {}, None
    for line in chief.stdout:
        lines.append(line)
        if line.startswith("started worker-"):
            name, pid = line.split()[1], int(line.split("pid ")[1].split(")")[0].rstrip(","))
            pids[name] = pid
        if killed is None and "started on worker-1" in line:
            time.sleep(1.5)  # into the trial: its model is built and training
            os.kill(pids["worker-1"], signal.SIGKILL)
            killed = line.split()[1]  # "N/5"
    assert chief.wait(timeout=60) == 0, "".join(lines)
    assert time.monotonic() - started < 300
    output = "".join(lines)
    assert killed is not None, output
    assert "worker worker-1 has been silent" in output
    assert f"trial {int(killed.split('/')[0])} goes back in the queue" in output

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("d")
    parent = client.search_runs([experiment.experiment_id],
                                filter_string="tags.`autocnn.role` = 'search'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    trials = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")
    ids = sorted(run.data.tags["trial_id"] for run in trials)
    assert ids == ["0", "1", "2", "3", "4"], output  # each trial once, the killed one rerun
    assert all(run.info.status == "FINISHED" for run in trials), output
    assert "5 completed, 0 failed" in output


def test_a_mirrored_search_trains_and_retrains_under_the_strategy(tmp_path, progress):
    """On this CPU machine MirroredStrategy has one replica: the wiring, not the speed."""
    import tensorflow as tf

    from autocnn.search.run import run_search

    config = SearchConfig(max_trials=1, epochs=1, seed=3, strategy="mirrored", register=False,
                          tracking_uri=f"sqlite:///{tmp_path}/db.db", project="m",
                          tuner_dir=str(tmp_path / "tuner"), space={"num_blocks": 1})
    lines = progress
    result = run_search(config)
    assert any("1 replicas" in line and "MirroredStrategy" in line for line in lines)
    assert result.trials_completed == 1 and result.retrain_epochs == 1
    assert isinstance(result.model.distribute_strategy, tf.distribute.MirroredStrategy)
    assert result.metrics["accuracy"] > 0.1
