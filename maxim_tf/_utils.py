"""Small helpers shared by the core modules (imports nothing heavy: no TensorFlow, no Keras).

The one home of:

* :func:`pair` -- an int or an ``(a, b)`` pair as ``(int, int)`` (sizes, multiples);
* :func:`last_output` -- the restored image from a model output that may be a
  list/tuple of every stage and scale (the restored image is the last one);
* :func:`env_number` -- a number read from an environment variable (every numeric
  environment variable maxim_tf reads goes through it, so a bad value is an error
  naming the variable and the value);
* :data:`PRECISIONS` and :data:`BACKENDS` -- the compute precisions and the runtimes a
  model can run on (``MAXIM.with_precision``, ``Restorer``, ``--precision``,
  ``--backend``).
"""

import math
import numbers
import os

# Compute precision -> the Keras dtype policy of the layers (layer-norm statistics stay
# float32 in bfloat16). Here, not in model.py, so that restore.py and the command line
# need no Keras import to check a value.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# "auto": shipped models and models with a verified fast-start twin run on LiteRT,
# others on Keras (see maxim_tf.restore.Restorer).
BACKENDS = ("auto", "keras", "litert")


def pair(value):
    """``value`` as an ``(int, int)`` pair: an int ``n`` gives ``(n, n)``."""
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"Expected an int or a pair of ints. Received: {value}")
    return int(value[0]), int(value[1])


def last_output(outputs):
    """The restored image of a model output: the tensor itself, or the last element of a
    (nested) list/tuple of outputs."""
    while isinstance(outputs, (list, tuple)):
        outputs = outputs[-1]
    return outputs


def env_number(name, default, kind=float, minimum=None, positive=False):
    """The number in the environment variable ``name``, or ``default`` when it is unset or
    empty.

    Args:
        name: the variable, e.g. ``"MAXIM_TF_DOWNLOAD_TIMEOUT"``.
        default: returned when the variable is unset or blank.
        kind: ``float`` or ``int``.
        minimum: smallest value allowed (inclusive), if any.
        positive: require a value > 0.

    Raises:
        maxim_tf.errors.UsageError: one line naming the variable, its value and what is
            expected (``maxim-tf``: exit 2).
    """
    from maxim_tf.errors import UsageError

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    what = "an integer" if kind is int else "a number"
    if positive:
        what += " > 0"
    elif minimum is not None:
        what += f" >= {minimum}"
    try:
        value = kind(text)
    except ValueError as e:
        raise UsageError(f"environment variable {name}={text!r} is not valid: expected "
                         f"{what}") from e
    if (kind is float and not math.isfinite(value)) or (positive and value <= 0) or (
            minimum is not None and value < minimum):
        raise UsageError(f"environment variable {name}={text!r} is out of range: expected "
                         f"{what}")
    return value
