"""The one bootstrap of every process of a search (the search itself, a worker, an isolated
trial): devices, data, seed, the hypermodel bound to the data, and what each trial's fit gets;
with the warm starts and the check of backbone weights the search process adds."""

import logging
from dataclasses import dataclass

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src import config as kt_config
from sklearn.utils.class_weight import compute_class_weight

from autocnn import data
from autocnn.config import IMBALANCE, SearchConfig, resolve_weights
from autocnn.devices import configure_devices, distribution_strategy
from autocnn.errors import ConfigError, SizingError
from autocnn.search.tuners import OBJECTIVE
from autocnn.space import backbones, presets
from autocnn.space import hypermodel as space

log = logging.getLogger(__name__)

PIPELINE_BATCH = 64  # what the input pipeline yields; each trial rebatches to its batch_size


@dataclass
class Prepared:
    """What every process of a search starts from."""
    config: SearchConfig
    dataset: data.Dataset
    hypermodel: space.CNNHyperModel
    precision: str  # the dtype policy's name

    @property
    def strategy(self):
        return self.hypermodel.strategy


def bootstrap(config: SearchConfig, dataset: data.Dataset | None = None, seed: int | None = None,
) -> Prepared:
    """Devices, data (``dataset`` when the caller has it loaded), the seed (``config.seed``
    unless ``seed`` is given), the tf.distribute strategy and the hypermodel."""
    precision = configure_devices(config.deterministic, config.precision)
    dataset = dataset or data.load(config.data)
    keras.utils.set_random_seed(config.seed if seed is None else seed)
    hypermodel = make_hypermodel(config, dataset, distribution_strategy(config.strategy))
    # keras-tuner prints every failed trial's traceback unless this flag is off (it has no public
    # switch); the progress line gives the reason and the child run keeps the traceback.
    kt_config.DEBUG = config.verbose > 0
    return Prepared(config, dataset, hypermodel, precision)


def search_rules(config: SearchConfig, dataset) -> dict:
    """The user's rules, over a preset's values, with no flips where orientation matters."""
    rules = config.space
    if config.preset:
        rules = {**presets.preset(config.preset, dataset.input_shape), **rules}
    if dataset.orientation_matters:  # a flipped 6 is not a 6
        rules = {"flip": "none", **rules}
    return rules


def make_hypermodel(config: SearchConfig, dataset, strategy=None) -> space.CNNHyperModel:
    """The search space bound to ``dataset`` (batch sizes per replica of ``strategy``)."""
    return space.CNNHyperModel(
        dataset.input_shape, dataset.num_classes, max_params=config.max_params,
        rules=search_rules(config, dataset), weights=resolve_weights(config.weights),
        strategy=strategy, class_weight=class_weights(config, dataset))


def class_weights(config: SearchConfig, dataset) -> dict[int, float] | None:
    """Each class's weight in the loss (class index -> weight), or None for all alike.

    "balanced" weighs a class by the inverse of its share of the training images (scikit-learn's
    rule: n / (classes * count)), so every class weighs the same in total; "auto" does so when
    the largest class has more than IMBALANCE times the images of the smallest. The trial
    subset is stratified, so its shares are the same.
    """
    counts = np.bincount(dataset.train.labels, minlength=dataset.num_classes)
    if config.class_weight == "none" or (
            config.class_weight == "auto" and counts.max() <= IMBALANCE * counts.min()):
        return None
    present = np.flatnonzero(counts)
    weights = compute_class_weight("balanced", classes=present, y=dataset.train.labels)
    return {int(c): float(w) for c, w in zip(present, weights)}


def describe_class_weights(weights: dict[int, float] | None, dataset) -> str:
    """The log line that says how the classes are weighed, or "" when all weigh alike."""
    if weights is None:
        return ""
    counts = np.bincount(dataset.train.labels, minlength=dataset.num_classes)
    heaviest = max(weights, key=weights.get)
    return (f"class weights: balanced, as the training classes have {counts.min()} to "
            f"{counts.max()} images ({dataset.class_names[heaviest]} weighs most, "
            f"{weights[heaviest]:.2f}; --class-weight none weighs all alike)")


def fit_arguments(config: SearchConfig, dataset) -> tuple[tuple, dict]:
    """What every trial's fit gets: the pipelines, epochs and early stopping."""
    stop_early = keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max",
                                               patience=config.patience)
    train = dataset.batches(trial_images(config, dataset), PIPELINE_BATCH, shuffle=True,
                             seed=config.seed)
    val = dataset.batches(dataset.val, PIPELINE_BATCH)
    # The pipeline shuffles; Keras's own shuffle flag would only warn on a tf.data input.
    return (train,), dict(validation_data=val, epochs=config.epochs, callbacks=[stop_early],
                          shuffle=False, verbose=config.verbose)


def trial_images(config: SearchConfig, dataset) -> data.Split:
    """The training images every trial trains on: all of them, or ``config.trial_fraction``
    of each class (stratified and seeded, so every trial and worker gets the same ones)."""
    if config.trial_fraction >= 1:
        return dataset.train
    return data.stratified_split(dataset.train, config.trial_fraction, config.seed,
                                 dataset.class_names, dataset.name, "trial subset")[1]


def check_backbones(hypermodel, weights):
    """Load every backbone the space allows with ``weights`` once, before the first trial: a
    missing weights file fails the search now (WeightsError: which file, where to put it)
    rather than trial by trial. Keras keeps downloads, so the trials then find them."""
    if weights is None or "backbone" not in space.allowed(hypermodel.rules, "family"):
        return
    names = space.allowed(hypermodel.rules, "backbone")
    if weights != "imagenet" and len(names) > 1:
        raise ConfigError(f"--weights {weights}: one weights file fits one backbone, and the "
                          f"space has {len(names)}; choose one with --backbone NAME")
    for name in names:
        entry = backbones.get(name)
        entry.build((*entry.input_size(hypermodel.input_shape[:2]), 3), weights)
        keras.backend.clear_session()
    log.info(f"backbone weights ({weights}) ready for {', '.join(names)}")


def warm_start(config, dataset, rules) -> dict[str, dict]:
    """The configurations the first trials try, by name: the defaults; a backbone's defaults
    when backbones join a search of scratch families; then (when the space is not the user's
    own) a few classic presets that fit the input and the trial budget."""
    configurations = {"defaults": {}}
    families = space.allowed(space.with_defaults(rules), "family")
    if "backbone" in families and len(families) > 1:
        configurations["backbone defaults"] = {"family": "backbone"}
    if config.space or config.preset:
        return configurations
    starts = presets.WARM_START if config.trial_limit is None else \
        presets.WARM_START[:config.trial_limit // 4]
    for name, changes in starts:
        values = {**presets.preset(name, dataset.input_shape), **changes}
        try:
            space.size_model(kt.HyperParameters(), dataset.input_shape, dataset.num_classes,
                             config.max_params, {**values, **rules})
        except SizingError:
            continue
        shifted = f" with translation {changes['translation']}" if "translation" in changes else ""
        configurations[f"{name}{shifted}"] = values
    return configurations
