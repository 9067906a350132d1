"""autocnn: search for a good convolutional image classifier with keras-tuner, tracked in MLflow."""

__version__ = "0.1.0"
