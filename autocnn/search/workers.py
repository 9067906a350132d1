"""A worker process of a distributed search: the trials the chief hands out, run until it says
the search is over."""

import dataclasses
import logging

from autocnn.config import SearchConfig
from autocnn.control import StopRequests
from autocnn.distributed.protocol import keras_tuner_role
from autocnn.distributed.worker import oracle_stub
from autocnn.errors import Interrupted
from autocnn.search.budget import Deadline
from autocnn.search.prepare import bootstrap, fit_arguments
from autocnn.search.roles import WorkerRole
from autocnn.search.tuners import create_tuner
from autocnn.tracking import Tracker

log = logging.getLogger(__name__)


def run_worker(link, verbose: int | None = None) -> int:
    """Run trials for the chief ``link`` reached (see distributed.worker.join) until it says
    the search is over: the trials run."""
    manifest, reason, tuner = link.manifest, "error", None
    try:
        config = dataclasses.replace(
            SearchConfig.from_dict(manifest["config"]), overwrite=False, workers=0,
            distributed="none", oracle_address="", tuner_dir=link.tuner_dir,
            verbose=manifest["config"]["verbose"] if verbose is None else verbose)
        prepared = bootstrap(config)
        tracker = Tracker(link.tracking_uri, config.project_name)
        tracker.parent_run_id, tracker.search_id = manifest["run_id"], manifest["search_id"]
        args, kwargs = fit_arguments(config, prepared.dataset)
        stop = StopRequests()
        # keras-tuner reads its settings when the tuner is made and whenever it saves.
        with keras_tuner_role(link.address, link.worker_id), stop:
            tuner = create_tuner(config, prepared.hypermodel, tracker,
                                 strategy=prepared.strategy, stop=stop, role=WorkerRole(link),
                                 budget=Deadline(lambda: link.deadline))
            tuner.oracle.stub = oracle_stub(link.address)  # keras-tuner's OracleClient
            log.info(f"worker {link.worker_id}: running trials of MLflow run "
                     f"{tracker.parent_run_id} for the chief at {link.address}")
            tuner.search(*args, **kwargs)
        reason = tuner.stopped_by or "stopped"
    except KeyboardInterrupt:
        reason = "interrupted"
        raise Interrupted(f"worker {link.worker_id} interrupted; restart it with the same "
                          "--worker-id to take its trial back") from None
    finally:
        link.close(reason)
    log.info(f"worker {link.worker_id}: {tuner.trials_run} trials run; the search is over "
             f"({reason})")
    return tuner.trials_run
