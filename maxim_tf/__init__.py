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
import os
import platform
import sys

__version__ = "0.1.0"


def prefer_onednn():
    """Ask TensorFlow for its oneDNN CPU kernels on x86-64 CPUs; call it before TensorFlow is imported.

    TensorFlow turns oneDNN on by itself only where the CPU has AVX-512 VNNI, bf16 or
    AMX units; on AVX2-only CPUs (AMD Zen 2/3, older Intel) it falls back to Eigen,
    whose matmul measured 68 GFLOP/s against oneDNN's 135 on a 2-vCPU Zen 3 VM, and
    MAXIM's fused graph (GELU in the matmul, ``_MklLayerNorm``) is oneDNN's. S-3 at
    256² / 512² ran 1.54x / 2.35x faster there (docs/benchmarks.md).

    The ``maxim-tf`` command calls this for its own process. ``import maxim_tf`` does
    not: a library does not change its host program's environment. A Python program
    opts in by calling ``maxim_tf.prefer_onednn()`` first (or by setting
    ``TF_ENABLE_ONEDNN_OPTS=1`` itself). It sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the
    variable is already set (``TF_ENABLE_ONEDNN_OPTS=0`` set by the user wins); once
    TensorFlow is imported it changes nothing.

    Returns:
        True when oneDNN was requested (or already requested by the environment), False
        otherwise (not x86-64, TensorFlow already imported, or the user turned it off).
    """
    if "tensorflow" in sys.modules or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1") == "1"


# public name -> module that defines it
_LAZY = {
    "MAXIM": "maxim_tf.model",
    "Restorer": "maxim_tf.restore",
    "VARIANTS": "maxim_tf.presets",
    "variant_config": "maxim_tf.presets",
    "MaximError": "maxim_tf.errors",
    "load_model": "maxim_tf.hub",
}
_SUBMODULES = ("layers", "model", "partition", "resize", "presets", "restore", "image_io", "metrics", "errors",
               "conversion", "export", "training")

__all__ = sorted(_LAZY) + ["layers", "prefer_onednn", "__version__"]


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
