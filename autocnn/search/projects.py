"""What a tuner project records about itself, so that only the same search ever resumes it.

A project folder (``--tuner-dir``/``--project``) keeps, in ``autocnn.json``: the search's id
(MLflow runs carry it), the fingerprint of its data (see data.Dataset.fingerprint) and the
settings that give its trials their meaning. Rerunning with other data or other such settings
would mix trials of two searches and register a model chosen on the wrong data, so it is
refused before anything is touched.
"""

import json
import uuid
from pathlib import Path

from autocnn.errors import ConfigError

RECORD = "autocnn.json"
# Settings that change what a trial means; the others (epochs, budget, ...) may change freely.
MEANINGFUL = ("tuner", "space", "preset", "trial_fraction", "seed")
WAYS_OUT = "give this search its own project (--project NAME) or start afresh (--overwrite)"


def project_dir(config) -> Path:
    """The folder keras-tuner keeps the project of ``config`` in."""
    return Path(config.tuner_dir) / config.project_name


def settings_of(config) -> dict:
    """The meaningful settings of ``config``, as JSON gives them back."""
    return json.loads(json.dumps({name: getattr(config, name) for name in MEANINGFUL},
                                 default=list))


def read(folder) -> dict:
    """The project's record; {} when it has none yet."""
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def check_resume(config, fingerprint: dict) -> None:
    """Refuse to resume the project of ``config`` with other data or meaningful settings than
    it recorded (ConfigError naming both and the ways out). Nothing is read or written when
    the project is new or ``config.overwrite`` starts it afresh."""
    folder = project_dir(config)
    record = {} if config.overwrite else read(folder)
    # Settings first: another seed also splits the data otherwise, and that is the reason.
    before, now = record.get("settings"), settings_of(config)
    if before:
        changed = [name for name in MEANINGFUL if before.get(name) != now[name]]
        if changed:
            said = ", ".join(f"{n} {_show(before.get(n))} (now {_show(now[n])})" for n in changed)
            raise ConfigError(f"{folder} was searched with {said}; run it with its own "
                              f"settings to resume it, or {WAYS_OUT}")
    recorded = record.get("data")
    if recorded and _identity(recorded) != _identity(fingerprint):
        from autocnn.data.splits import describe_fingerprint

        raise ConfigError(f"{folder} holds a search of other data, "
                          f"{describe_fingerprint(recorded)}; this run has "
                          f"{describe_fingerprint(fingerprint)}: {WAYS_OUT}")


def record(folder, config, fingerprint: dict) -> str:
    """Write the project's record (its search id, data and settings) where it has none yet,
    keeping what it has; returns the search id."""
    path = Path(folder) / RECORD
    current = read(folder)
    updated = {"search_id": uuid.uuid4().hex, "data": fingerprint,
               "settings": settings_of(config), **current}
    if updated != current:
        path.write_text(json.dumps(updated, indent=1) + "\n")
    return updated["search_id"]


def _identity(fingerprint: dict) -> tuple:
    return tuple(json.dumps(fingerprint.get(key), sort_keys=True)
                 for key in ("classes", "input_shape", "splits", "digest"))


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value, sort_keys=True)
