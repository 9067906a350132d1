"""autocnn's Keras layers and loss, registered with Keras as soon as both are imported.

A saved backbone model holds `blocks.BackboneInput`, and Keras loads a layer of a package
other than its own only once the layer is registered (it never imports a module named in a
file it reads). Registering on ``import autocnn`` would import TensorFlow with it, seconds that
``autocnn --help`` should not wait; so ``import autocnn`` registers the layers at once when
Keras is already imported, and otherwise right after Keras's own import finishes. Either way
``import autocnn`` is all that ``keras.saving.load_model``, ``mlflow.keras.load_model`` and
``mlflow.pyfunc.load_model`` need.
"""

import importlib.abc
import importlib.machinery
import sys


def register_with_keras() -> None:
    """Register the layers now if Keras is imported, else once it is."""
    if "keras" in sys.modules:
        _register()
    elif not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())


def _register() -> None:
    # Their decorators register the layers and the loss.
    import autocnn.space.blocks  # noqa: F401
    import autocnn.space.losses  # noqa: F401


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds ``keras`` as the other finders would, and registers the layers once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # one import of keras is all it waits for
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # what else the module's loader offers (resources, source)
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _register()
