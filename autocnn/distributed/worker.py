"""A worker's side: its line to the chief (a heartbeat in a thread), and the checks that this
machine can work for the chief's search before anything heavy loads."""

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from autocnn.distributed.protocol import LOOPBACK, SERVICE, Address, encode
from autocnn.errors import DistributedError

# A channel to the chief that reconnects within seconds once a restarted chief listens again
# (gRPC's own backoff grows to two minutes), and keras-tuner's calls that a chief's death cut
# off sent again rather than failing the trial (a call not yet sent waits: wait_for_ready).
_RETRY = {"methodConfig": [{"name": [{"service": "keras_tuner.Oracle"}], "retryPolicy": {
    "maxAttempts": 5, "initialBackoff": "1s", "maxBackoff": "10s", "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"]}}]}
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 1000),
                   ("grpc.max_reconnect_backoff_ms", 5000),
                   ("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(_RETRY))]
CHIEF_PID = "AUTOCNN_CHIEF_PID"  # set for the local workers a chief starts: they end with it


def channel(address: Address):
    import grpc

    return grpc.insecure_channel(str(address), options=CHANNEL_OPTIONS)


def oracle_stub(address: Address):
    """keras-tuner's stub to the chief's oracle, on a ``channel`` that outlives a chief's
    restart (keras-tuner's own has gRPC's defaults)."""
    from keras_tuner.src import protos

    return protos.get_service_grpc().OracleStub(channel(address))


class Link:
    """A worker's line to the chief: the first beat gets the search, then one beat every few
    seconds in a thread until ``close`` (which trial runs, for how long); ``deadline``: when
    the budget ends, by this machine's clock.

    A chief that stops answering is waited for up to its worker timeout: one restarted with
    the same command in that time finds the worker still on its trial. A local worker (its
    chief's pid in AUTOCNN_CHIEF_PID) stops as soon as that chief is gone.
    """

    def __init__(self, address: Address, worker_id: str, connect_timeout: float = 30.0):
        import grpc

        self.address, self.worker_id = address, worker_id
        self.channel = channel(address)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            raise DistributedError(
                f"cannot reach the chief's oracle at {address} within {connect_timeout:.0f}s: "
                f"start the chief first (autocnn search --distributed chief --oracle-address "
                f"{address}), and check the address and that the port is open to this machine"
            ) from None
        self._beat = self.channel.unary_unary(f"/{SERVICE}/Beat", request_serializer=encode,
                                              response_deserializer=json.loads)
        self.trial, self.deadline, self._trial_began = None, None, None
        self.tuner_dir = self.tracking_uri = None  # as this machine sees them (see join)
        self.chief_pid = int(os.environ.get(CHIEF_PID) or 0) or None
        self._stop, self._waiting = threading.Event(), False  # waiting: for a silent chief
        reply = self.send(hello=True)
        if "error" in reply:
            raise DistributedError(reply["error"])
        self.manifest = reply["manifest"]
        self.worker_timeout = self.manifest["config"]["worker_timeout"]
        self.seed = self.manifest["config"]["seed"]
        # Beat from now on: loading the data and building the tuner take a while too.
        interval = min(10.0, self.worker_timeout / 4)
        threading.Thread(target=self._run, args=(interval,), daemon=True).start()

    def running(self, trial_id: str | None) -> None:
        """The trial this worker runs from now (None: none)."""
        self.trial, self._trial_began = trial_id, time.monotonic() if trial_id else None

    def send(self, **extra) -> dict:
        seconds = None if self._trial_began is None else time.monotonic() - self._trial_began
        reply = self._beat({"worker": self.worker_id, "host": socket.gethostname(),
                            "pid": os.getpid(), "trial": self.trial, "seconds": seconds,
                            **extra}, timeout=10)
        remaining = reply.get("remaining")
        self.deadline = None if remaining is None else time.time() + remaining
        return reply

    def _run(self, interval: float) -> None:
        heard = next_beat = time.monotonic()
        while not self._stop.wait(1.0):
            if self.chief_pid and os.getppid() != self.chief_pid:
                return self._give_up("the chief that started it has exited")
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + interval
            why = self._beat_once(heard)
            if why == "":
                heard = time.monotonic()
            elif why:
                return self._give_up(why)

    def _beat_once(self, heard: float) -> str | None:
        """One beat: "" when the chief answered, why to stop, or None (no answer yet)."""
        try:
            reply = self.send()
        except Exception:  # a missed beat is only a missed beat, up to the timeout
            silent = time.monotonic() - heard
            if silent > self.worker_timeout:
                return f"no answer from the chief at {self.address} for {silent:.0f}s"
            if not self._waiting:
                self._waiting = True
                _say(f"worker {self.worker_id}: the chief at {self.address} does not answer; "
                     f"waiting up to {self.worker_timeout:.0f}s for it (its trial goes on)")
            return None
        if self._waiting:
            self._waiting = False
            _say(f"worker {self.worker_id}: the chief at {self.address} answers again")
        if reply.get("search_id") not in (None, self.manifest["search_id"]):
            return f"the chief at {self.address} now runs another search"
        return ""

    def _give_up(self, why: str) -> None:
        """The chief is gone (keras-tuner's own calls would wait an hour for it): stop."""
        _say(f"worker {self.worker_id}: {why}; stopping (its trial reruns when the chief "
             "resumes the search)")
        import _thread

        _thread.interrupt_main(signal.SIGTERM)  # as SIGTERM: stop now, not after the trial
        if not self._stop.wait(15):
            os._exit(3)

    def close(self, reason: str = "stopped") -> None:
        """Stop beating and tell the chief why this worker leaves."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.send(bye=reason, trial=None)
        self.channel.close()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def join(address: Address, worker_id: str, connect_timeout: float = 30.0,
         tuner_dir: str | None = None, tracking_uri: str | None = None) -> "Link":
    """Reach the chief and check this machine can work for its search (the tuner folder, the
    MLflow store) before anything heavy loads; the Link, with ``tuner_dir`` and
    ``tracking_uri`` as this machine sees them."""
    link = Link(address, worker_id, connect_timeout)
    try:
        check_shared(link.manifest, tuner_dir)
        link.tracking_uri = check_tracking(link.manifest, tracking_uri)
    except BaseException:
        link.close("error")
        raise
    link.tuner_dir = tuner_dir or link.manifest["config"]["tuner_dir"]
    return link


def check_shared(manifest: dict, tuner_dir: str | None) -> Path:
    """The search's tuner project as this machine sees it; DistributedError when it is not the
    chief's (the workers save checkpoints there and the chief reads them)."""
    project = Path(tuner_dir or manifest["config"]["tuner_dir"]) / manifest["project_name"]
    marker = project / "autocnn.json"
    try:
        found = json.loads(marker.read_text())["search_id"]
    except (OSError, ValueError, KeyError):
        found = None
    if found != manifest["search_id"]:
        raise DistributedError(
            f"the chief's tuner project {project} is not on this machine: mount the same "
            "shared folder at that path, or pass --tuner-dir with where it is mounted here")
    return project


def check_tracking(manifest: dict, tracking_uri: str | None) -> str:
    """The MLflow store the worker logs to; DistributedError when only the chief can reach it."""
    uri = tracking_uri or manifest["tracking_uri"]
    here = socket.gethostname()
    local = uri.startswith("sqlite:") or any(f"//{h}" in uri for h in LOOPBACK)
    if local and manifest["chief_host"] != here and not tracking_uri:
        raise DistributedError(
            f"the chief logs to {uri}, which only its machine ({manifest['chief_host']}) can "
            "reach: start a tracking server there (make mlflow-server HOST=0.0.0.0) and give "
            "the chief --tracking-uri http://HOST:5000")
    return uri
