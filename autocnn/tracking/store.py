"""Where the runs are kept: a SQLite file (the default, its artifacts beside it) or a tracking
server, resolved to an absolute URI and checked before anything is logged."""

import urllib.error
import urllib.request
from pathlib import Path

from autocnn.config import DEFAULT_TRACKING_URI
from autocnn.errors import TrackingError

STORE_HINT = "point to the store with --tracking-uri or MLFLOW_TRACKING_URI"


def resolve_tracking_uri(uri: str, create: bool = True) -> tuple[str, str | None]:
    """An absolute tracking URI and, for a local SQLite store, the artifact folder beside it.

    With ``create`` False (commands that only read), a SQLite store that does not exist is a
    TrackingError saying where it was looked for, instead of a new empty store there.
    """
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        if not create and not path.is_file():
            if uri == DEFAULT_TRACKING_URI:
                raise TrackingError(f"no MLflow store at {path} (the default {uri}, relative to "
                                    "the working directory): run from the folder you searched "
                                    f"in, or {STORE_HINT}")
            raise TrackingError(f"no MLflow store at {path} ({uri}): check the path, or "
                                f"{STORE_HINT}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", (path.parent / "artifacts").as_uri()
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    return uri, None


def _check_server(uri: str) -> None:
    # MLflow's own client retries for minutes; one short request tells at once.
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            return
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}): start it "
            "(`mlflow server`) or pass another --tracking-uri"
        ) from None


DATABASES = {"postgresql": "psycopg"}  # scheme -> its driver, as SQLAlchemy 2.1 picks it


def redact(uri: str) -> str:
    """``uri`` with its password, if it holds one, as ***: what logs, params and the console
    may show."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def redact_text(text: str) -> str:
    """``text`` with the password of every URI in it as *** (a pipeline's file, a command)."""
    import re

    return re.sub(r"(\b[a-z][\w+.-]*://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def check_database(uri: str) -> str:
    """The database URI a tracking server is to keep its runs in, checked: a SQLite file made
    absolute (and its folder made), or a PostgreSQL database whose driver is installed and
    which answers; TrackingError saying what is wrong, the password never shown."""
    if uri.startswith("sqlite:"):
        return resolve_tracking_uri(uri)[0]
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DATABASES:
        raise TrackingError(f"{redact(uri)}: not a database autocnn serves; give a sqlite:/// "
                            "file or postgresql://USER:PASSWORD@HOST:PORT/DB")
    try:
        __import__(DATABASES[scheme])
    except ImportError:
        raise TrackingError("the PostgreSQL driver is not installed: pip install "
                            "'autocnn[server]'") from None
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10}).connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise TrackingError(f"cannot use the database {redact(uri)}: "
                            f"{reason.replace(uri, redact(uri))}") from None
    return uri
