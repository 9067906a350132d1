"""The final training: the best configuration retrained on train + val, or the last rung (its
finalists each trained on all the training images, or its best trial alone on train + val), or
the best trial's own model when the budget or --no-retrain says so."""

import contextlib
import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass

import keras
import keras_tuner as kt
import numpy as np

from autocnn.control import format_duration
from autocnn.search.budget import final_on_val, last_rung
from autocnn.search.callbacks import EpochPlan
from autocnn.search.oracles import distinct_best_trials
from autocnn.search.prepare import PIPELINE_BATCH
from autocnn.search.progress import training_progress
from autocnn.search.tuners import OBJECTIVE
from autocnn.space import hypermodel as space
from autocnn.space import schedules, sizing

log = logging.getLogger(__name__)


@dataclass
class FinalModel:
    """What the final training gave: the trial whose configuration it is, the model, its
    history, the epochs it trained (0: the trial's own model), why the trial's model was kept,
    the last rung's finalists (trial id -> best validation accuracy), and the learning-rate
    schedule a finalist trained with, where it is not necessarily the trial's own."""
    trial: kt.engine.trial.Trial
    model: keras.Model
    history: dict | None
    epochs: int
    kept_because: str = ""
    finalists: dict = dataclasses.field(default_factory=dict)
    lr_schedule: str | None = None


def final_model(config, hypermodel, tuner, dataset, budget) -> FinalModel:
    """The best configuration retrained on train + val (``config.retrain``, when the budget
    leaves time for it), the last rung's winner (see budget.last_rung), or the best trial's own
    model at its best epoch (trained on the trial's images)."""
    best = tuner.oracle.get_best_trials(1)[0]
    head = f"best trial {int(best.trial_id) + 1}: val_accuracy {best.score:.4f}; "
    reason = "--no-retrain" if not config.retrain else budget.final_training_refused(
        best, tuner.epoch_seconds.get(best.trial_id))
    if reason:
        reason = reason.replace("training it", "retraining", 1)
        log.info(f"{head}its model at epoch {best.best_step + 1} is the result ({reason})")
        return FinalModel(best, tuner.get_best_models(1)[0], None, 0, reason)
    if final_on_val(config):
        return _on_train_and_val(config, hypermodel, tuner, dataset, budget, best)
    if last_rung(config):
        return _last_rung(config, hypermodel, tuner, dataset, budget)
    log.info(f"{head}retraining on train + val for {best.best_step + 1} epochs")
    model, history = retrain(hypermodel, best, dataset, config, budget.final_deadline())
    return FinalModel(best, model, history, len(history.get("loss", [])))


def _last_rung(config, hypermodel, tuner, dataset, budget) -> FinalModel:
    """The best ``config.finalists`` configurations (distinct), each trained on all the
    training images in turn (see `_finalist`); the one with the best validation accuracy
    wins. A later finalist trains only where the time left affords it the epochs of the best
    so far: fewer could not win, and their minutes would be spent for nothing."""
    finalists = distinct_best_trials(tuner.oracle, config.finalists)
    names = ", ".join(f"{int(t.trial_id) + 1} ({t.score:.4f})" for t in finalists)
    log.info(f"best trial{'s' if len(finalists) > 1 else ''} {names}: training "
             f"{'each' if len(finalists) > 1 else 'it'} on all {len(dataset.train)} training "
             f"images, up to {config.epochs} epochs, stopping {config.patience} epochs after "
             "validation accuracy last improved (the best epoch kept)")
    scores, winner = {}, None
    for trial in finalists:
        skipped = winner is not None and _not_affordable(trial, winner, tuner, budget, config)
        if skipped:
            log.info(f"trial {int(trial.trial_id) + 1}: skipped, {skipped}")
            continue
        finished = _finalist(config, hypermodel, tuner, dataset, budget, trial)
        scores[trial.trial_id] = _best_score(finished)
        if winner is None or scores[trial.trial_id] > _best_score(winner):  # a tie: the first
            winner = finished
    if len(scores) > 1:
        log.info(f"trial {int(winner.trial.trial_id) + 1}'s configuration is the result")
    winner.finalists = scores
    return winner


def _on_train_and_val(config, hypermodel, tuner, dataset, budget, trial) -> FinalModel:
    """The last rung as its best trial alone (see budget.final_on_val), trained on the
    training and validation images together, from its trial's best weights where it has them,
    its learning rate falling on a cosine to the end the budget plans (``config.epochs``
    without one), its last epoch kept: with the validation images trained on, nothing is left
    to choose an epoch or a winner with."""
    number = int(trial.trial_id) + 1
    plan = budget.final_plan(tuner.epoch_seconds.get(trial.trial_id), config.epochs,
                             say=functools.partial(_replanned, number))
    plan = plan or EpochPlan(config.epochs, config.epochs, deadline=math.inf)
    log.info(f"best trial {number} ({trial.score:.4f}): training it on all "
             f"{len(dataset.train) + len(dataset.val)} training and validation images for "
             f"{'about ' * budget.limited}{plan.planned} epochs, its learning rate falling on a "
             "cosine to the last, which is kept (validation cannot choose an epoch it trained on)")
    started = time.monotonic()
    model, history = _from_trial(config, hypermodel, tuner, dataset, budget, trial,
                                 f"final trial {number}", plan, with_val=True)
    epochs = len(history.get("loss", []))
    log.info(f"trial {number}: trained {epochs} epochs on train + val, training accuracy "
             f"{(history.get('accuracy') or [0.0])[-1]:.4f} at the last "
             f"[{format_duration(time.monotonic() - started)}]")
    return FinalModel(trial, model, history, epochs, lr_schedule="cosine")


def _not_affordable(trial, winner, tuner, budget, config) -> str | None:
    """Why a later finalist is not trained, or None: the budget refuses it, or it would get
    fewer epochs than the ``winner`` so far trained."""
    per_epoch = tuner.epoch_seconds.get(trial.trial_id)
    refused = budget.final_training_refused(trial, per_epoch)
    if refused:
        return refused
    epochs = budget.final_epochs(per_epoch, config.epochs)
    if epochs < winner.epochs:
        return (f"the time left affords it about {epochs} epoch{'s' * (epochs != 1)} on all the "
                f"images, fewer than the {winner.epochs} of trial "
                f"{int(winner.trial.trial_id) + 1}")
    return None


def _finalist(config, hypermodel, tuner, dataset, budget, trial) -> FinalModel:
    """One finalist trained on all the training images (see train_in_full), from its trial's
    best weights where it has them (`starting_weights`), for the epochs the time left affords
    (budget.final_plan)."""
    number = int(trial.trial_id) + 1
    plan = budget.final_plan(tuner.epoch_seconds.get(trial.trial_id), config.epochs,
                             say=functools.partial(_replanned, number))
    if plan is not None and plan.planned < config.epochs:
        log.info(f"trial {number}: about {plan.planned} epochs fit in the time left (planned "
                 "again as its epochs are timed); its learning-rate schedule spans them")
    own = trial.hyperparameters.values.get("lr_schedule")
    trained = schedules.trained_schedule(own, planned=plan is not None)
    if own is not None and trained != own:
        log.info(f"trial {number}: its learning rate falls on a cosine to the planned end, "
                 f"not by its own {own} schedule, so that it ends low with the budget")
    started = time.monotonic()
    model, history = _from_trial(config, hypermodel, tuner, dataset, budget, trial,
                                 f"finalist trial {number}", plan)
    finished = FinalModel(trial, model, history, len(history.get("loss", [])),
                          lr_schedule=trained)
    epoch = int(np.argmax(history.get(OBJECTIVE) or [0.0])) + 1
    log.info(f"trial {number}: val_accuracy {_best_score(finished):.4f} on all the training "
             f"images, epoch {epoch} of {finished.epochs} "
             f"[{format_duration(time.monotonic() - started)}]")
    return finished


def _from_trial(config, hypermodel, tuner, dataset, budget, trial, label, plan,
                with_val=False):
    """A last-rung training (see train_in_full) from its trial's best weights where it has
    them (`starting_weights`, one line says so), ended with the budget."""
    start = starting_weights(tuner, trial)
    if start is not None:
        log.info(f"trial {int(trial.trial_id) + 1}: starting from its trial's best weights "
                 f"(epoch {trial.best_step + 1} on a share of the images)")
    return train_in_full(hypermodel, trial, dataset, config, budget.final_deadline(),
                         label=label, plan=plan, start=start, with_val=with_val)


def _replanned(number, before, end, seconds):
    log.info(f"trial {number}: at {format_duration(seconds)} an epoch, {end} epochs fit in "
             f"the time left, not {before}; its learning-rate schedule follows")


def _best_score(final: FinalModel) -> float:
    return max((final.history or {}).get(OBJECTIVE) or [0.0])


def starting_weights(tuner, trial) -> str | None:
    """The checkpoint of ``trial``'s best epoch, which its final training on all the images
    continues from, or None to start afresh: where the trial's checkpoint is not on this
    machine, and for a backbone (its finalist starts from the backbone's own weights, and its
    two phases' optimizers differ). For the space's defaults on Fashion-MNIST, starting there
    gave 0.1 to 0.5 points of test accuracy over starting afresh, the more the longer the
    trial and the shorter the finalist (benchmarks/results/finalist_start.md)."""
    path = tuner._get_checkpoint_fname(trial.trial_id)
    return None if _backbone(trial) or not os.path.exists(path) else path


def _backbone(trial) -> bool:
    return trial.hyperparameters.values.get("family") == "backbone"


def model_summary(model, hypermodel, trial) -> str:
    """The per-layer sizing table (shapes, parameters, receptive fields) and Keras's summary."""
    hp = kt.HyperParameters.from_config(trial.hyperparameters.get_config())
    sized = space.size_model(hp, hypermodel.input_shape, hypermodel.num_classes,
                             rules=hypermodel.rules)
    lines = []
    model.summary(print_fn=lambda line, *_, **__: lines.append(line), line_length=100)
    return (f"{sizing.format_table(sized)}\n\nKeras summary\n\n" + "\n".join(lines) + "\n")


def _fresh_model(hypermodel, trial, config) -> keras.Model:
    keras.utils.set_random_seed(config.seed)
    keras.backend.clear_session()
    strategy = hypermodel.strategy
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return hypermodel.build(trial.hyperparameters)


def retrain(hypermodel, trial, dataset, config, callbacks=()):
    """Train the trial's configuration afresh on train + val for its best number of epochs,
    its progress shown (see progress.training_progress)."""
    model = _fresh_model(hypermodel, trial, config)
    both = dataset.batches(dataset.train.concat(dataset.val), PIPELINE_BATCH, shuffle=True,
                            seed=config.seed)
    callbacks = [*callbacks, *_progress("retraining", trial, hypermodel, config)]
    history = hypermodel.fit(trial.hyperparameters, model, both, epochs=trial.best_step + 1,
                             shuffle=False, verbose=config.verbose, callbacks=callbacks)
    return model, history.history


def train_in_full(hypermodel, trial, dataset, config, callbacks=(), label="training",
                  plan=None, start=None, with_val=False):
    """The last rung (see budget.last_rung): the trial's configuration trained on all the
    training images (``with_val``: and the validation images, to its last epoch), from the
    weights (and optimizer state) of the checkpoint ``start`` or afresh, for up to
    ``config.epochs`` or the epochs of ``plan`` (a callbacks.EpochPlan); without ``with_val``
    stopped ``config.patience`` epochs after validation accuracy last improved, with the
    weights of its best epoch. Its progress is shown as ``label``."""
    callbacks = [*callbacks, *_progress(label, trial, hypermodel, config)]
    model = _fresh_model(hypermodel, trial, config)
    if start is not None:
        model.optimizer.build(model.trainable_variables)  # its state is in the checkpoint too
        model.load_weights(start)
    images = dataset.train.concat(dataset.val) if with_val else dataset.train
    train = dataset.batches(images, PIPELINE_BATCH, shuffle=True, seed=config.seed)
    val = None if with_val else dataset.batches(dataset.val, PIPELINE_BATCH)
    stop = [] if with_val else [keras.callbacks.EarlyStopping(
        monitor=OBJECTIVE, mode="max", patience=config.patience, restore_best_weights=True)]
    # A backbone's two phases are sized from the epochs given: it gets the plan's first guess.
    epochs = plan.planned if plan is not None and _backbone(trial) else config.epochs
    history = hypermodel.fit(trial.hyperparameters, model, train, validation_data=val,
                             epochs=epochs, shuffle=False, verbose=config.verbose,
                             plan=plan, callbacks=[*stop, *([plan] if plan else []), *callbacks])
    return model, history.history


def _progress(label, trial, hypermodel, config) -> list:
    return training_progress(label, hypermodel.batch_size(trial.hyperparameters),
                             config.verbose)
