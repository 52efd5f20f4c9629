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

from maxim_tf._utils import last_output

# One implementation of the official padding rule, shared with Restorer and the
# any-size model.
from maxim_tf.padding import (
    crop,
    image_size,
    pad_to_multiple,
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
    return crop(last_output(out), offset, size)


def check_pixels(h, w, max_pixels):
    """Return an assert op that fails with InvalidArgument if ``h * w > max_pixels``."""
    h, w = tf.cast(h, tf.int64), tf.cast(w, tf.int64)
    pixels = h * w
    message = tf.strings.format(
        "Image too large: {}x{} = {} pixels, more than the limit of " + str(int(max_pixels))
        + " pixels set when this model was exported (max_pixels). Resize or tile the image.",
        (h, w, pixels))
    return tf.debugging.Assert(pixels <= int(max_pixels), [message])


def check_max_pixels(images, max_pixels):
    """Return an assert op that fails with InvalidArgument if H*W > ``max_pixels``."""
    return check_pixels(tf.shape(images)[1], tf.shape(images)[2], max_pixels)


def check_request_pixels(count, pixels, max_request_pixels):
    """Assert op: the ``pixels`` of all ``count`` images of a request are <= ``max_request_pixels``."""
    count, pixels = tf.cast(count, tf.int64), tf.cast(pixels, tf.int64)
    message = tf.strings.format(
        "Request too large: {} image(s) of {} pixels in all, more than the limit of "
        + str(int(max_request_pixels)) + " pixels per request set when this model was exported "
        "(max_request_pixels). Send fewer or smaller images per request.", (count, pixels))
    return tf.debugging.Assert(pixels <= int(max_request_pixels), [message])


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEADER_BYTES = 26  # enough for every field read below


def _header_uint(data, offset, length, little_endian):
    """Unsigned integer of ``length`` bytes at ``offset`` of a (padded) string scalar."""
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8)
    raw = tf.cast(tf.ensure_shape(raw, [length]), tf.int64)
    weights = [256 ** i for i in range(length)]
    if not little_endian:
        weights = weights[::-1]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64))


def encoded_image_size(data):
    """``[height, width]`` (int64) of an encoded PNG, JPEG, GIF or BMP read from its header.

    Nothing is decoded, so a decompression bomb (a small file claiming a huge image) is
    refused before any memory is allocated for its pixels. Other formats fail with
    InvalidArgument "Unknown image file format".

    Args:
        data: a string scalar, the encoded file.
    """
    padded = tf.strings.join([data, tf.constant(b"\0" * _HEADER_BYTES)])

    def prefix(magic):
        return tf.equal(tf.strings.substr(padded, 0, len(magic)), tf.constant(magic))

    def png():  # IHDR: width, height as big-endian uint32 at 16 and 20
        return tf.stack([_header_uint(padded, 20, 4, False), _header_uint(padded, 16, 4, False)])

    def gif():  # logical screen: width, height as little-endian uint16 at 6 and 8
        return tf.stack([_header_uint(padded, 8, 2, True), _header_uint(padded, 6, 2, True)])

    def bmp():  # BITMAPINFOHEADER: width, height as little-endian int32 at 18 and 22
        def signed(v):
            return tf.abs(tf.where(v >= 2 ** 31, v - 2 ** 32, v))
        return tf.stack([signed(_header_uint(padded, 22, 4, True)),
                         signed(_header_uint(padded, 18, 4, True))])

    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

    def unknown():
        check = tf.debugging.Assert(False, [
            "Unknown image file format: serving_bytes takes PNG, JPEG, GIF or BMP files."])
        with tf.control_dependencies([check]):
            return tf.zeros([2], tf.int64)

    return tf.case([(prefix(_PNG_MAGIC), png), (prefix(b"\xff\xd8"), jpeg),
                    (prefix(b"GIF8"), gif), (prefix(b"BM"), bmp)], default=unknown,
                   exclusive=True)
