"""The processes a chief starts on its own machine: local workers (``--workers N``, one GPU each
when there are) and a local MLflow tracking server over the SQLite store; none outlives the
chief (the workers watch it, the server is supervised)."""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from autocnn.distributed.protocol import Address
from autocnn.distributed.worker import CHIEF_PID
from autocnn.errors import DistributedError

log = logging.getLogger(__name__)

SUPERVISE = "from autocnn.distributed.processes import supervise; supervise()"


class LocalWorkers:
    """``count`` ``autocnn worker`` processes on this machine, one GPU each when there are
    (round robin through ``CUDA_VISIBLE_DEVICES``), their output in ``log_dir``."""

    def __init__(self, count: int, address: Address, log_dir: Path, gpus: int = 0,
                 verbose: int = 0):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = {}
        for index in range(count):
            name = f"worker-{index + 1}"
            env = {**os.environ, CHIEF_PID: str(os.getpid())}  # they end with this chief
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
            command = [sys.executable, "-m", "autocnn", "worker", "--oracle-address",
                       str(address), "--worker-id", name] + ["-v"] * verbose
            with open(self.log_dir / f"{name}.log", "w") as output:
                self.processes[name] = subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, env=env,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            gpu = f", GPU {index % gpus}" if gpus else ""
            log.info(f"started {name} (pid {self.processes[name].pid}{gpu}); its log: "
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

    def __init__(self, backend_uri: str, artifact_root: str | None, log_file: Path,
                 timeout: float = 120.0):
        port = _free_port()
        self.uri = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        if artifact_root:
            command += ["--default-artifact-root", artifact_root, "--no-serve-artifacts"]
        # Its background jobs serve MLflow's GenAI features, not a search.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(log_file, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SUPERVISE, *command], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        try:
            self._wait(timeout, log_file)
        except BaseException:  # Ctrl-C while it starts, too: leave no server behind
            self.stop()
            raise

    def _wait(self, timeout: float, log_file: Path) -> None:
        import urllib.request

        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise DistributedError(f"the MLflow tracking server did not start; see {log_file}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            time.sleep(0.3)
        raise DistributedError(f"the MLflow tracking server did not answer in {timeout:.0f}s; "
                               f"see {log_file}")

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
