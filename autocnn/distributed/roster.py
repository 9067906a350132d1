"""The chief's roster of workers: who was heard from when, on which machine and process, the
trial each runs, why each left, and what each said about the trials it ended."""

import logging
import threading

log = logging.getLogger(__name__)


class Roster:
    """Workers are alive until they say goodbye or fall silent for ``worker_timeout``
    seconds of ``clock``."""

    def __init__(self, worker_timeout: float, clock):
        self.worker_timeout, self.clock = worker_timeout, clock
        self.workers = {}  # worker id -> {"seen": clock, "host", "pid", "trial", "bye"}
        self.left = {}  # worker id -> why it said goodbye ("time budget", "stopped", ...)
        self.epoch_seconds = {}  # trial id -> seconds per epoch, as the workers measured
        self.messages = {}  # trial id -> why it failed (keras-tuner's protocol drops it)
        self.assigned = {}  # trial id -> worker id
        self.started = {}  # trial id -> clock when it was handed out
        self.lock = threading.Lock()

    def heard(self, request: dict) -> str | None:
        """A worker's heartbeat noted; why it is refused (its id in use elsewhere), or None."""
        worker = str(request.get("worker", ""))
        with self.lock:
            known = self.workers.get(worker)
            process = (request.get("host"), request.get("pid"))
            if request.get("hello") and known is not None and self.alive(known) and \
                    (known["host"], known["pid"]) != process:
                return (f"worker id {worker!r} is in use by process {known['pid']} on "
                        f"{known['host']}: give each worker its own --worker-id")
            if request.get("hello"):
                log.info(f"worker {worker} joined from {process[0]} (pid {process[1]})")
            self.workers[worker] = {"seen": self.clock(), "host": process[0], "pid": process[1],
                                    "trial": request.get("trial"),
                                    "bye": bool(request.get("bye"))}
            if request.get("bye"):
                self.left[worker] = str(request["bye"])
            self._note_running(worker, request.get("trial"), request.get("seconds"))
            self._note_ended(request.get("ended"))
        return None

    def _note_running(self, worker: str, trial_id, seconds) -> None:
        # A trial handed out before this chief started (it was restarted) is timed from
        # when the worker began it, as the worker says.
        if trial_id is not None and seconds is not None and trial_id not in self.started:
            self.started[trial_id] = self.clock() - float(seconds)
            self.assigned.setdefault(trial_id, worker)

    def _note_ended(self, ended: dict | None) -> None:
        if ended and ended.get("message"):
            self.messages[ended["trial"]] = ended["message"]
        if ended and ended.get("epoch_seconds"):
            self.epoch_seconds[ended["trial"]] = ended["epoch_seconds"]

    def handed_out(self, trial_id: str, tuner_id: str) -> bool:
        """Note a trial handed out to ``tuner_id``; whether it starts anew (not a repeat of the
        answer to the same worker)."""
        with self.lock:
            new = self.assigned.get(trial_id) != tuner_id or trial_id not in self.started
            if new:
                self.started[trial_id] = self.clock()
            self.assigned[trial_id] = tuner_id
        return new

    def ended(self, trial_id: str) -> tuple[float, str]:
        """A trial's seconds since it was handed out, and the worker it was handed to."""
        started = self.started.pop(trial_id, self.clock())
        return self.clock() - started, self.assigned.get(trial_id, "?")

    def get(self, tuner_id: str, trial_id: str) -> dict:
        """The worker ``tuner_id``, counted as just heard from when this chief has not heard of
        it (a trial handed out before a restart)."""
        with self.lock:
            if tuner_id not in self.workers:
                self.workers[tuner_id] = {"seen": self.clock(), "host": "?", "pid": None,
                                          "trial": trial_id, "bye": False}
            return self.workers[tuner_id]

    def silence(self, worker: dict) -> float:
        return self.clock() - worker["seen"]

    def alive(self, worker: dict) -> bool:
        """Not gone: it has not said goodbye and was heard from within the timeout."""
        return not worker["bye"] and self.silence(worker) < self.worker_timeout

    def any_alive(self) -> bool:
        return any(self.alive(w) for w in self.workers.values())

    def gone(self, local_workers=None) -> str | None:
        """Why the wait for workers is over ("time budget", "no workers"), or None;
        ``local_workers``: the chief's own (all of them exiting ends the wait)."""
        if self.workers and not self.any_alive():
            if "time budget" in self.left.values():
                return "time budget"  # the workers found no time for another trial
            if self.clock() - self.last_heard() >= self.worker_timeout:
                log.info(f"no worker has been heard from for {self.worker_timeout:.0f}s: "
                         "ending the search")
                return "no workers"
        if local_workers is not None and local_workers.all_exited():
            log.info(f"every local worker exited; their logs: {local_workers.log_dir}")
            return "no workers"
        return None

    def last_heard(self) -> float:
        return max(w["seen"] for w in self.workers.values())
