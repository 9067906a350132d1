"""A throwaway PostgreSQL cluster and an `autocnn server` over a database, for the load
benchmark and the team-setup and fault tests: real servers on free local ports (a tracking
server can be killed and started again on its port), gone afterwards."""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


class Unavailable(RuntimeError):
    """PostgreSQL is not installed here."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def cluster():
    """A PostgreSQL cluster of its own in a temporary folder, on a free port of 127.0.0.1,
    with a database ``mlflow`` and a password: (its URI, the password). Run as the postgres
    user when this process is root (PostgreSQL refuses root). Unavailable without PostgreSQL
    (Debian: apt-get install postgresql)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or \
        [p for p in [shutil.which("initdb")] if p]
    if not found:
        raise Unavailable("no PostgreSQL here: apt-get install postgresql")
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="autocnn-pg-"))  # in /tmp: postgres can reach it
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    password, port, data = f"pw-{uuid.uuid4().hex[:12]}", free_port(), folder / "data"
    (folder / "password").write_text(password)
    if as_user:
        for path in (folder, folder / "password"):
            shutil.chown(path, "postgres")
    quiet = {"check": True, "capture_output": True}
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "autocnn", "-A",
                    "scram-sha-256", "--pwfile", folder / "password"], **quiet)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w",
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 "
                    "-c max_connections=200", "start"], **quiet)
    try:
        subprocess.run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                        "autocnn", "mlflow"], env={**os.environ, "PGPASSWORD": password}, **quiet)
        yield f"postgresql://autocnn:{password}@127.0.0.1:{port}/mlflow", password
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


class TrackingServer:
    """`autocnn server --db DB` on ``port`` of 127.0.0.1 (a free one when not given), its
    artifacts and log (``log_path``) in ``folder``; ``kill`` it as a crash would and ``start``
    it again on the same port."""

    def __init__(self, db: str, folder: Path, workers: int = 4, port: int | None = None):
        self.db, self.folder, self.workers = db, Path(folder), workers
        self.port = port or free_port()
        self.url, self.log_path = f"http://127.0.0.1:{self.port}", self.folder / "server.log"
        self.process = None
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 120) -> "TrackingServer":
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autocnn", "server", "--artifacts",
                 str(self.folder / "artifacts"), "--port", str(self.port), "--workers",
                 str(self.workers)], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "AUTOCNN_DB": self.db}, start_new_session=True)
        _wait(self.url, self.process, timeout, self.log_path)
        return self

    def kill(self) -> None:
        """SIGKILL to the server and its workers, nothing saved or closed."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, number) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, number)
            self.process.wait(timeout=30)


@contextlib.contextmanager
def tracking_server(db: str, folder: Path, workers: int = 4, timeout: float = 120):
    """A started TrackingServer over ``db``, stopped afterwards."""
    server = TrackingServer(db, folder, workers)
    try:
        yield server.start(timeout)
    finally:
        server.stop()


def _wait(url: str, process, timeout: float, log_path: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the tracking server stopped: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=5)
            return
        time.sleep(1)
    raise RuntimeError(f"the tracking server did not answer in {timeout:.0f}s; see {log_path}")
