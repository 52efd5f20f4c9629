"""maxim_tf: MAXIM (Multi-Axis MLP for Image Processing) in TensorFlow / Keras 3.

The public names are imported lazily (PEP 562), so ``import maxim_tf`` and the
``maxim-tf`` command's ``--help`` do not pay for importing TensorFlow; the first
use of ``maxim_tf.MAXIM``, ``maxim_tf.Restorer`` ... imports what it needs.

Loading a saved MAXIM with plain Keras needs its layers registered: use
``maxim_tf.load_model(path)``, or ``import maxim_tf.model`` before
``keras.saving.load_model(path)`` (when Keras is already imported, ``import
maxim_tf`` registers them at once, since TensorFlow is then loaded anyway).
"""

import importlib
import sys

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "MAXIM": "maxim_tf.model",
    "Restorer": "maxim_tf.restore",
    "VARIANTS": "maxim_tf.presets",
    "CHECKPOINTS": "maxim_tf.presets",
    "variant_config": "maxim_tf.presets",
    "MaximError": "maxim_tf.errors",
    "load_model": "maxim_tf.hub",
}
_SUBMODULES = ("layers", "model", "ops", "presets", "restore", "image_io", "metrics", "errors",
               "conversion", "export", "training")

__all__ = sorted(_LAZY) + ["layers", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"maxim_tf.{name}")
    else:
        raise AttributeError(f"module 'maxim_tf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


if "keras" in sys.modules:
    importlib.import_module("maxim_tf.model")
