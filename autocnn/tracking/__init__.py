"""MLflow tracking, the only package that imports mlflow: the store, the runs of a search, the
model registry, and what commands read back."""

from autocnn.tracking.reading import leaderboard, load_logged_model, log_text
from autocnn.tracking.registry import CHAMPION, Registration
from autocnn.tracking.runs import Tracker, trial_run_name
from autocnn.tracking.store import resolve_tracking_uri

__all__ = ["CHAMPION", "Registration", "Tracker", "leaderboard", "load_logged_model",
           "log_text", "resolve_tracking_uri", "trial_run_name"]
