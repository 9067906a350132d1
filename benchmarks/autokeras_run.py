"""AutoKeras's ImageClassifier on arrays, as a user would run it, stopped at a deadline.

Runs in AutoKeras's own virtual environment (it needs another Keras than autocnn's), started by
`fashion_mnist.py --only autokeras`:

    python autokeras_run.py FOLDER DEADLINE SEED

FOLDER holds data.npz (x_train, y_train, x_val, y_val, x_test); DEADLINE is the wall-clock time
(time.time()) its search ends at: the running trial stops there (its partial epoch is
validated) and no other starts. It writes FOLDER/result.json: the test split's predicted
labels, the best model's parameters, its inference speed, the trials run (the predictions
are null when no trial finished) and the anytime curve: at each epoch's end, the clock
(time.time()) and the best validation accuracy so far.
"""

import json
import sys
import time
from pathlib import Path


class OutOfTime(BaseException):
    """Raised as a trial begins after the deadline: a BaseException, so that KerasTuner does not
    take it for the trial's own failure and go on to the next."""


def main(folder: str, deadline: float, seed: int) -> None:
    import autokeras as ak
    import keras
    import numpy as np

    curve = []  # kept here: KerasTuner copies the callbacks for each trial

    class Deadline(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if time.time() >= deadline:
                raise OutOfTime

        def on_train_batch_end(self, batch, logs=None):
            if time.time() >= deadline:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            score = (logs or {}).get("val_accuracy")
            if score is not None:
                curve.append((time.time(), max([float(score), *(s for _, s in curve)])))

    data = np.load(Path(folder) / "data.npz")
    keras.utils.set_random_seed(seed)
    classifier = ak.ImageClassifier(overwrite=True, seed=seed,
                                    directory=str(Path(folder) / "autokeras"))
    try:
        classifier.fit(data["x_train"], data["y_train"],
                       validation_data=(data["x_val"], data["y_val"]), callbacks=[Deadline()],
                       verbose=2)
    except OutOfTime:
        pass  # the search ended at the deadline; its best trial so far is the result
    # The trial begun after the deadline never trained: it does not count.
    trials = sum(t.score is not None for t in classifier.tuner.oracle.trials.values())
    best = classifier.tuner.oracle.get_best_trials(1)
    result = {"trials": trials, "predicted": None, "curve": curve}
    if best and best[0].score is not None:
        model = classifier.tuner.get_best_models(1)[0]
        model.predict(data["x_test"][:256], verbose=0)  # warm-up
        started = time.perf_counter()
        probabilities = model.predict(data["x_test"], batch_size=256, verbose=0)
        result.update(predicted=np.argmax(probabilities, axis=-1).tolist(),
                      parameters=int(model.count_params()),
                      images_per_second=len(data["x_test"]) / (time.perf_counter() - started))
    (Path(folder) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
