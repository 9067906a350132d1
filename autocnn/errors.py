"""The errors autocnn raises on bad input; the CLI turns each into one line and exit status 2."""


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


class SearchError(AutoCNNError):
    """The search could not produce a model (for example, every trial failed)."""


def did_you_mean(name: str, choices) -> str:
    """" (did you mean 'max_trials'?)" for the choice closest to a mistyped ``name``, or ""."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
