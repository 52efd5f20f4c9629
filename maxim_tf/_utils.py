"""Small helpers shared by the core modules (imports nothing heavy: no TensorFlow, no Keras).

The one home of:

* :func:`pair` -- an int or an ``(a, b)`` pair as ``(int, int)`` (sizes, multiples);
* :func:`last_output` -- the restored image from a model output that may be a
  list/tuple of every stage and scale (the restored image is the last one).
"""

import numbers


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
