"""Neighbouring configurations: a good configuration with one or two hyperparameters moved to a
neighbouring value, as regularized evolution mutates its population (Real et al., 2019).

A neighbour of a number is the next value along its range (the next choice of an ordered list,
one step, or a factor of about 1.6 on a log scale); of a category, any other one. A
hyperparameter that a change makes active (a residual model's bottleneck) starts at its
default: the space's defaults are a prior worth keeping.
"""

import math

import keras_tuner as kt

LOG_FACTOR = math.exp(0.5)  # a log-scale neighbour: about x1.6 or /1.6


def mutate(space: kt.HyperParameters, values: dict, rng, changes: int = 1) -> dict:
    """``values`` with ``changes`` of its active, searchable hyperparameters moved to a
    neighbouring value; the hyperparameters the moves activate get their defaults."""
    movable = [hp for hp in _active(space, values) if _choices(hp) != 1]
    moved = dict(values)
    for hp in rng.choice(movable, size=min(changes, len(movable)), replace=False):
        moved[hp.name] = neighbour(hp, moved.get(hp.name, hp.default), rng)
    return complete(space, moved)


def complete(space: kt.HyperParameters, values: dict) -> dict:
    """The active hyperparameters' values: ``values``' where they hold one, else the default."""
    return {hp.name: values.get(hp.name, hp.default) for hp in _active(space, values)}


def _active(space: kt.HyperParameters, values: dict):
    """The hyperparameters of ``space`` that ``values`` makes active (a residual model's
    bottleneck only when its family is residual), in declaration order."""
    hps = kt.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = values.get(hp.name, hp.default)
            yield hp


def neighbour(hp, value, rng):
    """A value next to ``value`` in ``hp``'s range (never ``value`` itself, when there is
    another)."""
    config = hp.get_config()
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return not value
    if "values" in config:
        allowed = list(config["values"])
        if len(allowed) < 2:
            return value
        if value not in allowed:
            return allowed[int(rng.integers(len(allowed)))]
        index = allowed.index(value)
        if config.get("ordered"):
            steps = [i for i in (index - 1, index + 1) if 0 <= i < len(allowed)]
        else:
            steps = [i for i in range(len(allowed)) if i != index]
        return allowed[int(rng.choice(steps))]
    low, high = config["min_value"], config["max_value"]
    if config.get("sampling") == "log":
        moved = value * (LOG_FACTOR if rng.random() < 0.5 else 1 / LOG_FACTOR)
    else:
        step = config.get("step") or (high - low) / 10
        moved = value + (step if rng.random() < 0.5 else -step)
    moved = min(max(moved, low), high)
    return int(round(moved)) if isinstance(low, int) and isinstance(high, int) else moved


def _choices(hp) -> int | None:
    """How many values ``hp`` takes (None: a range)."""
    config = hp.get_config()
    if "value" in config:  # Fixed
        return 1
    if "values" in config:
        return len(config["values"])
    if "min_value" in config:
        return 1 if config["min_value"] == config["max_value"] else None
    return 2  # Boolean
