"""A chief started again after it died: the trials its workers were running stay theirs.

keras-tuner's reload queues the trials that were running to run again, as if their workers
had died with the chief. A worker on another machine usually outlives its chief: it goes on
with its trial and, once the chief is back, ends it through the restarted one. So the restarted
chief gives those trials back to the workers that ran them, and only one silent for the worker
timeout has its trial requeued (Chief.reassign_silent); no other worker is handed it meanwhile.
"""

import json
import logging
from pathlib import Path

from autocnn.control import trial_label
from autocnn.distributed.protocol import CHIEF_ID

log = logging.getLogger(__name__)

# keras-tuner's ids for a tuner searching alone and for the chief: no worker to wait for.
NOT_WORKERS = ("tuner0", CHIEF_ID)


def take_back(oracle, total_trials: int | None, worker_timeout: float) -> list[str]:
    """Give back to their workers the trials a killed chief left running, saying so; their
    ids (none for a new search)."""
    kept = running_before(oracle)
    for tuner_id, trial_id in kept.items():
        log.info(f"trial {trial_label(int(trial_id) + 1, total_trials)} was running on "
                 f"{tuner_id} when the chief stopped: it stays with {tuner_id} if it answers "
                 f"within {worker_timeout:.0f}s")
    return list(kept.values())


def running_before(oracle) -> dict[str, str]:
    """The trials the oracle's saved state had running on workers, back among its running ones
    (tuner id -> trial id)."""
    from keras_tuner.src.engine.oracle import synchronized

    try:
        saved = json.loads(Path(oracle._get_oracle_fname()).read_text())["ongoing_trials"]
    except (OSError, ValueError, KeyError):
        return {}

    @synchronized
    def restore(oracle):
        kept = {}
        for tuner_id, trial_id in saved.items():
            trial = oracle.trials.get(trial_id)
            running = trial is not None and trial.status == "RUNNING"
            if tuner_id in NOT_WORKERS or not running or trial_id not in oracle._retry_queue:
                continue
            oracle._retry_queue[:] = [t for t in oracle._retry_queue if t != trial_id]
            oracle.ongoing_trials[tuner_id] = trial
            oracle.tuner_ids.add(tuner_id)
            kept[tuner_id] = trial_id
        return kept

    return restore(oracle)
