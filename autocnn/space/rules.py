"""Rules that reshape the search space: values fixed (``--set``), restricted or widened (YAML).

A rule is one of:
- a scalar, which fixes the hyperparameter: ``batch_norm: true``;
- a list, its choices: ``kernel_size: [3, 5]`` (also widens: ``filters: [32, 64, 128, 256]``);
- a range for numbers: ``num_blocks: {min: 1, max: 4}``, ``learning_rate: {min: 1e-4, max: 1e-2}``.

`Space` applies the rules where each hyperparameter is declared, inside its own conditional
scope: keras-tuner keeps a separate entry per scope, so an ``hp.Fixed`` made beforehand would not
reach a conditional hyperparameter.
"""


from autocnn.config import read_yaml
from autocnn.errors import ConfigError
from autocnn.space import backbones

# Choices that select code paths: only the listed values exist. hypermodel.py declares these
# lists; the family names are blocks.FAMILIES' keys (a test keeps the two equal) and "backbone",
# a pretrained network from the registry.
CLOSED = {
    "family": ("plain", "residual", "dense", "inception", "separable", "nin", "backbone"),
    "backbone": backbones.NAMES,
    "backbone_pooling": ("avg", "max"),
    "padding": ("same", "valid"),
    "pooling": ("max", "avg", "strided", "none"),
    "head": ("flatten", "gap", "gmp"),
    "optimizer": ("adam", "adamw", "sgd"),
    "lr_schedule": ("constant", "cosine", "plateau"),
    "flip": ("none", "horizontal", "vertical", "horizontal_and_vertical"),
}


class Space:
    """Declares hyperparameters on a keras-tuner ``HyperParameters``, applying ``rules``."""

    def __init__(self, hp, rules: dict | None = None):
        """``hp``: a keras_tuner.HyperParameters to declare on."""
        self.hp, self.rules = hp, dict(rules or {})

    def choice(self, name, values, default):
        rule = self.rules.get(name, list(values))
        if isinstance(rule, dict):
            raise ConfigError(f"{name} takes a list of values or one value, not a range; its "
                              f"values are {_listed(values)}")
        options = rule if isinstance(rule, list) else [rule]
        _check_values(name, options, default)
        if not isinstance(rule, list) or len(options) == 1:
            return self.hp.Fixed(name, options[0])
        return self.hp.Choice(name, options, default=default if default in options
                              else options[0])

    def integer(self, name, low, high, default):
        rule = self.rules.get(name, {"min": low, "max": high})
        if not isinstance(rule, dict):
            return self.choice(name, list(range(low, high + 1)), default)
        low, high = _range(name, rule, minimum=1)
        if int(low) != low or int(high) != high:
            raise ConfigError(f"{name}: the range must have whole numbers, got {low}..{high}")
        return self.hp.Int(name, int(low), int(high), default=min(max(default, low), high))

    def number(self, name, low, high, default, **kwargs):
        rule = self.rules.get(name, {"min": low, "max": high})
        if not isinstance(rule, dict):
            return self.choice(name, [float(v) for v in _as_list(rule)], default)
        low, high = _range(name, rule, minimum=0.0)
        if kwargs.get("sampling") == "log" and low <= 0:
            raise ConfigError(f"{name}: a log-scale range must start above 0, got {low}")
        if low == high:
            return self.hp.Fixed(name, float(low))
        return self.hp.Float(name, float(low), float(high),
                             default=min(max(default, low), high), **kwargs)

    def boolean(self, name, default):
        if name in self.rules:
            return self.choice(name, [False, True], default)
        return self.hp.Boolean(name, default=default)

    def conditional_scope(self, parent, values):
        return self.hp.conditional_scope(parent, values)

    def get(self, name):
        return self.hp.get(name)


def load_rules(path: str) -> dict:
    """A space file: a YAML mapping of hyperparameter names to rules."""
    return read_yaml(path, "space file",
                     "hyperparameter names to values, lists or {min, max} ranges")


def check_names(rules: dict, known: list[str], where: str = "") -> dict:
    unknown = sorted(set(rules) - set(known))
    if unknown:
        raise ConfigError(f"{where}unknown hyperparameter(s) {', '.join(unknown)}: choose from "
                          f"{', '.join(known)}")
    return rules


def describe(hps: list) -> tuple[list[tuple], str]:
    """Rows (name, domain, default, condition) over the explored branches, and the space's size."""
    entries = {}
    for hp in hps:
        for h in hp.space:
            entries.setdefault((h.name, _condition(h)), h)
    rows = [(name, _domain(h), _default(h), condition)
            for (name, condition), h in entries.items()]
    continuous = []
    discrete = _count([(h, list(h.conditions)) for h in entries.values()], continuous)
    text = f"{discrete:,} discrete configurations"
    if continuous:
        text += f", times the continuous {', '.join(sorted(set(continuous)))}"
    return rows, text


def _count(entries: list, continuous: list) -> int:
    """Configurations of ``entries`` (hyperparameter, conditions not yet met): each one
    without conditions multiplies the count; a parent adds up, over its values, the
    configurations of the children that value activates (conditions nest, outermost first)."""
    total = 1
    for h, conditions in entries:
        if conditions:
            continue
        children = [(c, rest) for c, rest in entries if rest and rest[0].name == h.name]
        if not children:
            total *= _size(h, continuous)
            continue
        total *= sum(_count([(c, rest[1:]) for c, rest in children if value in rest[0].values],
                            continuous) for value in _values(h))
    return total


def _values(h) -> list:
    config = h.get_config()
    if "values" in config:
        return config["values"]
    if "value" in config:
        return [config["value"]]
    return [False, True]  # a Boolean: the only other kind a condition can hang on


def _size(h, continuous: list) -> int:
    import keras_tuner as kt

    config = h.get_config()
    if isinstance(h, kt.engine.hyperparameters.Choice):
        return len(config["values"])
    if isinstance(h, kt.engine.hyperparameters.Boolean):
        return 2
    if isinstance(h, kt.engine.hyperparameters.Fixed):
        return 1
    step = config.get("step")
    if isinstance(h, kt.engine.hyperparameters.Int):
        return (config["max_value"] - config["min_value"]) // (step or 1) + 1
    if step:
        return int(round((config["max_value"] - config["min_value"]) / step)) + 1
    continuous.append(h.name)
    return 1


def _domain(h) -> str:
    config = h.get_config()
    if "values" in config:
        return _listed(config["values"])
    if "value" in config:
        return f"fixed: {config['value']}"
    if "min_value" in config:
        scale = " (log)" if config.get("sampling") == "log" else ""
        return f"{config['min_value']:g} .. {config['max_value']:g}{scale}"
    return "true, false"


def _default(h) -> str:
    return str(h.default).lower() if isinstance(h.default, bool) else str(h.default)


def _condition(h) -> str:
    return "; ".join(f"{c.name} in {_listed(c.values)}" for c in h.conditions)


def _check_values(name, options, default):
    if not options:
        raise ConfigError(f"{name}: the list of choices is empty; give at least one value")
    if name in CLOSED:
        bad = [v for v in options if v not in CLOSED[name]]
        if bad:
            raise ConfigError(f"{name}={bad[0]!r} is not allowed: choose one of "
                              f"{_listed(CLOSED[name])}")
        return
    kind = type(default)
    for value in options:
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok or isinstance(value, bool) != isinstance(default, bool):
            raise ConfigError(f"{name}={value!r} is not a {kind.__name__}")
        if kind in (int, float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{name}={value} must not be negative")


def _range(name, rule: dict, minimum):
    extra = set(rule) - {"min", "max"}
    if extra or not {"min", "max"} <= set(rule):
        raise ConfigError(f"{name}: a range is {{min: LOW, max: HIGH}}, got {rule}")
    low, high = rule["min"], rule["max"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{name}: min and max must be numbers, got {low!r} and {high!r}")
    if low > high:
        raise ConfigError(f"{name}: impossible range, min {low} is above max {high}")
    if low < minimum:
        raise ConfigError(f"{name}: min must be at least {minimum}, got {low}")
    return low, high


def _as_list(rule):
    return rule if isinstance(rule, list) else [rule]


def _listed(values) -> str:
    return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
