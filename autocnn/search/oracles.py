"""Oracles: keras-tuner's random and Bayesian ones with warm starts (the defaults and the classic
presets first) and the budget's veto on configurations too slow for it."""

import keras_tuner as kt

from autocnn.space.hypermodel import active_values

ORACLES = {
    "random": kt.oracles.RandomSearchOracle,
    "bayesian": kt.oracles.BayesianOptimizationOracle,
}


class WarmStart:
    """Mixin for a keras-tuner Oracle: the first trials try given configurations, then the
    oracle's own picks; ``impossible(values)`` (why the sizing rejects them, or None) and
    ``affordable(values)`` (why they are too slow, or None) pass over either, up to PICKS
    picks a trial (the last one then runs). A configuration that cannot exist is not a trial:
    the oracle draws again instead of spending one on it.

    The first is the space's defaults, a sensible model for the input, so the best trial is
    never worse on validation than the defaults. Uses the oracles' public `populate_space` hook;
    a resumed search that already has those trials goes straight on.
    """

    PICKS = 20

    def __init__(self, *args, warm_start=({},), **kwargs):
        super().__init__(*args, **kwargs)
        # Named configurations ({"defaults": {}, "vgg11": {...}}), or a list of unnamed ones.
        self.warm_start = list(warm_start.items()) if isinstance(warm_start, dict) else \
            [(f"warm start {i + 1}", values) for i, values in enumerate(warm_start)]
        self.affordable = None  # values -> why they are too slow, or None (set by the tuner)
        self.impossible = None  # values -> why they cannot be built, or None (set by the tuner)
        self.passed_over = []  # why too slow, since the tuner last read them
        self.redrawn = []  # why impossible, since the tuner last read them
        self.warm_names = {}  # trial id -> the name of the warm start it tries

    def populate_space(self, trial_id):
        index = self.new_configurations()  # this trial is not among them yet
        if index < len(self.warm_start):
            name, start = self.warm_start[index]
            space = self.get_space()
            values = dict(space.values)
            for hp in space.space:
                if hp.name in start:
                    values[hp.name] = nearest(hp, start[hp.name])
            if self._fits(values):
                self.warm_names[trial_id] = name
                return {"status": "RUNNING", "values": values}
        for _ in range(self.PICKS):
            response = super().populate_space(trial_id)
            if response["status"] != "RUNNING" or self._fits(response["values"]):
                break
        return response

    def new_configurations(self) -> int:
        """How many trials tried a configuration of their own (every trial, unless the oracle
        also continues trials)."""
        return len(self.trials)

    def _fits(self, values) -> bool:
        for check, reasons in ((self.impossible, self.redrawn),
                               (self.affordable, self.passed_over)):
            reason = check(values) if check is not None else None
            if reason:
                reasons.append(reason)
                return False
        return True


def distinct_best_trials(oracle, n: int) -> list:
    """The ``n`` best completed trials, one per configuration (a configuration the oracle
    picked twice counts once): the last rung's finalists."""
    best, seen = [], set()
    for trial in oracle.get_best_trials(len(oracle.trials)):
        values = configuration_key(active_values(trial.hyperparameters))
        if values not in seen:
            seen.add(values)
            best.append(trial)
        if len(best) == n:
            break
    return best


def configuration_key(values: dict) -> tuple:
    """What tells configurations apart: their values, less the tuner's own (a trial's rung,
    epochs and parent)."""
    return tuple(sorted(((k, v) for k, v in values.items() if not k.startswith("tuner/")),
                        key=str))


def nearest(hp, value):
    """``value`` if the space allows it, else the closest value it does (a preset's 6 filters
    becomes 16 when the choices are 16, 32, 64): every oracle can then learn from the trial."""
    config = hp.get_config()
    if "value" in config:  # fixed by the user's rules: theirs wins
        return config["value"]
    if "values" in config:
        allowed = config["values"]
        if value in allowed:
            return value
        numbers = [v for v in allowed if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if isinstance(value, (int, float)) and numbers:
            return min(numbers, key=lambda v: abs(v - value))
        return config["default"] if config.get("default") is not None else allowed[0]
    if "min_value" in config:
        return type(config["min_value"])(min(max(value, config["min_value"]),
                                             config["max_value"]))
    return value
