"""Typed, validated settings for a search; every field has a commented default."""

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autocnn.errors import ConfigError

TUNERS = ("auto", "random", "bayesian", "hyperband")
# Test metrics a champion can be chosen on; all are "higher is better".
CHAMPION_METRICS = (
    "accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_macro",
    "recall_macro",
)
CACHES = ("auto", "memory", "none")
# auto: balanced class weights when the training classes' counts differ more than IMBALANCE times
CLASS_WEIGHTS = ("auto", "balanced", "none")
IMBALANCE = 1.5
STRATEGIES = ("none", "mirrored")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTED = ("none", "chief")
# The images a last-rung finalist trains on (see search/budget.final_on_val).
FINAL_DATA = ("auto", "train", "train+val")
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # relative to the working directory
DEFAULT_TUNER_DIR = "mlruns/tuner"
DEFAULT_MAX_TRIALS = 10  # without a time budget


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"  # a name from `autocnn datasets`, PATH/, file.npz, idx:DIR or tfds:NAME
    data_dir: str | None = None  # where fashion_mnist and tfds:NAME look for their files
    image_size: tuple[int, int] | None = None  # (height, width); None: the source's own size
    channels: int | None = None  # 1 or 3; None: the source's own (folders: 3 if any is colour)
    skip_bad_files: bool = False  # skip unreadable images (and report them) instead of failing
    cache: str = "auto"  # decoded-image cache for folders: auto, memory or none
    seed: int = 42  # fixes the split
    val_fraction: float = 0.2  # of what is left after the test split
    test_fraction: float = 0.2  # of all data, when the source has no test split of its own

    def __post_init__(self):
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        _check_choice("cache", self.cache, CACHES)
        if self.image_size is not None and min(self.image_size) < 1:
            raise ConfigError(f"image size must be positive, got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class SearchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    tuner: str = "auto"  # one of TUNERS
    # Trials to run, rejected architectures included; None: 10, or as many as the time budget
    # allows when there is one (a user who gives a budget expects the budget to decide).
    max_trials: int | None = None
    epochs: int = 20  # most epochs per trial (Hyperband's max_epochs)
    patience: int = 5  # early stopping on validation accuracy, in epochs
    trial_fraction: float = 1.0  # of the training images each trial trains on (retraining: all)
    finalists: int = 2  # best configurations trained on all images at the end (budget.last_rung)
    final_data: str = "auto"  # one of FINAL_DATA: the last rung's images (budget.final_on_val)
    class_weight: str = "auto"  # one of CLASS_WEIGHTS: each class's images' weight in the loss
    seed: int = 42  # fixes the tuner's choices and the weight initialisation
    max_failed_trials: int = 10  # consecutive failed trials before the search gives up
    time_budget: float | None = None  # seconds for the whole command (search and retraining)
    isolate: bool = False  # run each trial in a fresh process
    deterministic: bool = False  # TensorFlow's op determinism (the same numbers on a GPU too)
    distributed: str = "none"  # "chief": serve the oracle to workers (see distributed/)
    oracle_address: str = ""  # HOST:PORT the chief listens on; "" means 127.0.0.1, a free port
    workers: int = 0  # local worker processes the chief starts (one GPU each when there are)
    worker_timeout: float = 120.0  # seconds a worker may be silent before its trial is reassigned
    strategy: str = "none"  # "mirrored": each trial across all visible GPUs
    precision: str = "auto"  # Keras dtype policy; auto: mixed_float16 on Tensor Core GPUs
    max_params: int | None = None  # architectures with more parameters are rejected unbuilt
    space: dict = field(default_factory=dict)  # rules: values fixed, restricted or widened
    preset: str | None = None  # a classic architecture to train alone (see presets.py)
    project: str = ""  # tuner project and MLflow experiment; "" means "autocnn-<dataset>"
    tuner_dir: str = DEFAULT_TUNER_DIR  # where keras-tuner keeps trials (for resuming)
    overwrite: bool = False  # start the tuner project afresh instead of resuming it
    tracking_uri: str = DEFAULT_TRACKING_URI
    model_name: str = ""  # registered model name; "" means the project name
    champion_metric: str = "f1_macro"  # one of CHAMPION_METRICS
    weights: str = "imagenet"  # pretrained backbones': "imagenet", "none" or a file's path
    retrain: bool = True  # retrain the best configuration on train + val (else keep its model)
    evaluate: bool = True  # evaluate the final model on the test split
    register: bool = True  # log and register the final model (needs the evaluation)
    explain: bool = True  # draw what the final model learned (explain/ in MLflow; needs it too)
    verbose: int = 0  # 1 shows Keras's per-epoch progress

    def __post_init__(self):
        _check_choice("tuner", self.tuner, TUNERS)
        _check_choice("champion_metric", self.champion_metric, CHAMPION_METRICS)
        _check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("distributed", self.distributed, DISTRIBUTED)
        _check_choice("final_data", self.final_data, FINAL_DATA)
        if self.workers < 0 or self.worker_timeout <= 0:
            raise ConfigError("workers must be at least 0 and worker_timeout more than zero, "
                              f"got {self.workers} and {self.worker_timeout}")
        if self.oracle_address and not self.chief:
            raise ConfigError("--oracle-address is where a chief serves its oracle: add "
                              "--distributed chief (or --workers N)")
        if self.isolate and self.chief:
            raise ConfigError("--isolate runs trials in this process's children; a distributed "
                              "search runs them in its workers: choose one")
        for name in ("max_trials", "epochs", "patience", "max_failed_trials", "finalists"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.trial_fraction <= 1:
            raise ConfigError("trial_fraction is the share of the training images each trial "
                              f"trains on: more than 0, at most 1, got {self.trial_fraction}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError(f"time_budget must be more than zero, got {self.time_budget}")
        resolve_weights(self.weights)  # an existing file, or ConfigError

    @property
    def chief(self) -> bool:
        """Whether this search serves its oracle to worker processes."""
        return self.distributed == "chief" or self.workers > 0

    @property
    def trial_limit(self) -> int | None:
        """The most trials to run: ``max_trials``, else 10 without a time budget and no limit
        with one."""
        if self.max_trials is not None:
            return self.max_trials
        return None if self.time_budget is not None else DEFAULT_MAX_TRIALS

    @property
    def project_name(self) -> str:
        return self.project or f"autocnn-{slug(self.data.dataset)}"

    @property
    def registered_name(self) -> str:
        return self.model_name or self.project_name

    def to_dict(self) -> dict:
        """Flat settings for MLflow params: the data settings unnested."""
        settings = asdict(self)
        return {**settings.pop("data"), **settings}

    @classmethod
    def from_dict(cls, settings: dict) -> "SearchConfig":
        """The config ``asdict`` gave (through JSON: tuples come back as lists)."""
        data = dict(settings.get("data", {}))
        if data.get("image_size") is not None:
            data["image_size"] = tuple(data["image_size"])
        return cls(**{**settings, "data": DataConfig(**data)})


def read_yaml(path, kind: str, shape: str) -> dict:
    """The YAML mapping in ``path``; ConfigError when it is missing, malformed or not a mapping.

    ``kind`` names the file in messages ("space file"); ``shape`` says what it maps.
    """
    from pathlib import Path

    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{path}: no such {kind}")
    try:
        content = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a {kind} maps {shape}")
    return content


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")


def slug(dataset: str) -> str:
    """A short name for a data set, fit for an experiment: flowers for ~/data/flowers/."""
    base = dataset.split(":", 1)[-1].rstrip("/\\")
    base = os.path.splitext(os.path.basename(base))[0] if dataset.endswith(".npz") else \
        os.path.basename(base)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "data"


def resolve_weights(weights: str | None):
    """"imagenet", None (from "none") or an existing file's path; ConfigError otherwise."""
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"--weights {weights}: no such file; give 'imagenet', 'none' or the "
                          "path of a weights file saved from the backbone without its top")
    return str(path)
