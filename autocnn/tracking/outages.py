"""A tracking server that stops answering: MLflow's client retries each call for about four
minutes first (7 retries with a growing pause; MLFLOW_HTTP_REQUEST_MAX_RETRIES and
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set them), so a server restarted in that time costs nothing.
Past that, a trial's epoch that cannot be logged raises TrackingLost (the trial runs again),
and the search waits for the server before its next trial."""

import contextlib
import time

from mlflow.exceptions import MlflowException

from autocnn.errors import TrackingLost
from autocnn.tracking.store import redact


def unreachable(error: MlflowException) -> bool:
    """Whether an MLflow call failed because the tracking server did not answer."""
    import requests

    cause = error.__cause__ or error.__context__
    return isinstance(cause, (requests.ConnectionError, requests.Timeout))


@contextlib.contextmanager
def lost_when_unreachable(uri: str):
    """MLflow's calls within, with a server that does not answer raised as TrackingLost."""
    try:
        yield
    except MlflowException as err:
        if not unreachable(err):
            raise
        raise TrackingLost(f"the MLflow tracking server at {redact(uri)} stopped answering"
                           ) from err


def wait_until_answers(tracker, timeout: float, say, poll: float = 5.0) -> None:
    """Wait for ``tracker``'s server to answer again, saying so with ``say`` once a minute;
    TrackingLost after ``timeout`` seconds (the search resumes when rerun)."""
    started = said = time.monotonic()
    uri = tracker.tracking_uri
    while True:
        try:
            tracker.client.get_experiment(tracker.experiment_id)
            return
        except MlflowException as err:
            if not unreachable(err):
                raise
        waited = time.monotonic() - started
        if waited > timeout:
            raise TrackingLost(
                f"the MLflow tracking server at {redact(uri)} has not answered for "
                f"{waited / 60:.0f} minutes: start it again and rerun the same command to "
                "resume the search") from None
        if time.monotonic() - said >= 60:
            said = time.monotonic()
            say(f"still waiting for the MLflow tracking server at {redact(uri)} "
                f"({waited / 60:.0f} min)")
        time.sleep(poll)
