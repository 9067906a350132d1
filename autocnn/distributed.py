"""Distributed search on keras-tuner's own engine: a chief serves the oracle, workers run trials.

keras-tuner distributes a search through three environment variables (``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT``, ``KERASTUNER_TUNER_ID``): the chief's tuner serves its oracle over
gRPC and every other tuner asks it for trials. autocnn sets them (``keras_tuner_role``) and adds
what a long search on several machines needs, on the same port:

- a ``Beat`` call: each worker says every few seconds which trial it runs. The first call
  returns the search (its settings, the MLflow parent run) so a worker needs only the address.
- a bounded wait: a worker silent for ``worker_timeout`` has its trial put back in the queue for
  the next worker (one restarted with the same id before then takes its trial back, as
  keras-tuner does); the chief ends when the trials or the time budget are used, or when no
  worker has been heard from for that long.
- local workers (``--workers N``): processes of ``autocnn worker``, one GPU each when there are.

gRPC is imported here, not by keras-tuner's modules at import time, so a worker can tell an
unreachable chief before it loads TensorFlow.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autocnn.control import trial_label
from autocnn.errors import AutoCNNError, ConfigError

SERVICE = "autocnn.Workers"  # beside keras-tuner's own service on the chief's port
CHIEF_ID = "chief"  # keras-tuner's chief is the tuner whose id contains "chief"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DistributedError(AutoCNNError):
    """The chief cannot listen, a worker cannot reach it, or the workers cannot share a search."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int  # 0: a free port, chosen when the chief listens

    @classmethod
    def parse(cls, text: str, default_host: str = "127.0.0.1") -> "Address":
        """HOST:PORT, [IPv6]:PORT, :PORT (``default_host``) or "" (a free port there)."""
        text = (text or "").strip()
        if not text:
            return cls(default_host, 0)
        host, sep, port = text.rpartition(":")
        host = host.strip("[]") or default_host
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--oracle-address {text!r}: give HOST:PORT, for example "
                              "10.0.0.5:8000 or 127.0.0.1:8000")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@contextlib.contextmanager
def keras_tuner_role(address: Address, tuner_id: str):
    """keras-tuner's distribution settings for the tuners made and searched within."""
    from keras_tuner.src.engine import conditions

    # keras-tuner 1.4 prints a conditional hyperparameter's first value whenever it sends one
    # between chief and worker (a stray debugging print in conditions.Parent.to_proto).
    conditions.print = lambda *args, **kwargs: None
    names = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict(zip(names, (address.host, str(address.port), tuner_id))))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _encode(message: dict) -> bytes:
    return json.dumps(message).encode()


class Chief:
    """Serves a tuner's oracle to workers until the search is over (see ``serve``).

    ``manifest``: what a worker needs to join (its first ``Beat`` gets it); ``clock``:
    time.monotonic, or a fake one in tests.
    """

    def __init__(self, oracle, address: Address, manifest: dict, worker_timeout: float = 120.0,
                 total_trials: int | None = None, echo=print, clock=time.monotonic):
        self.oracle, self.address, self.manifest = oracle, address, manifest
        self.worker_timeout, self.echo, self.clock = worker_timeout, echo, clock
        self.total_trials = total_trials or oracle.max_trials
        self.idle_pause = 1.0  # seconds before telling a worker there is no trial yet
        self.stopping = None  # why no more trials are handed out
        self.deadline = None  # time.time() after which no trial runs (the budget)
        self.workers = {}  # worker id -> {"seen": clock, "host", "pid", "trial", "bye"}
        self.assigned = {}  # trial id -> worker id
        self.started = {}  # trial id -> clock when it was handed out
        self.epoch_seconds = {}  # trial id -> seconds per epoch, as the workers measured
        self.messages = {}  # trial id -> why it failed (keras-tuner's protocol drops it)
        self.told_to_stop = set()
        self.left = {}  # worker id -> why it said goodbye ("time budget", "stopped", ...)
        self._servicer_stopped = False  # keras-tuner's oracle said STOPPED (trials/space ran out)
        self._lock = threading.Lock()
        self._ended = threading.Event()  # a worker ended a trial: report it now
        self._server = None

    # -- the server ---------------------------------------------------------------------------

    def listen(self) -> Address:
        """Start serving; the address it listens on (its port chosen when it was 0)."""
        from concurrent import futures

        import grpc
        from keras_tuner.src import protos

        # No SO_REUSEPORT: a second chief on a port in use must fail, not share the workers.
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                   options=[("grpc.so_reuseport", 0)])
        protos.get_service_grpc().add_OracleServicer_to_server(_servicer(self), self._server)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "Beat": grpc.unary_unary_rpc_method_handler(
                self.beat, request_deserializer=json.loads, response_serializer=_encode)})])
        try:
            port = self._server.add_insecure_port(str(self.address))
        except RuntimeError:
            port = 0
        if not port:
            raise DistributedError(
                f"cannot listen on {self.address}: the port is in use or the address is not "
                "this machine's; choose another --oracle-address")
        self.address = Address(self.address.host, port)
        self._server.start()
        return self.address

    def close(self, grace: float = 0.5) -> None:
        if self._server is not None:
            self._server.stop(grace)

    # -- what workers call --------------------------------------------------------------------

    def beat(self, request: dict, context=None) -> dict:
        """A worker's heartbeat: who it is and the trial it runs; ``ended``: a trial it ends
        (its failure message and seconds per epoch), sent just before keras-tuner ends it."""
        worker = str(request.get("worker", ""))
        with self._lock:
            known = self.workers.get(worker)
            alive = known is not None and self._alive(known)
            process = (request.get("host"), request.get("pid"))
            if request.get("hello") and alive and (known["host"], known["pid"]) != process:
                return {"error": f"worker id {worker!r} is in use by process {known['pid']} on "
                                 f"{known['host']}: give each worker its own --worker-id"}
            if request.get("hello"):
                self.echo(f"worker {worker} joined from {process[0]} (pid {process[1]})")
            self.workers[worker] = {"seen": self.clock(), "host": process[0], "pid": process[1],
                                    "trial": request.get("trial"),
                                    "bye": bool(request.get("bye"))}
            if request.get("bye"):
                self.left[worker] = str(request["bye"])
            ended = request.get("ended")
            if ended:
                if ended.get("message"):
                    self.messages[ended["trial"]] = ended["message"]
                if ended.get("epoch_seconds"):
                    self.epoch_seconds[ended["trial"]] = ended["epoch_seconds"]
        # Seconds left rather than the deadline itself: the machines' clocks may differ.
        reply = {"remaining": None if self.deadline is None else self.deadline - time.time()}
        if request.get("hello"):
            reply["manifest"] = self.manifest
        return reply

    def create_trial(self, tuner_id: str, hand_out):
        """Hand out a trial with keras-tuner's ``hand_out``, or STOPPED once the search ends."""
        from keras_tuner.src.engine import trial as trial_module

        if self.stopping:
            self.told_to_stop.add(tuner_id)
            self.oracle.tuner_ids.discard(tuner_id)
            return trial_module.Trial(self.oracle.get_space(),
                                      status=trial_module.TrialStatus.STOPPED)
        trial = hand_out()
        if trial.status == trial_module.TrialStatus.IDLE:
            # Hyperband waits for a round's trials: keras-tuner's workers ask again at once,
            # so answer after a pause rather than spin.
            time.sleep(self.idle_pause)
        elif trial.status == trial_module.TrialStatus.STOPPED:  # its trials or space ran out
            self._servicer_stopped = True
            self.told_to_stop.add(tuner_id)
        elif trial.status == trial_module.TrialStatus.RUNNING:
            with self._lock:
                if self.assigned.get(trial.trial_id) != tuner_id or \
                        trial.trial_id not in self.started:
                    self.started[trial.trial_id] = self.clock()
                    self.echo(f"trial {trial_label(int(trial.trial_id) + 1, self.total_trials)}"
                              f" started on {tuner_id}")
                self.assigned[trial.trial_id] = tuner_id
        return trial

    # -- the chief's loop ---------------------------------------------------------------------

    def serve(self, budget=None, stop=None, on_trial_end=None, local_workers=None,
              poll: float = 0.5) -> str | None:
        """Serve until the search is over; why it ended early ("time budget", "interrupted",
        "no workers") or None when its trials ran out.

        ``budget``: the control.Budget (no trial is handed out once its search time is used);
        ``stop``: control.StopRequests (Ctrl-C: hand out no more); ``on_trial_end(trial,
        seconds, worker)``: called once for each trial that ends; ``local_workers``: the
        LocalWorkers this chief started (all of them exiting ends the wait).
        """
        ended = {t.trial_id for t in self.oracle.trials.values() if t.status != "RUNNING"}
        reason = None
        while True:
            self._ended.wait(poll)
            self._ended.clear()
            if budget is not None and budget.seconds is not None:
                self.deadline = time.time() + budget.search_remaining
            for trial in list(self.oracle.trials.values()):
                if trial.status != "RUNNING" and trial.trial_id not in ended:
                    ended.add(trial.trial_id)
                    trial.message = trial.message or self.messages.get(trial.trial_id)
                    started = self.started.pop(trial.trial_id, self.clock())
                    if on_trial_end is not None:
                        on_trial_end(trial, self.clock() - started,
                                     self.assigned.get(trial.trial_id, "?"))
            self.reassign_silent()
            if not self.stopping:
                if stop is not None and stop.requested:
                    self.stopping = reason = "interrupted"
                elif budget is not None and budget.seconds is not None and \
                        budget.search_remaining <= 0:
                    self.stopping = reason = "time budget"
                elif self._servicer_stopped or self._trials_used():
                    self.stopping = "trials"
            if self.stopping and not self.oracle.ongoing_trials:
                break
            if self.workers and not self._any_alive():
                if "time budget" in self.left.values():
                    reason = "time budget"  # the workers found no time for another trial
                    break
                last = max(w["seen"] for w in self.workers.values())
                if self.clock() - last >= self.worker_timeout:
                    reason = "no workers"
                    self.echo(f"no worker has been heard from for {self.worker_timeout:.0f}s: "
                              "ending the search")
                    break
            if local_workers is not None and local_workers.all_exited():
                reason = "no workers"
                self.echo(f"every local worker exited; their logs: {local_workers.log_dir}")
                break
        self._drain(poll)
        return reason

    def _trials_used(self) -> bool:
        trials = self.oracle.trials
        return (self.total_trials is not None and len(trials) >= self.total_trials
                and not self.oracle._retry_queue
                and all(t.status != "RUNNING" for t in trials.values()))

    def _silence(self, worker: dict) -> float:
        return self.clock() - worker["seen"]

    def _alive(self, worker: dict) -> bool:
        """Not gone: it has not said goodbye and was heard from within the timeout."""
        return not worker["bye"] and self._silence(worker) < self.worker_timeout

    def _any_alive(self) -> bool:
        return any(self._alive(w) for w in self.workers.values())

    def reassign_silent(self) -> list[str]:
        """Put back in the queue the trials of workers silent for ``worker_timeout``; their ids."""
        requeued = []
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            worker = self.workers.get(tuner_id)
            if worker is None:  # handed out before this chief heard of it (a restart)
                with self._lock:
                    self.workers[tuner_id] = worker = {"seen": self.clock(), "host": "?",
                                                       "pid": None, "trial": trial.trial_id,
                                                       "bye": False}
            if self._alive(worker):
                continue
            _requeue(self.oracle, tuner_id)
            self.started.pop(trial.trial_id, None)
            requeued.append(trial.trial_id)
            self.echo(f"worker {tuner_id} has been silent for {self._silence(worker):.0f}s: "
                      f"trial {int(trial.trial_id) + 1} goes back in the queue")
        return requeued

    def _drain(self, poll: float, grace: float = 15.0) -> None:
        """Keep answering a little while, so live workers asking for a trial hear STOPPED."""
        self.stopping = self.stopping or "ended"
        until = self.clock() + grace
        while self.clock() < until and any(
                worker not in self.told_to_stop and self._alive(w)
                for worker, w in self.workers.items()):
            time.sleep(poll)


def _servicer(chief: Chief):
    """keras-tuner's OracleServicer, with CreateTrial going through ``chief.create_trial``."""
    from keras_tuner.src.distribute.oracle_chief import OracleServicer


    class Servicer(OracleServicer):
        def CreateTrial(self, request, context):
            from keras_tuner.src import protos

            trial = chief.create_trial(request.tuner_id,
                                       lambda: self.oracle.create_trial(request.tuner_id))
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

        def EndTrial(self, request, context):
            response = super().EndTrial(request, context)
            # keras-tuner saves the oracle before it forgets the trial as running; a tuner
            # saves it again after, which a chief never does: without this a restarted chief
            # would run the trial again.
            _save(self.oracle)
            chief._ended.set()
            return response

    return Servicer(chief.oracle)


def _save(oracle) -> None:
    from keras_tuner.src.engine.oracle import synchronized

    synchronized(type(oracle).save)(oracle)


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


class Link:
    """A worker's line to the chief: the first beat gets the search, then one beat every few
    seconds in a thread until ``close`` (which trial runs); ``deadline``: when the budget ends,
    by this machine's clock."""

    def __init__(self, address: Address, worker_id: str, connect_timeout: float = 30.0):
        import grpc

        self.address, self.worker_id = address, worker_id
        self.channel = grpc.insecure_channel(str(address))
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            raise DistributedError(
                f"cannot reach the chief's oracle at {address} within {connect_timeout:.0f}s: "
                f"start the chief first (autocnn search --distributed chief --oracle-address "
                f"{address}), and check the address and that the port is open to this machine"
            ) from None
        self._beat = self.channel.unary_unary(f"/{SERVICE}/Beat", request_serializer=_encode,
                                              response_deserializer=json.loads)
        self.trial, self.deadline = None, None
        self.tuner_dir = self.tracking_uri = None  # as this machine sees them (see join)
        self._stop = threading.Event()
        reply = self.send(hello=True)
        if "error" in reply:
            raise DistributedError(reply["error"])
        self.manifest = reply["manifest"]
        self.worker_timeout = self.manifest["config"]["worker_timeout"]
        self.seed = self.manifest["config"]["seed"]
        # Beat from now on: loading the data and building the tuner take a while too.
        interval = min(10.0, self.worker_timeout / 4)
        threading.Thread(target=self._run, args=(interval,), daemon=True).start()

    def send(self, **extra) -> dict:
        reply = self._beat({"worker": self.worker_id, "host": socket.gethostname(),
                            "pid": os.getpid(), "trial": self.trial, **extra}, timeout=10)
        remaining = reply.get("remaining")
        self.deadline = None if remaining is None else time.time() + remaining
        return reply

    def _run(self, interval: float) -> None:
        heard = time.monotonic()
        while not self._stop.wait(interval):
            try:
                self.send()
                heard = time.monotonic()
            except Exception:  # a missed beat is only a missed beat, up to the timeout
                if time.monotonic() - heard > self.worker_timeout:
                    self._give_up()
                    return

    def _give_up(self) -> None:
        """The chief is gone (keras-tuner's own calls would wait an hour for it): stop."""
        print(f"worker {self.worker_id}: no answer from the chief at {self.address} for "
              f"{self.worker_timeout:.0f}s; stopping (its trial reruns when the chief "
              "resumes the search)", file=sys.stderr, flush=True)
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


class LocalWorkers:
    """``count`` ``autocnn worker`` processes on this machine, one GPU each when there are
    (round robin through ``CUDA_VISIBLE_DEVICES``), their output in ``log_dir``."""

    def __init__(self, count: int, address: Address, log_dir: Path, gpus: int = 0,
                 verbose: int = 0, echo=print):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = {}
        for index in range(count):
            name = f"worker-{index + 1}"
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
            command = [sys.executable, "-m", "autocnn", "worker", "--oracle-address",
                       str(address), "--worker-id", name] + ["-v"] * verbose
            with open(self.log_dir / f"{name}.log", "w") as log:
                self.processes[name] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            gpu = f", GPU {index % gpus}" if gpus else ""
            echo(f"started {name} (pid {self.processes[name].pid}{gpu}); its log: "
                 f"{self.log_dir / f'{name}.log'}")

    def all_exited(self) -> bool:
        return all(p.poll() is not None for p in self.processes.values())

    def stop(self, wait: float = 20.0) -> None:
        """Let them exit (they were told STOPPED), then terminate what is left."""
        until = time.monotonic() + wait
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(until - time.monotonic(), 0.1))
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                process.kill()


class TrackingServer:
    """A local MLflow tracking server over a SQLite store, bound to 127.0.0.1, for the
    processes of a search on this machine (SQLite alone is one writer's store)."""

    def __init__(self, backend_uri: str, artifact_root: str | None, log: Path,
                 timeout: float = 120.0):
        port = _free_port()
        self.uri = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        if artifact_root:
            command += ["--default-artifact-root", artifact_root, "--no-serve-artifacts"]
        # Its background jobs serve MLflow's GenAI features, not a search.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from autocnn.distributed import supervise; supervise()",
                 *command], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
        try:
            self._wait(timeout, log)
        except BaseException:  # Ctrl-C while it starts, too: leave no server behind
            self.stop()
            raise

    def _wait(self, timeout: float, log: Path) -> None:
        import urllib.request

        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise DistributedError(f"the MLflow tracking server did not start; see {log}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            time.sleep(0.3)
        raise DistributedError(f"the MLflow tracking server did not answer in {timeout:.0f}s; "
                               f"see {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)


def supervise(argv=None, poll: float = 1.0) -> None:
    """Run ``argv`` (its own process group) until it ends, this process gets SIGTERM, or the
    process that started this one dies (a chief killed with SIGKILL leaves no server behind);
    then stop the group: SIGTERM, SIGKILL after 3 s (a SQLite commit is atomic)."""
    argv = argv or sys.argv[1:]
    parent = os.getppid()
    child = subprocess.Popen(argv, start_new_session=True)

    def stop(*_):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the chief's to handle
    while child.poll() is None:
        if os.getppid() != parent:
            stop()
        time.sleep(poll)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def visible_gpus() -> int:
    """How many GPUs TensorFlow sees (0 on a machine without)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))
