"""The official padding rule, once, in TensorFlow: pad to the model's multiple, crop back.

Official evaluation (``make_shape_even`` then ``mod_padding_symmetric`` in
google-research/maxim ``run_eval.py``), exactly:

1. an odd height (width) is made even by reflecting one row (column) at the
   bottom (right);
2. each side is then reflect-padded symmetrically, ``p // 2`` before and
   ``p - p // 2`` after, where ``p = (-even_size) % multiple``;
3. the model runs on the padded image;
4. the output is cropped back to exactly the input size, starting at
   ``p // 2`` (the extra even-making row/column is dropped).

"Reflect" is numpy's ``mode="reflect"`` (the edge pixel is not repeated).

Used by :class:`maxim_tf.Restorer` (eagerly, on numpy images), by the any-size
model (``MAXIM(..., any_size=True)``: the :class:`PadToMultiple` and
:class:`CropToInput` layers) and by every exported signature
(:mod:`maxim_tf.export.graph`).

The reflect padding is two GATHERs with computed indices rather than
``tf.pad(mode="REFLECT")``: it converts to builtin TFLite ops and to standard
ONNX, keeps H, W dynamic, and, unlike REFLECT, also works when the padding is
larger than the image (tiny inputs, where it keeps reflecting, as numpy does).
"""

import keras
import tensorflow as tf

from maxim_tf._utils import pair


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

    Args:
        size: axis length (Python int or scalar int tensor).
        multiple: the model's size multiple on that axis (int).

    Returns:
        ``(before, padded_size)``: the image is first made even by reflecting
        one pixel at the end, then reflect-padded symmetrically to the next
        multiple; the output is cropped back at ``[before, before + size)``.
        Python ints for int inputs, scalar tensors otherwise.
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


def image_size(images):
    """(H, W) of an NHWC tensor: static ints where known, else scalar tensors."""
    dyn = tf.shape(images)
    return tuple(images.shape[i] if images.shape[i] is not None else dyn[i] for i in (1, 2))


def pad_to_multiple(images, multiple):
    """Reflect-pad ``[N, H, W, C]`` images to multiples of ``multiple = (mh, mw)``.

    Returns:
        ``(padded, (top, left))`` where ``(top, left)`` is the offset of the
        original image inside the padded one (pass it to :func:`crop`).
    """
    mh, mw = multiple
    h, w = image_size(images)
    top, _ = padding_plan(h, mh)
    left, _ = padding_plan(w, mw)
    # Skip the gather when a static size already fits (fixed-size exports, Restorer).
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


@keras.saving.register_keras_serializable(package="maxim_tf")
class PadToMultiple(keras.layers.Layer):
    """Reflect-pad NHWC images to multiples of ``multiple`` by the official rule.

    Args:
        multiple: int or ``(mh, mw)``: the network's size multiple.

    Pair it with :class:`CropToInput` of the same ``multiple`` after the network.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> y = CropToInput(64)([network(PadToMultiple(64)(x)), x])
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = pair(multiple)

    def call(self, images):
        return pad_to_multiple(images, self.multiple)[0]

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        dims = [None if s is None else padding_plan(s, m)[1]
                for s, m in ((h, self.multiple[0]), (w, self.multiple[1]))]
        return (n, dims[0], dims[1], c)

    def get_config(self):
        return {**super().get_config(), "multiple": list(self.multiple)}


@keras.saving.register_keras_serializable(package="maxim_tf")
class CropToInput(keras.layers.Layer):
    """Crop a network output back to the size of the (unpadded) input image.

    Called on ``[output, original_images]``; the offset is the official one of
    :func:`padding_plan` for ``multiple`` (the same as :class:`PadToMultiple`).

    Args:
        multiple: int or ``(mh, mw)``: the network's size multiple.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = pair(multiple)

    def call(self, inputs):
        outputs, images = inputs
        h, w = image_size(images)
        top, _ = padding_plan(h, self.multiple[0])
        left, _ = padding_plan(w, self.multiple[1])
        return crop(outputs, (top, left), (h, w))

    def compute_output_shape(self, input_shape):
        out_shape, image_shape = input_shape
        return (out_shape[0], image_shape[1], image_shape[2], out_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": list(self.multiple)}
