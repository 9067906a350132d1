"""A tuner's role in a distributed search, passed in when the tuner is made: the chief, which
serves its oracle to workers (with local workers and a local MLflow server when asked), or a
worker, which runs the trials the chief hands out. The search process alone is tuners.Role."""

import contextlib
import dataclasses
import logging
import socket
from pathlib import Path

from autocnn import data, devices
from autocnn.distributed.chief import Chief
from autocnn.distributed.processes import LocalWorkers, TrackingServer
from autocnn.errors import DistributedError
from autocnn.search.trial_runs import outcome
from autocnn.search.tuners import Role, StopSearch, seed_trial
from autocnn.tracking import resolve_tracking_uri
from autocnn.tracking.store import redact

log = logging.getLogger(__name__)


class ChiefRole(Role):
    """Serve the tuner's oracle at ``address`` until the workers have run the trials (or the
    budget, Ctrl-C or the workers' silence end it); MLflow then agrees with the oracle."""

    def __init__(self, config, tracker, address):
        self.config, self.tracker, self.address = config, tracker, address

    def search(self, tuner, run) -> None:
        tuner.oracle.verbose = self.config.verbose  # as keras-tuner's chief does
        with self._serving(tuner) as (chief, local_workers):
            tuner.save()
            tuner.runs.reconcile(tuner.oracle, chief.taken_back)
            reason = chief.serve(
                tuner.budget, tuner.stop, local_workers=local_workers,
                on_trial_end=lambda trial, seconds, worker: self._ended(
                    tuner, chief, trial, seconds, worker))
            tuner.runs.reconcile(tuner.oracle)  # a requeued trial reruns on resume: no run now
        if reason:
            raise StopSearch(reason)

    def _ended(self, tuner, chief, trial, seconds, worker) -> None:
        tuner.times.ended(trial.trial_id, seconds, chief.roster.epoch_seconds.get(trial.trial_id))
        tuner.say_passed_over()
        tuner.ended(trial, outcome(trial), seconds, where=f" on {worker}")

    @contextlib.contextmanager
    def _serving(self, tuner):
        """The Chief listening at the address (and ``config.workers`` local workers), with a
        local MLflow server for them over a SQLite store."""
        config, project = self.config, Path(tuner.project_dir)
        with contextlib.ExitStack() as stack:
            uri = self.tracker.tracking_uri
            if not uri.startswith(("sqlite:", "http://", "https://")):
                raise DistributedError(
                    f"the workers cannot log to {redact(uri)} directly (its password would go "
                    "to every worker): serve it with `autocnn server --db URI` and pass "
                    "--tracking-uri http://HOST:5000")
            if uri.startswith("sqlite:"):
                server = TrackingServer(uri, resolve_tracking_uri(uri)[1],
                                        project / "mlflow-server.log")
                stack.callback(server.stop)
                uri = server.uri
                log.info(f"MLflow tracking server for the workers on {uri} (over "
                         f"{self.tracker.tracking_uri})")
            chief = Chief(tuner.oracle, self.address, manifest(config, self.tracker, uri),
                          config.worker_timeout, config.trial_limit)
            address = chief.listen()
            stack.callback(chief.close)
            log.info(f"oracle serving on {address}; a worker joins with: autocnn worker "
                     f"--oracle-address {address} --worker-id NAME")
            local_workers = None
            if config.workers:
                local_workers = LocalWorkers(config.workers, address, project / "workers",
                                             devices.visible_gpus(), config.verbose)
                stack.callback(local_workers.stop)
            yield chief, local_workers


class WorkerRole(Role):
    """Run the trials the chief behind ``link`` (a distributed.worker.Link) hands out."""

    reconciles = False  # the chief makes MLflow agree with its oracle

    def __init__(self, link):
        self.link = link

    def trial_begins(self, tuner, trial) -> None:
        self.link.running(trial.trial_id)
        tuner.runs.forget_earlier(trial.trial_id)
        seed_trial(self.link.seed, trial)

    def trial_ends(self, tuner, trial, per_epoch) -> None:
        # keras-tuner's protocol carries neither a failure's message nor the time an epoch
        # took (the chief's retraining estimate): tell the chief before ending the trial.
        self.link.send(ended={"trial": trial.trial_id, "message": trial.message,
                              "epoch_seconds": per_epoch})
        self.link.running(None)


def manifest(config, tracker, tracking_uri) -> dict:
    """What a worker needs to join: the search's settings (paths made absolute), its MLflow
    parent run and the store the workers log to."""
    data_dir = config.data.data_dir
    data_config = dataclasses.replace(config.data,
                                      dataset=data.absolute_source(config.data.dataset),
                                      data_dir=data.absolute_source(data_dir) if data_dir else None)
    settings = dataclasses.replace(config, data=data_config,
                                   tuner_dir=str(Path(config.tuner_dir).resolve()))
    return {"config": dataclasses.asdict(settings), "project_name": config.project_name,
            "search_id": tracker.search_id, "run_id": tracker.parent_run_id,
            "tracking_uri": tracking_uri, "chief_host": socket.gethostname()}
