"""The resizes of MAXIM: antialiased bilinear downscale, bilinear upscale (both as
``jax.image.resize`` computes them) and nearest downscale, in the graph form and
in the size-independent form of the portable (TFLite / ONNX) graph.

They work on NHWC tensors whose H and W may be unknown until run time; each has
a reference test in ``tests/test_resize.py``.
"""

import numpy as np
import tensorflow as tf

from maxim_tf.partition import dims


def triangle_taps(factor):
    """1-D taps of the antialiased bilinear ×1/factor downscale.

    ``jax.image.resize(..., "bilinear")`` widens the triangle kernel by the
    scale factor when downsampling. For an even integer factor f each output
    pixel sees 2f input pixels at distances |k - f + 0.5| from its centre,
    weighted 1 - d/f and normalised to sum 1: f=2 gives [1,3,3,1]/8, f=4 gives
    [1,3,5,7,7,5,3,1]/32.
    """
    if factor < 2 or factor % 2:
        raise ValueError(f"Downscale factor must be an even integer >= 2. Received: factor={factor}")
    d = np.abs(np.arange(2 * factor) - factor + 0.5)
    taps = (1.0 - d / factor) / factor
    return taps.astype(np.float64)


def antialiased_downsample(x, factor):
    """Antialiased bilinear ×1/factor downscale, as ``jax.image.resize``.

    Written as a strided depthwise convolution with the separable triangle
    kernel, divided by the same convolution of a map of ones so the border
    pixels are renormalised over in-image taps only (what JAX does). Unlike
    ``tf.image.resize(antialias=True)`` (ScaleAndTranslate) this converts to
    builtin TFLite ops and to standard ONNX, and compiles with XLA.

    Args:
        x: ``[N, H, W, C]``, H and W divisible by ``factor``.
        factor: even integer (2, 4, ...).
    """
    taps = triangle_taps(factor)
    kernel2d = np.outer(taps, taps)
    c = x.shape[-1]
    pad = factor // 2
    paddings = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    k = tf.constant(kernel2d[:, :, None, None], dtype=x.dtype)
    strides = [1, factor, factor, 1]
    y = tf.nn.depthwise_conv2d(tf.pad(x, paddings), tf.tile(k, [1, 1, c, 1]), strides, "VALID")
    _, h, w, _ = dims(x)
    ones = tf.ones(tf.stack([1, h, w, 1]), dtype=x.dtype)
    norm = tf.nn.depthwise_conv2d(tf.pad(ones, paddings), k, strides, "VALID")
    return y / norm


def _edges(x, axis):
    """First entry, middle and last entry of ``x`` along ``axis`` (1 or 2), as
    slices whose bounds do not depend on the size (XNNPACK takes them)."""
    if axis == 1:
        return x[:, :1], x[:, 1:-1], x[:, -1:]
    return x[:, :, :1], x[:, :, 1:-1], x[:, :, -1:]


def concat_tree(parts, axis):
    """``tf.concat`` of many tensors as a tree of concatenations of at most 4
    (LiteRT's XNNPACK delegate takes CONCATENATION of up to 4 inputs)."""
    if len(parts) <= 4:
        return tf.concat(parts, axis) if len(parts) > 1 else parts[0]
    step = -(-len(parts) // 4)
    return concat_tree([concat_tree(parts[i:i + step], axis)
                        for i in range(0, len(parts), step)], axis)


def antialiased_downsample_any_size(x, factor):
    """:func:`antialiased_downsample` written with ops whose shapes do not depend
    on the input size, for the portable (TFLite / ONNX) graph.

    The renormalisation over in-image taps only changes the first and last
    output row and column (the padding, ``factor / 2``, is less than the stride):
    they are multiplied by ``1 / (in-image weight)`` instead of dividing by the
    convolution of a map of ones. In a dynamic-size TFLite file that map was a
    size-dependent ``FILL`` and the division an int8 ``DIV``, both left outside
    the XNNPACK delegate. Needs at least 2 output rows and columns.
    """
    taps = triangle_taps(factor)
    c = x.shape[-1]
    pad = factor // 2
    k = np.outer(taps, taps)[:, :, None, None]
    y = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]]),
                               tf.constant(np.tile(k, (1, 1, c, 1)), x.dtype),
                               [1, factor, factor, 1], "VALID")
    scale = tf.constant(1.0 / (1.0 - taps[:pad].sum()), x.dtype)
    for axis in (1, 2):
        first, middle, last = _edges(y, axis)
        y = tf.concat([first * scale, middle, last * scale], axis)
    return y


def bilinear_phase_taps(factor):
    """``[factor, 3]``: for each output phase k of a ×factor half-pixel bilinear
    upscale, the weights of input pixels i-1, i, i+1 for output pixel
    ``factor * i + k`` (it samples the input at ``i + (2k + 1 - factor) / (2 factor)``)."""
    taps = np.zeros((factor, 3))
    for k in range(factor):
        d = (2 * k + 1 - factor) / (2 * factor)
        taps[k] = [-d, 1 + d, 0.0] if d < 0 else [0.0, 1 - d, d]
    return taps


def bilinear_upsample_any_size(x, factor):
    """:func:`bilinear_upsample` written with ops whose shapes do not depend on the
    input size, for the portable (TFLite / ONNX) graph: the edges are repeated
    (the clamping of half-pixel bilinear), each of the ``factor²`` output phases
    is a 3x3 depthwise convolution and ``DEPTH_TO_SPACE`` interleaves them. A
    dynamic-size ``RESIZE_BILINEAR`` takes its output size from the input's shape
    at run time, which LiteRT's XNNPACK delegate does not accept (the int8 one ran
    on LiteRT's reference kernel).
    """
    c = x.shape[-1]
    for axis in (1, 2):
        first, _, last = _edges(x, axis)
        x = tf.concat([first, x, last], axis)
    taps = bilinear_phase_taps(factor)
    phases = [tf.nn.depthwise_conv2d(
                  x, tf.constant(np.tile(np.outer(taps[kh], taps[kw])[:, :, None, None], (1, 1, c, 1)),
                                 x.dtype), [1, 1, 1, 1], "VALID")
              for kh in range(factor) for kw in range(factor)]
    return tf.nn.depth_to_space(concat_tree(phases, 3), factor)


def bilinear_upsample(x, factor):
    """Bilinear ×factor upscale with half-pixel centres (= ``jax.image.resize``)."""
    _, h, w, _ = dims(x)
    y = tf.image.resize(x, tf.stack([h * factor, w * factor]), method="bilinear")
    return tf.cast(y, x.dtype)


def nearest_downsample(x, factor):
    """Nearest-neighbour ×1/factor downscale; equals ``jax.image.resize(..., "nearest")``.

    JAX samples the input at (i + 0.5) * f - 0.5 rounded, i.e. index f*i + f//2
    for even f: a strided slice, which converts to every runtime.
    """
    if factor == 1:
        return x
    off = factor // 2
    return x[:, off::factor, off::factor, :]
