"""The search from start to end: one bootstrap for every process, keras-tuner's tuners with
MLflow tracking and the time budget mixed in, trials in-process, isolated or on workers, and the
final training of the best configurations."""
