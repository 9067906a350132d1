"""The errors autocnn raises: an `AutoCNNError` is a problem the user can fix, and the CLI turns
it into one line and exit status 2; the others end a trial, and its progress line and MLflow
run say why."""


class AutoCNNError(Exception):
    """Base class: a problem the user can fix, described in one sentence with the fix."""


class ConfigError(AutoCNNError, ValueError):
    """An option or configuration value is out of range or unknown."""


class DataError(AutoCNNError, ValueError):
    """A data set cannot be found, read or split."""


class SizingError(AutoCNNError, ValueError):
    """An architecture cannot exist for its input: a layer's output would have no pixels."""


class TrackingError(AutoCNNError):
    """The MLflow tracking store cannot be reached or used."""


class TrackingLost(TrackingError):
    """The tracking server stopped answering, after MLflow's client had retried: a trial it
    happens in runs again once the server answers."""


class SearchError(AutoCNNError):
    """The search could not produce a model (for example, every trial failed)."""


class WeightsError(ConfigError):
    """Backbone weights that cannot be had: the message says which file and where."""


class DistributedError(AutoCNNError):
    """The chief cannot listen, a worker cannot reach it, or the workers cannot share a search."""


class Interrupted(AutoCNNError):
    """The user stopped the search; what is finished is kept and a rerun resumes it."""

    exit_code = 130


class NonFiniteLoss(ValueError):
    """A trial's training loss became NaN or infinite (the trial fails with this reason)."""


class TrialProcessError(RuntimeError):
    """A trial failed in its own process (the message is that process's traceback)."""


def did_you_mean(name: str, choices) -> str:
    """" (did you mean 'max_trials'?)" for the choice closest to a mistyped ``name``, or ""."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
