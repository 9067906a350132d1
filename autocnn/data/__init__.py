"""The data layer: every source (digits, Fashion-MNIST, IDX, .npz, tensorflow-datasets, a folder
of images) loaded into one `Dataset` with seeded, stratified splits and a fingerprint.

TensorFlow-free on import: `tf.data` loads only when a `Dataset` makes batches.
"""

from autocnn.data.load import load
from autocnn.data.splits import (
    Dataset,
    Loaded,
    Split,
    absolute_source,
    describe_fingerprint,
    fingerprint_digest,
    stratified_split,
)

__all__ = ["Dataset", "Loaded", "Split", "absolute_source", "describe_fingerprint",
           "fingerprint_digest", "load", "stratified_split"]
