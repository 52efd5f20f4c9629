"""The multi-axis partitions of MAXIM's gMLP blocks, and the size multiple they impose.

Block gMLP (local) and grid gMLP (global) mix pixels along one position axis of a
block/grid view of the image; the functions here lay an NHWC tensor out so that
mix is one matmul, and back. They work on tensors whose H and W may be unknown
until run time (``tf.shape``), so one built model serves every input size. Each
has a round-trip or reference test in ``tests/test_partition.py``.
"""

import math

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
