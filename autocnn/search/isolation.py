"""Each trial in a fresh process (``--isolate``), for when memory must not build up at all, or
a trial that crashes the process (a segfault, the kernel's out-of-memory killer) must fail only
itself.

The process loads the data, rebuilds the tuner from its project folder and runs the tuner's own
``run_trial`` (so Hyperband's continuations and the best-epoch checkpoint work as in one
process), logging its epochs to the trial's MLflow run. The search process gets back the
histories and the hyperparameters the model declared while it was built.
"""

import dataclasses
import multiprocessing
import os
import signal
import sys
import traceback

from autocnn.errors import TrialProcessError


class Isolated:
    """Runs a trial of the search ``config`` describes in a fresh process; called by
    tuners.TrackedTrials.run_trial with the trial, its MLflow run and its deadline."""

    def __init__(self, config, tracker):
        # The child reloads the project the search process created: never overwrite it.
        self.config = dataclasses.replace(config, overwrite=False, isolate=False)
        self.tracker = tracker

    def __call__(self, trial, run_id: str, deadline: float | None):
        import keras
        import keras_tuner as kt

        context = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing inherited
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_run_trial, daemon=True,
            args=(send, self.config, trial.get_state(), run_id, self.tracker.parent_run_id,
                  self.tracker.search_id, deadline))
        process.start()
        send.close()
        try:
            result = receive.recv()
        except EOFError:  # the process died without a word
            result = None
        except BaseException:  # Ctrl-C twice, SIGTERM: stop the trial now
            process.kill()
            process.join()
            raise
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join()
        if result is None:
            code = process.exitcode
            killed = " (killed: out of memory?)" if code in (-signal.SIGKILL, 137) else ""
            raise TrialProcessError(f"the trial's process ended with exit code {code}{killed}")
        if "error" in result:
            raise TrialProcessError(result["error"])
        trial.hyperparameters = kt.HyperParameters.from_config(result["hyperparameters"])
        histories = []
        for logs in result["histories"]:
            history = keras.callbacks.History()
            history.history = logs
            histories.append(history)
        return histories


def _run_trial(send, config, trial_state, run_id, parent_run_id, search_id, deadline):
    """The trial's process: everything it returns goes through ``send``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the search process's to handle
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not config.verbose:  # KerasTuner announces its reload; the search prints the progress
        sys.stdout = open(os.devnull, "w")
    try:
        from keras_tuner.src.engine.trial import Trial

        from autocnn.search.budget import Deadline
        from autocnn.search.prepare import bootstrap, fit_arguments
        from autocnn.search.tuners import create_tuner
        from autocnn.tracking import Tracker

        trial = Trial.from_state(trial_state)
        prepared = bootstrap(config, seed=config.seed + int(trial.trial_id))
        tracker = Tracker(config.tracking_uri, config.project_name)
        tracker.parent_run_id, tracker.search_id = parent_run_id, search_id
        tuner = create_tuner(config, prepared.hypermodel, tracker,
                             strategy=prepared.strategy, budget=Deadline(lambda: deadline))
        tuner.runs.adopt(trial.trial_id, run_id)
        args, kwargs = fit_arguments(config, prepared.dataset)
        histories = tuner.run_trial(trial, *args, **kwargs)
        send.send({"histories": [h.history for h in histories],
                   "hyperparameters": trial.hyperparameters.get_config()})
    except BaseException:
        send.send({"error": traceback.format_exc()})
    finally:
        send.close()
