"""Pure tensor reshuffles and resizes used by the MAXIM layers.

Everything here works on NHWC tensors whose H and W may be unknown until run
time (``tf.shape``), so one built model serves every input size. These are the
places where shape bugs live; each has a round-trip or reference test in
``tests/test_ops.py``.
"""

import math

import numpy as np
import tensorflow as tf


def dims(x):
    """The dimensions of ``x``: static ints where known, else scalar tensors.

    One ``Shape`` + ``Unpack`` (not a strided slice per axis): S-3 traces ~3 000
    of these, and op count is what tracing and graph optimisation time scale with.
    """
    static = x.shape.as_list()
    if None not in static:
        return static
    dynamic = tf.unstack(tf.shape(x), num=len(static))
    return [s if s is not None else d for s, d in zip(static, dynamic)]


# The multi-axis partition (paper Fig. 2). An image of H x W pixels is viewed as
# a gh x gw grid of fh x fw blocks, H = gh * fh and W = gw * fw:
#
#     x: n (gh fh) (gw fw) c
#
# Block gMLP (local) mixes the fh*fw pixels *inside* each block; grid gMLP
# (global, dilated) mixes the gh*gw pixels that sit at the same offset in every
# block. Both are a Dense over one position axis, the same weights for every
# channel. The partitions below lay x out as a 2-D matrix whose rows are
# everything else and whose columns are the mixed positions, so that Dense is a
# single 2-D matmul (+ BiasAdd: one fused op in TF, FULLY_CONNECTED in TFLite):
#
#     block_partition: n (gh fh) (gw fw) c -> (n gh gw c) (fh fw)
#     grid_partition:  n (gh fh) (gw fw) c -> (n fh fw c) (gh gw)
#
# The official code (block_images_einops) uses n (gh gw) (fh fw) c and a Dense
# over axis -2 (block) or -3 (grid): the same products, another memory order.
# The unpartitions are the inverses, given the image's dims.
#
# Those 2-D layouts are what TFLite and ONNX run well (one FULLY_CONNECTED), but
# their transposes move the channel axis, i.e. gather single values at stride c,
# and that cost grows faster than the pixel count once the tensors leave the
# caches. TensorFlow's own kernels get a cheaper layout of the same products:
# one transpose that swaps fh and gw, which moves whole runs of fw * c
# contiguous values, with the mixed positions as the middle axis of a 3-D
# tensor; the Dense is then ``kernel^T @ x`` (one GEMM per image for the grid, a
# batch of small ones for the blocks):
#
#     position_columns(x, "block", (fh, fw)): n (gh fh) (gw fw) c -> (n gh gw) (fh fw) c
#     position_columns(x, "grid", (gh, gw)):  n (gh fh) (gw fw) c -> n (gh gw) (fh fw c)

def block_partition(x, block_size):
    """``n (gh fh) (gw fw) c -> (n gh gw c) (fh fw)``: one row per block and
    channel, the ``fh * fw`` pixels of that block as columns.

    Args:
        x: ``[N, H, W, C]``; ``block_size`` = ``(fh, fw)`` must divide H, W.
        block_size: ``(fh, fw)``.
    """
    n, h, w, c = dims(x)
    fh, fw = block_size
    x = tf.reshape(x, [n, h // fh, fh, w // fw, fw, c])
    x = tf.transpose(x, [0, 1, 3, 5, 2, 4])  # n gh gw c fh fw
    return tf.reshape(x, [-1, fh * fw])


def block_unpartition(rows, image_dims, block_size):
    """Inverse of :func:`block_partition`: ``(n gh gw c) (fh fw) -> n (gh fh) (gw fw) c``.

    Args:
        rows: the 2-D output of :func:`block_partition` (or a Dense over it).
        image_dims: ``[N, H, W, C]`` of the image (ints or scalar tensors).
        block_size: ``(fh, fw)``.
    """
    n, h, w, c = image_dims
    fh, fw = block_size
    x = tf.reshape(rows, [n, h // fh, w // fw, c, fh, fw])
    x = tf.transpose(x, [0, 1, 4, 2, 5, 3])  # n gh fh gw fw c
    return tf.reshape(x, [n, h, w, c])


def grid_partition(x, grid_size):
    """``n (gh fh) (gw fw) c -> (n fh fw c) (gh gw)``: one row per offset inside a
    grid cell and channel, the ``gh * gw`` pixels at that offset as columns.

    Args:
        x: ``[N, H, W, C]``; ``grid_size`` = ``(gh, gw)`` must divide H, W.
        grid_size: ``(gh, gw)``.
    """
    n, h, w, c = dims(x)
    gh, gw = grid_size
    x = tf.reshape(x, [n, gh, h // gh, gw, w // gw, c])
    x = tf.transpose(x, [0, 2, 4, 5, 1, 3])  # n fh fw c gh gw
    return tf.reshape(x, [-1, gh * gw])


def grid_unpartition(rows, image_dims, grid_size):
    """Inverse of :func:`grid_partition`: ``(n fh fw c) (gh gw) -> n (gh fh) (gw fw) c``."""
    n, h, w, c = image_dims
    gh, gw = grid_size
    x = tf.reshape(rows, [n, h // gh, w // gw, c, gh, gw])
    x = tf.transpose(x, [0, 4, 1, 5, 2, 3])  # n gh fh gw fw c
    return tf.reshape(x, [n, h, w, c])


def _cells(image_dims, axis, size):
    """``(gh, fh, gw, fw)`` of an image of ``image_dims`` for ``axis`` "block"
    (``size`` = block size) or "grid" (``size`` = grid size)."""
    _, h, w, _ = image_dims
    if axis == "block":
        fh, fw = size
        return h // fh, fh, w // fw, fw
    gh, gw = size
    return gh, h // gh, gw, w // gw


def position_columns(x, axis, size):
    """The layout of TensorFlow's spatial Dense (see the note above):
    ``n (gh fh) (gw fw) c -> (n gh gw) (fh fw) c`` for ``axis="block"``,
    ``-> n (gh gw) (fh fw c)`` for ``axis="grid"``; the mixed positions are axis 1.

    Args:
        x: ``[N, H, W, C]``.
        axis: ``"block"`` (``size`` = block size ``(fh, fw)``) or ``"grid"``
            (``size`` = grid size ``(gh, gw)``); ``size`` must divide H, W.
        size: the block or grid size.
    """
    image_dims = dims(x)
    n, c = image_dims[0], image_dims[3]
    gh, fh, gw, fw = _cells(image_dims, axis, size)
    x = tf.transpose(tf.reshape(x, [n, gh, fh, gw, fw * c]), [0, 1, 3, 2, 4])  # n gh gw fh (fw c)
    if axis == "block":
        return tf.reshape(x, [-1, fh * fw, c])
    return tf.reshape(x, [n, gh * gw, fh * fw * c])


def position_columns_to_image(columns, image_dims, axis, size):
    """Inverse of :func:`position_columns`, given the image's ``[N, H, W, C]``."""
    n, h, w, c = image_dims
    gh, fh, gw, fw = _cells(image_dims, axis, size)
    x = tf.transpose(tf.reshape(columns, [n, gh, gw, fh, fw * c]), [0, 1, 3, 2, 4])
    return tf.reshape(x, [n, h, w, c])


def spatial_mean(x):
    """Mean over H and W of ``[N, H, W, C]``, kept as ``[N, 1, 1, C]`` in x's dtype.

    ``keras.ops.mean`` casts a bfloat16 tensor to float32 before reducing (a full
    copy of the activation); TensorFlow's reduction accumulates bfloat16 in
    float32 itself, so only the result is rounded.
    """
    return tf.reduce_mean(x, axis=(1, 2), keepdims=True)


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
