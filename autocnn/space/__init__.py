"""What can be built: the hyperparameter space (rules, presets, block families, backbones) and
each architecture's size before it is built (sizing).

The rules, presets, sizing and backbone registry import no TensorFlow, so the command line checks
a space before it loads; the hypermodel and the blocks build Keras models.
"""
