"""In-graph pre/post-processing shared by every exported format.

An exported MAXIM takes images of *any* height and width: the graph pads them
to the model's size multiple the way the official evaluation script does
(``make_shape_even`` then ``mod_padding_symmetric`` in google-research/maxim
``run_eval.py``), runs the network and crops the result back.

The reflect padding is written as two GATHERs with computed indices rather
than ``tf.pad(mode="REFLECT")``: it converts to builtin TFLite ops and to
standard ONNX, keeps H, W dynamic, and, unlike REFLECT, also works when the
padding is larger than the image (tiny inputs, where it keeps reflecting).
The rule itself lives in :mod:`maxim_tf.padding`.
"""

import tensorflow as tf

# One implementation of the official padding rule, shared with Restorer and the
# any-size model (re-exported here for the exporters).
from maxim_tf.padding import (  # noqa: F401
    crop,
    image_size,
    pad_indices,
    pad_to_multiple,
    padding_plan,
)


def restore_any_size(model, images):
    """Run ``model`` on ``[N, H, W, 3]`` images of any H, W (pad, restore, crop).

    ``model`` is a Keras MAXIM returning the restored image (the last output
    is taken if it returns a list).
    """
    from maxim_tf.model import padded_inputs

    size = image_size(images)
    padded, offset = pad_to_multiple(images, tuple(model.size_multiple))
    with padded_inputs():  # padded here: no in-graph size check in exported graphs
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
