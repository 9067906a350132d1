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
from dataclasses import dataclass

from autocnn.errors import ConfigError

SERVICE = "autocnn.Workers"  # beside keras-tuner's own service on the chief's port
CHIEF_ID = "chief"  # keras-tuner's chief is the tuner whose id contains "chief"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def encode(message: dict) -> bytes:
    return json.dumps(message).encode()
