"""Pure tensor reshuffles and resizes used by the MAXIM layers.

Everything here works on NHWC tensors whose H and W may be unknown until run
time (``tf.shape``), so one built model serves every input size. These are the
places where shape bugs live; each has a round-trip or reference test in
``tests/test_ops.py``.
"""

import math

import numpy as np
import tensorflow as tf


def _dims(x):
    """The dimensions of ``x``: static ints where known, else scalar tensors.

    One ``Shape`` + ``Unpack`` (not a strided slice per axis): S-3 traces ~3 000
    of these, and op count is what tracing and graph optimisation time scale with.
    """
    static = x.shape.as_list()
    if None not in static:
        return static
    dynamic = tf.unstack(tf.shape(x), num=len(static))
    return [s if s is not None else d for s, d in zip(static, dynamic)]


def block_images(x, patch_size):
    """Split an image into non-overlapping patches.

    ``n (gh fh) (gw fw) c -> n gh gw fh fw c`` (returned 6-D so callers can
    pick the axes to mix without another reshape).

    Args:
        x: ``[N, H, W, C]`` tensor.
        patch_size: ``(fh, fw)``; must divide H and W.

    Returns:
        ``[N, gh, gw, fh, fw, C]`` tensor.
    """
    n, h, w, c = _dims(x)
    fh, fw = patch_size
    x = tf.reshape(x, [n, h // fh, fh, w // fw, fw, c])
    return tf.transpose(x, [0, 1, 3, 2, 4, 5])


def unblock_images(x):
    """Inverse of :func:`block_images`: ``[N, gh, gw, fh, fw, C] -> [N, H, W, C]``."""
    n, gh, gw, fh, fw, c = _dims(x)
    x = tf.transpose(x, [0, 1, 3, 2, 4, 5])
    return tf.reshape(x, [n, gh * fh, gw * fw, c])


def _mix_positions(x, sizes, mix_outer, kernel, bias):
    """Mix one of the two position axes of a blocked image with a matrix.

    x is viewed as ``[N, gh, fh, gw, fw, C]`` (grid cells of fh x fw pixels);
    ``kernel`` (``[S, S]``, S = sizes[0] * sizes[1]) mixes the gh*gw cells
    (``mix_outer``; ``sizes`` = (gh, gw)) or the fh*fw pixels of each cell
    (``sizes`` = (fh, fw)), for every channel and every position along the
    other axis: ``out[.., k, ..] = sum_s x[.., s, ..] kernel[s, k] + bias[k]``.
    The mixed positions are transposed behind the channels, so this is a 2-D
    matmul + BiasAdd (one fused op in TF, FULLY_CONNECTED in TFLite) between
    two transposes. (Swapping only fh and gw and multiplying from the left
    moves less scattered memory, but measured no faster on the whole model.)
    """
    n, h, w, c = _dims(x)
    if mix_outer:
        (gh, gw), (fh, fw) = sizes, (h // sizes[0], w // sizes[1])
    else:
        (fh, fw), (gh, gw) = sizes, (h // sizes[0], w // sizes[1])
    dims = {1: gh, 2: fh, 3: gw, 4: fw}
    mixed = (1, 3) if mix_outer else (2, 4)
    kept = tuple(a for a in (1, 2, 3, 4) if a not in mixed)
    perm = (0, *kept, 5, *mixed)
    y = tf.transpose(tf.reshape(x, [n, gh, fh, gw, fw, c]), perm)
    y = tf.matmul(tf.reshape(y, [-1, sizes[0] * sizes[1]]), kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    y = tf.reshape(y, [n, dims[kept[0]], dims[kept[1]], c, sizes[0], sizes[1]])
    y = tf.transpose(y, np.argsort(perm))
    return tf.reshape(y, [n, h, w, c])


def mix_grid_axis(x, grid_size, kernel, bias=None):
    """Mix across the grid cells (global, dilated mixing).

    The image is cut into ``grid_size`` = (gh, gw) cells of size (H/gh, W/gw);
    ``kernel`` (``[gh*gw, gh*gw]``, a Dense kernel) and ``bias`` mix, for every
    pixel offset inside a cell and every channel, the ``gh*gw`` pixels that
    share that offset. This is the official ``GridGatingUnit`` (Dense over axis
    -3 of the blocked ``[N, gh*gw, fh*fw, C]`` tensor).
    """
    return _mix_positions(x, grid_size, True, kernel, bias)


def mix_block_axis(x, block_size, kernel, bias=None):
    """Mix across the pixels of each (fh, fw) block (local mixing).

    The official ``BlockGatingUnit``: Dense over axis -2 of the blocked
    ``[N, gh*gw, fh*fw, C]`` tensor.
    """
    return _mix_positions(x, block_size, False, kernel, bias)


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
    _, h, w, _ = _dims(x)
    ones = tf.ones(tf.stack([1, h, w, 1]), dtype=x.dtype)
    norm = tf.nn.depthwise_conv2d(tf.pad(ones, paddings), k, strides, "VALID")
    return y / norm


def bilinear_upsample(x, factor):
    """Bilinear ×factor upscale with half-pixel centres (= ``jax.image.resize``)."""
    _, h, w, _ = _dims(x)
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


def size_multiple(level_sizes, depth, bottleneck_size):
    """Smallest (mh, mw) that every H, W fed to a MAXIM must be a multiple of.

    Args:
        level_sizes: for each UNet level i, the list of (h, w) block/grid sizes
            used at that level (whose resolution is H / 2**i).
        depth: number of stride-2 downsamplings.
        bottleneck_size: (h, w) block/grid size of the bottleneck (at H / 2**depth).
    """
    mh = mw = 2**depth
    for i, sizes in enumerate(level_sizes):
        for sh, sw in sizes:
            mh = math.lcm(mh, sh * 2**i)
            mw = math.lcm(mw, sw * 2**i)
    mh = math.lcm(mh, bottleneck_size[0] * 2**depth)
    mw = math.lcm(mw, bottleneck_size[1] * 2**depth)
    return mh, mw
