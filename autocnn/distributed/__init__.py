"""keras-tuner's chief/worker engine and what autocnn adds to it: a heartbeat beside the oracle,
silent workers' trials requeued, local worker processes and a local MLflow tracking server."""
