"""The MLflow servers autocnn starts: the UI over a store, and the tracking server a team's
searches and workers share (SQLite by default, PostgreSQL for many writers). Both become
MLflow's own server process (os.execv), so Ctrl-C and a service manager reach it directly."""

import os
import sys

import click

from autocnn.cli.options import tracking_option
from autocnn.config import DEFAULT_TRACKING_URI

HOST_HELP = "Address to bind; the default keeps it to this machine (0.0.0.0: every interface)."


@click.command()
@tracking_option()
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
def ui(tracking_uri, port, host):
    """Open the MLflow UI over the project's store (a parent run per search, a child per trial)."""
    from autocnn.tracking import resolve_tracking_uri

    uri, artifacts = resolve_tracking_uri(tracking_uri, create=False)
    command = ["ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    click.echo(f"MLflow UI on http://{host}:{port} over {uri} (Ctrl-C to stop)")
    _become_mlflow(command, {})


@click.command()
@click.option("--db", default=DEFAULT_TRACKING_URI, show_default=True, envvar="AUTOCNN_DB",
              help="The database that keeps the runs and the registry: a SQLite file, or "
              "postgresql://USER:PASSWORD@HOST:PORT/DB (needs autocnn[server]). Prefer "
              "$AUTOCNN_DB for a password: the process list shows a command's options.")
@click.option("--artifacts", type=click.Path(file_okay=False), default="mlruns/artifacts",
              show_default=True, help="Where the server keeps the artifacts it serves (models, "
              "plots, reports); clients need no access to it.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="The server's worker processes.")
def server(db, artifacts, port, host, workers):
    """Serve MLflow for a team's searches: runs and registry in the database of --db, artifacts
    served by the server itself, so chiefs, workers and the UI need only its URL
    (--tracking-uri http://HOST:PORT). It has no authentication: see the distributed guide.

    \b
    Examples:
      autocnn server                                   # over mlruns/mlflow.db (SQLite)
      AUTOCNN_DB=postgresql://mlflow:PASSWORD@db.lan/mlflow autocnn server --host 0.0.0.0
    """
    from autocnn.tracking.store import check_database, redact

    uri = check_database(db)
    folder = os.path.abspath(os.path.expanduser(artifacts))
    os.makedirs(folder, exist_ok=True)
    click.echo(f"MLflow tracking server on http://{host}:{port} over {redact(uri)}, artifacts "
               f"in {folder} (Ctrl-C to stop)")
    # The URI goes in the environment, not the command line, where `ps` would show its password.
    _become_mlflow(["server", "--artifacts-destination", folder, "--host", host, "--port",
                    str(port), "--workers", str(workers)], {"MLFLOW_BACKEND_STORE_URI": uri})


def _become_mlflow(arguments: list[str], env: dict) -> None:
    from autocnn.cli import native_logs

    native_logs.release()
    os.execve(sys.executable, [sys.executable, "-m", "mlflow", *arguments],
              {**os.environ, **env})


COMMANDS = (ui, server)
