"""Typed, validated settings for a search; every field has a commented default."""

from dataclasses import asdict, dataclass

from autocnn.errors import ConfigError

TUNERS = ("random", "bayesian", "hyperband")
# Test metrics a champion can be chosen on; all are "higher is better".
CHAMPION_METRICS = (
    "accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro",
)
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # relative to the working directory
DEFAULT_TUNER_DIR = "mlruns/tuner"


@dataclass(frozen=True)
class SearchConfig:
    dataset: str = "digits"  # data set name (see `autocnn search --help`)
    tuner: str = "random"  # one of TUNERS
    max_trials: int = 10  # trials to run, rejected architectures included
    epochs: int = 20  # most epochs per trial (Hyperband's max_epochs)
    patience: int = 5  # early stopping on validation accuracy, in epochs
    batch_size: int = 32
    seed: int = 42  # fixes the split, the tuner's choices and the weight initialisation
    val_fraction: float = 0.2  # of the data left after the test split
    test_fraction: float = 0.2  # of all data, never seen by the search
    max_failed_trials: int = 10  # consecutive failed trials before the search gives up
    project: str = ""  # tuner project and MLflow experiment; "" means "autocnn-<dataset>"
    tuner_dir: str = DEFAULT_TUNER_DIR  # where keras-tuner keeps trials (for resuming)
    overwrite: bool = False  # start the tuner project afresh instead of resuming it
    tracking_uri: str = DEFAULT_TRACKING_URI
    model_name: str = ""  # registered model name; "" means the project name
    champion_metric: str = "f1_macro"  # one of CHAMPION_METRICS
    register: bool = True  # log and register the retrained best model
    verbose: int = 0  # 1 shows Keras's per-epoch progress

    def __post_init__(self):
        _check_choice("tuner", self.tuner, TUNERS)
        _check_choice("champion_metric", self.champion_metric, CHAMPION_METRICS)
        for name in ("max_trials", "epochs", "patience", "batch_size", "max_failed_trials"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")

    @property
    def project_name(self) -> str:
        return self.project or f"autocnn-{self.dataset}"

    @property
    def registered_name(self) -> str:
        return self.model_name or self.project_name

    def to_dict(self) -> dict:
        return asdict(self)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")
