"""Transfer learning: a new head on a frozen pretrained backbone, then fine-tuning its top.

The model (see `space.backbone_features`) is: augmentation, `blocks.BackboneInput`, the backbone
(frozen, batch norm in inference mode), global pooling (the layer named `FEATURES`), the head.

A backbone without weights (``--weights none``) has nothing to transfer: it trains whole, from
scratch, in one phase. With weights, phase 1 trains the head with the backbone frozen. Without
augmentation the frozen backbone gives every image the same features in every epoch, so they are
computed once and kept (`FeatureCache`) for every epoch and every trial that shares the backbone,
its input size, the pooling and the weights; the head then trains on vectors, the classic
"extract features, then fit a classifier" recipe. Phase 2, when ``fine_tune`` is on, unfreezes
the top ``unfreeze`` fraction of the backbone's layers (batch norm stays frozen), recompiles
with the learning rate times ``fine_tune_lr_ratio`` and trains the whole model on images from
epoch ``head_epochs``.
"""

import collections
import hashlib
import time

import keras
import numpy as np
import tensorflow as tf

FEATURES = "backbone_pool"  # the layer whose output the head starts from
BACKBONE = "backbone"


def rebatch(data, batch_size: int):
    """A batched tf.data pipeline at ``batch_size``; anything else as it is."""
    return data.rebatch(batch_size) if hasattr(data, "rebatch") else data


def fit(model, hp, train, *, batch_size: int, epochs: int, validation_data=None, callbacks=(),
        initial_epoch: int = 0, schedule=None, cache=None, **kwargs):
    """Train a backbone model in its two phases; a History of all epochs, as `Model.fit` gives.

    ``train``/``validation_data``: batched tf.data pipelines of (images, labels).
    ``callbacks`` (the tuner's, early stopping) see the whole model in both phases.
    ``schedule(base, end, start)``: a learning-rate callback for each phase, or None.
    ``cache``: a `FeatureCache` for phase 1, or None to run the backbone every epoch.
    ``initial_epoch`` (Hyperband's continuations) may start in either phase.
    """
    callbacks = list(callbacks)
    if not pretrained(model):  # random weights: one phase, the whole network trains
        own = [schedule(hp.get("learning_rate"), epochs, initial_epoch)] if schedule else []
        return model.fit(rebatch(train, batch_size), validation_data=validation_data,
                         callbacks=callbacks + own, epochs=epochs, initial_epoch=initial_epoch,
                         **kwargs)
    fine_tune = hp.get("fine_tune")
    head_epochs = min(hp.get("head_epochs"), epochs) if fine_tune else epochs
    histories = []
    if initial_epoch < head_epochs:
        phase = dict(epochs=head_epochs, initial_epoch=initial_epoch, **kwargs)
        own = [schedule(hp.get("learning_rate"), head_epochs, initial_epoch)] if schedule else []
        if cache is not None and not augmented(model):
            histories.append(_fit_head(model, train, validation_data, batch_size, cache,
                                       callbacks, own, phase))
        else:
            histories.append(model.fit(rebatch(train, batch_size),
                                       validation_data=validation_data,
                                       callbacks=callbacks + own, **phase))
    start = max(initial_epoch, head_epochs)
    if fine_tune and start < epochs:
        unfreeze(model.get_layer(BACKBONE), hp.get("unfreeze"))
        rate = hp.get("learning_rate") * hp.get("fine_tune_lr_ratio")
        model.compile(optimizer=_optimizer_like(model.optimizer, rate), loss=model.loss,
                      metrics=["accuracy"])
        own = [schedule(rate, epochs, start)] if schedule else []
        histories.append(model.fit(rebatch(train, batch_size), validation_data=validation_data,
                                   callbacks=callbacks + own, epochs=epochs, initial_epoch=start,
                                   **kwargs))
    return _joined(histories)


def pretrained(model) -> bool:
    """Whether the backbone came with weights: then it starts frozen (`blocks.KerasOps`)."""
    return not model.get_layer(BACKBONE).trainable


def augmented(model) -> bool:
    """Whether the model transforms its training images at random (then features change)."""
    return any(layer.name.startswith("aug_") for layer in model.layers)


def unfreeze(base: keras.Model, fraction: float) -> int:
    """Make the top ``fraction`` of ``base``'s layers that have weights trainable (at least
    one); batch norm stays frozen. Returns the number of layers made trainable."""
    weighted = [layer for layer in base.layers if layer.weights]
    count = max(1, round(fraction * len(weighted)))
    base.trainable = True
    for layer in weighted[:-count]:
        layer.trainable = False
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return count


def head_model(model) -> keras.Model:
    """The layers after `FEATURES` as a model of their own, sharing the weights."""
    names = [layer.name for layer in model.layers]
    features = model.get_layer(FEATURES)
    x = inputs = keras.Input(shape=features.output.shape[1:], name="features")
    for layer in model.layers[names.index(FEATURES) + 1:]:
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def _fit_head(model, train, validation_data, batch_size, cache, callbacks, own, phase):
    extractor = keras.Model(model.inputs, model.get_layer(FEATURES).output)
    key = feature_key(model)
    head = head_model(model)
    head.compile(optimizer=_optimizer_like(model.optimizer), loss=model.loss,
                 metrics=["accuracy"])
    features, labels = cache.features(train, extractor, key)
    data = (tf.data.Dataset.from_tensor_slices((features, labels))
            .shuffle(len(labels), reshuffle_each_iteration=True)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    if validation_data is not None:
        features, labels = cache.features(validation_data, extractor, key)
        validation_data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(256)
    relayed = [Relay(callback, model) for callback in callbacks]
    return head.fit(data, validation_data=validation_data, callbacks=relayed + own, **phase)


def feature_key(model) -> tuple:
    """What the frozen features depend on: backbone, input size, pooling and the weights
    (a sample of every weight: a randomly initialised or fine-tuned backbone is a new one)."""
    digest = hashlib.sha1()
    for weight in model.get_layer(BACKBONE).weights:
        digest.update(np.asarray(weight).ravel()[::97].tobytes())
    source = model.get_layer("backbone_input")
    return (source.backbone, source.size, type(model.get_layer(FEATURES)).__name__,
            digest.hexdigest())


class FeatureCache:
    """Features of frozen backbones, per input pipeline and `feature_key`, least recently used
    dropped first. ``hits``, ``misses`` and ``seconds`` (spent extracting) say what it saved."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._entries = collections.OrderedDict()
        self.hits = self.misses = 0
        self.seconds = 0.0

    def features(self, pipeline, extractor, key) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) of one pass over ``pipeline``, a batched (images, labels) one."""
        entry = (id(pipeline), key)
        if entry in self._entries:
            self._entries.move_to_end(entry)
            self.hits += 1
            return self._entries[entry][1:]
        started = time.monotonic()
        features, labels = [], []
        for images, batch_labels in pipeline:
            features.append(np.asarray(extractor.predict_on_batch(images)))
            labels.append(np.asarray(batch_labels))
        # The pipeline is kept with its features so its id cannot be reused by another.
        self._entries[entry] = (pipeline, np.concatenate(features), np.concatenate(labels))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        self.misses += 1
        self.seconds += time.monotonic() - started
        return self._entries[entry][1:]

    def clear(self):
        self._entries.clear()


FEATURE_CACHE = FeatureCache()


class Relay(keras.callbacks.Callback):
    """Runs ``callback`` on the whole model while only its head trains: checkpoints save, and
    the tuner sees, the whole model; a stop the callback asks for stops the head's training."""

    def __init__(self, callback, model):
        super().__init__()
        self.callback, self.whole, self.trained = callback, model, None
        callback.set_model(model)

    def set_model(self, model):
        self.trained = model

    def set_params(self, params):
        self.callback.set_params(params)

    def on_train_begin(self, logs=None):
        self.whole.stop_training = False
        self.callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        self.callback.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.callback.on_epoch_end(epoch, logs)
        if self.whole.stop_training:
            self.trained.stop_training = True

    def on_train_batch_begin(self, batch, logs=None):
        self.callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.callback.on_train_batch_end(batch, logs)


def _optimizer_like(optimizer, learning_rate=None):
    """A fresh optimizer of ``optimizer``'s kind and settings (its state left behind)."""
    config = optimizer.get_config()
    if learning_rate is not None:
        config["learning_rate"] = float(learning_rate)
    return type(optimizer).from_config(config)


def _joined(histories) -> keras.callbacks.History:
    history = histories[-1]
    joined = collections.defaultdict(list)
    for part in histories:
        for name, values in part.history.items():
            joined[name].extend(values)
    history.history = dict(joined)
    history.epoch = [e for part in histories for e in part.epoch]
    return history
