"""In-graph pre/post-processing shared by every exported format.

An exported MAXIM takes images of *any* height and width: the graph pads them
to the model's size multiple the way the official evaluation script does
(``make_shape_even`` then ``mod_padding_symmetric`` in google-research/maxim
``run_eval.py``), runs the network and crops the result back.

The reflect padding is written as two GATHERs with computed indices rather
than ``tf.pad(mode="REFLECT")``: it converts to builtin TFLite ops and to
standard ONNX, keeps H, W dynamic, and, unlike REFLECT, also works when the
padding is larger than the image (tiny inputs, where it keeps reflecting).
"""

import tensorflow as tf


def _reflect(index, size):
    """Map integer positions onto [0, size) by mirror reflection (edge not repeated)."""
    period = tf.maximum(2 * (size - 1), 1)
    # Shift to non-negative first: tf2onnx lowers integer FloorMod with ONNX's
    # truncating Div, which is wrong for negative operands.
    shift = (tf.maximum(-tf.reduce_min(index), 0) // period + 1) * period
    j = tf.math.floormod(index + shift, period)
    reflected = tf.where(j < size, j, period - j)
    # A one-pixel axis can only repeat itself.
    return tf.where(size > 1, reflected, tf.zeros_like(reflected))


def padding_plan(size, multiple):
    """Official padding of one axis of length ``size`` to ``multiple``.

    Returns ``(before, padded_size)``: the image is first made even by
    reflecting one pixel at the end, then reflect-padded symmetrically to the
    next multiple. The output is cropped back at ``[before, before + size)``.
    Works on Python ints and on scalar tensors.
    """
    even = size + size % 2
    total = (multiple - even % multiple) % multiple
    before = total // 2
    return before, even + total


def pad_indices(size, multiple):
    """Source row (or column) index of every row of the padded image."""
    before, padded = padding_plan(size, multiple)
    positions = tf.range(padded) - before
    # Reflect inside the even-sized image, then map its extra last pixel (if
    # any) back into the original by reflecting once more.
    return _reflect(_reflect(positions, size + size % 2), size)


def pad_to_multiple(images, multiple):
    """Reflect-pad ``[N, H, W, C]`` images to multiples of ``multiple = (mh, mw)``.

    Returns ``(padded, (top, left))`` where ``(top, left)`` is the offset of the
    original image inside the padded one (pass it to :func:`crop`).
    """
    mh, mw = multiple
    static_h, static_w = images.shape[1], images.shape[2]
    dyn = tf.shape(images)
    h = static_h if static_h is not None else dyn[1]
    w = static_w if static_w is not None else dyn[2]
    top, _ = padding_plan(h, mh)
    left, _ = padding_plan(w, mw)
    # Skip the gather when a static size already fits (fixed-size exports).
    if not (isinstance(h, int) and h % mh == 0):
        images = tf.gather(images, pad_indices(h, mh), axis=1)
    if not (isinstance(w, int) and w % mw == 0):
        images = tf.gather(images, pad_indices(w, mw), axis=2)
    return images, (top, left)


def crop(images, offset, size):
    """Crop ``[N, H', W', C]`` back to ``size = (h, w)`` starting at ``offset``."""
    top, left = offset
    h, w = size
    if all(isinstance(v, int) for v in (top, left)) and top == 0 and left == 0 \
            and images.shape[1] == h and images.shape[2] == w:
        return images
    return images[:, top:top + h, left:left + w, :]


def image_size(images):
    """(H, W) of an NHWC tensor: static ints where known, else scalar tensors."""
    dyn = tf.shape(images)
    return tuple(images.shape[i] if images.shape[i] is not None else dyn[i] for i in (1, 2))


def restore_any_size(model, images):
    """Run ``model`` on ``[N, H, W, 3]`` images of any H, W (pad, restore, crop).

    ``model`` is a Keras MAXIM returning the restored image (the last output
    is taken if it returns a list).
    """
    size = image_size(images)
    padded, offset = pad_to_multiple(images, tuple(model.size_multiple))
    out = model(padded, training=False)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return crop(out, offset, size)


def check_max_pixels(images, max_pixels):
    """Return an assert op that fails with InvalidArgument if H*W > ``max_pixels``."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    pixels = tf.cast(h, tf.int64) * tf.cast(w, tf.int64)
    message = tf.strings.format(
        "Image too large: {}x{} = {} pixels, more than the limit of " + str(int(max_pixels))
        + " pixels set when this model was exported (max_pixels). Resize or tile the image.",
        (h, w, pixels))
    return tf.debugging.Assert(pixels <= int(max_pixels), [message])
