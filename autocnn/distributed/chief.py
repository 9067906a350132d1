"""The chief: keras-tuner's oracle served over gRPC with autocnn's heartbeat beside it, workers'
trials handed out and, when a worker falls silent, put back in the queue."""

import logging
import threading
import time

from autocnn.distributed import restart, service
from autocnn.distributed.protocol import Address
from autocnn.distributed.roster import Roster

log = logging.getLogger(__name__)


class Chief:
    """Serves a tuner's oracle to workers until the search is over (see ``serve``).

    ``manifest``: what a worker needs to join (its first ``Beat`` gets it); ``clock``:
    time.monotonic, or a fake one in tests.
    """

    def __init__(self, oracle, address: Address, manifest: dict, worker_timeout: float = 120.0,
                 total_trials: int | None = None, clock=time.monotonic):
        self.oracle, self.address, self.manifest = oracle, address, manifest
        self.worker_timeout, self.clock = worker_timeout, clock
        self.roster = Roster(worker_timeout, clock)
        self.total_trials = total_trials or oracle.max_trials
        self.idle_pause = 1.0  # seconds before telling a worker there is no trial yet
        self.stopping = None  # why no more trials are handed out
        self.deadline = None  # time.time() after which no trial runs (the budget)
        self.told_to_stop = set()
        self.servicer_stopped = False  # keras-tuner's oracle said STOPPED (trials/space ran out)
        self._ended = threading.Event()  # a worker ended a trial: report it now
        self.taken_back = []  # trials a killed chief left running, kept for their workers
        self._server = None

    # -- the server ---------------------------------------------------------------------------

    def listen(self) -> Address:
        """Start serving; the address it listens on (its port chosen when it was 0). A
        restarted chief first takes back the trials its workers may still run."""
        # Before any worker can ask for a trial.
        self.taken_back = restart.take_back(self.oracle, self.total_trials, self.worker_timeout)
        self._server, self.address = service.start(self, self.address)
        return self.address

    def trial_ended(self) -> None:
        """A worker ended a trial (keras-tuner's EndTrial): report it now."""
        self._ended.set()

    def close(self, grace: float = 0.5) -> None:
        if self._server is not None:
            self._server.stop(grace)

    # -- what workers call --------------------------------------------------------------------

    def beat(self, request: dict, context=None) -> dict:
        """A worker's heartbeat: who it is and the trial it runs; ``ended``: a trial it ends
        (its failure message and seconds per epoch), sent just before keras-tuner ends it."""
        refused = self.roster.heard(request)
        if refused:
            return {"error": refused}
        # Seconds left rather than the deadline itself: the machines' clocks may differ.
        reply = {"remaining": None if self.deadline is None else self.deadline - time.time(),
                 "search_id": self.manifest.get("search_id")}
        if request.get("hello"):
            reply["manifest"] = self.manifest
        return reply

    def create_trial(self, tuner_id: str, hand_out):
        """Hand out a trial with keras-tuner's ``hand_out``, or STOPPED once the search ends."""
        return service.create_trial(self, tuner_id, hand_out)

    # -- the chief's loop ---------------------------------------------------------------------

    def serve(self, budget=None, stop=None, on_trial_end=None, local_workers=None,
              poll: float = 0.5) -> str | None:
        """Serve until the search is over; why it ended early ("time budget", "interrupted",
        "no workers") or None when its trials ran out.

        ``budget``: the search's budget (its ``trial_deadline()``: no trial is handed out once
        it has passed); ``stop``: control.StopRequests (Ctrl-C: hand out no more);
        ``on_trial_end(trial, seconds, worker)``: called once for each trial that ends;
        ``local_workers``: the LocalWorkers this chief started (all of them exiting ends the
        wait).
        """
        ended = {t.trial_id for t in self.oracle.trials.values() if t.status != "RUNNING"}
        reason = None
        while True:
            self._ended.wait(poll)
            self._ended.clear()
            self.deadline = budget.trial_deadline() if budget is not None else None
            self._report_ended(ended, on_trial_end)
            self.reassign_silent()
            if not self.stopping:
                self.stopping = self._why_stop(stop)
                reason = self.stopping if self.stopping != "trials" else None
            if self.stopping and not self.oracle.ongoing_trials:
                break
            gone = self.roster.gone(local_workers)
            if gone:
                reason = gone
                break
        self._drain(poll)
        return reason

    def _report_ended(self, ended: set, on_trial_end) -> None:
        queued = set(self.oracle._retry_queue)  # ended, but to run again (its tracking was lost)
        for trial in list(self.oracle.trials.values()):
            if trial.status != "RUNNING" and trial.trial_id not in ended | queued:
                ended.add(trial.trial_id)
                trial.message = trial.message or self.roster.messages.get(trial.trial_id)
                seconds, worker = self.roster.ended(trial.trial_id)
                if on_trial_end is not None:
                    on_trial_end(trial, seconds, worker)

    def _why_stop(self, stop) -> str | None:
        """Why no more trials are to be handed out ("trials": they are used), or None."""
        if stop is not None and stop.requested:
            return "interrupted"
        if self.deadline is not None and self.deadline <= time.time():
            return "time budget"
        if self.servicer_stopped or self._trials_used():
            return "trials"
        return None

    def _trials_used(self) -> bool:
        trials = self.oracle.trials
        return (self.total_trials is not None and len(trials) >= self.total_trials
                and not self.oracle._retry_queue
                and all(t.status != "RUNNING" for t in trials.values()))

    def reassign_silent(self) -> list[str]:
        """Put back in the queue the trials of workers silent for ``worker_timeout``; their ids."""
        requeued = []
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            worker = self.roster.get(tuner_id, trial.trial_id)
            if self.roster.alive(worker):
                continue
            _requeue(self.oracle, tuner_id)
            self.roster.started.pop(trial.trial_id, None)
            requeued.append(trial.trial_id)
            log.info(f"worker {tuner_id} has been silent for "
                     f"{self.roster.silence(worker):.0f}s: trial {int(trial.trial_id) + 1} "
                     "goes back in the queue")
        return requeued

    def _drain(self, poll: float, grace: float = 15.0) -> None:
        """Keep answering a little while, so live workers asking for a trial hear STOPPED."""
        self.stopping = self.stopping or "ended"
        until = self.clock() + grace
        while self.clock() < until and any(
                worker not in self.told_to_stop and self.roster.alive(w)
                for worker, w in self.roster.workers.items()):
            time.sleep(poll)


def _requeue(oracle, tuner_id: str) -> None:
    """Take the trial from ``tuner_id`` and queue it for the next tuner that asks, as
    keras-tuner's own reload does for trials a crash interrupted (it has no public call)."""
    from keras_tuner.src.engine.oracle import synchronized

    @synchronized
    def requeue(oracle, tuner_id):
        trial = oracle.ongoing_trials.pop(tuner_id, None)
        oracle.tuner_ids.discard(tuner_id)
        if trial is not None and trial.trial_id not in oracle._retry_queue:
            oracle._retry_queue.append(trial.trial_id)
        oracle.save()

    requeue(oracle, tuner_id)
