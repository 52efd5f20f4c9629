"""MAXIM to a TF Serving SavedModel (versioned layout, two signatures, warmup).

Layout written (what TF Serving's file-system source watches)::

    <base_dir>/<name>/<version>/saved_model.pb
                               variables/
                               assets.extra/tf_serving_warmup_requests

Signatures:

* ``serving_default``: ``images`` float32 ``[N, H, W, 3]`` in [0, 1], N, H, W
  all dynamic -> ``restored`` float32, same shape (not clamped, equal to the
  Keras model). Padding to the model's size multiple (official reflect
  semantics) and cropping back happen inside the graph.
* ``serving_bytes``: ``image_bytes`` string ``[N]`` (encoded PNG/JPEG/BMP/GIF;
  ``{"b64": ...}`` over REST) -> ``output_bytes`` string ``[N]`` (PNG, clamped
  to [0, 1] and rounded to 8 bits; base64-encoded by TF Serving's REST API
  because the name ends in ``_bytes``). Images of a batch may differ in size.

Both refuse images with more than ``max_pixels`` pixels (H * W), and requests
whose images hold more than ``max_request_pixels`` pixels in all (N * H * W,
default ``max_pixels``), with an InvalidArgument error that says so, instead of
running out of memory. ``serving_bytes`` reads each image's size from its
header (PNG/GIF/BMP fixed offsets, ``tf.io.extract_jpeg_shape``) and refuses
before decoding anything, so a small decompression bomb costs no memory.
TF Serving adds its own limits in front of these: gRPC messages are capped at
4 MB unless the client and ``--grpc_max_message_size`` say otherwise (REST has
no such cap), and with ``--enable_batching`` the batcher merges requests up to
``max_batch_size``, so the per-request bound here is per request, not per batch.
"""

import io
import os
import pathlib
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from maxim_tf import fileio
from maxim_tf.export import graph
from maxim_tf.export.io import atomic_replace_dir
from maxim_tf.fileio import current_umask

DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
INPUT_NAME = "images"
OUTPUT_NAME = "restored"
BYTES_INPUT_NAME = "image_bytes"
BYTES_OUTPUT_NAME = "output_bytes"
DEFAULT_MAX_PIXELS = 2048 * 2048
WARMUP_FILE = "tf_serving_warmup_requests"
TEMP_PREFIX = ".tmp-maxim-"  # not a number: TF Serving never takes it for a version


def export_savedmodel(model, base_dir, name="maxim", version=None, max_pixels=DEFAULT_MAX_PIXELS,
                      warmup=True, overwrite=False, max_request_pixels=None):
    """Write a Keras MAXIM as a TF Serving SavedModel ``<base_dir>/<name>/<version>/``.

    Args:
        model: a Keras MAXIM.
        base_dir: TF Serving's model base path parent (``--model_base_path``
            is ``<base_dir>/<name>``).
        name: model name (the ``name`` in TF Serving's URLs and model_spec).
        version: positive integer version; None picks one more than the
            highest existing version (1 for a new model).
        max_pixels: largest H * W accepted by both signatures.
        warmup: write ``assets.extra/tf_serving_warmup_requests``.
        overwrite: replace an existing version directory.
        max_request_pixels: largest sum of H * W over the images of one request
            (default: ``max_pixels``).

    Returns:
        pathlib.Path of the version directory.
    """
    if int(max_pixels) < 1:
        raise ValueError(f"max_pixels must be positive. Received: max_pixels={max_pixels}")
    if max_request_pixels is None:
        max_request_pixels = max_pixels
    if int(max_request_pixels) < 1:
        raise ValueError(f"max_request_pixels must be positive. "
                         f"Received: max_request_pixels={max_request_pixels}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"Model name must be a plain directory name. Received: name={name!r}")
    model_dir = pathlib.Path(base_dir) / name
    created = fileio.make_dirs(model_dir)
    try:
        return _export(model, model_dir, name, version, int(max_pixels), int(max_request_pixels),
                       warmup, overwrite)
    except BaseException:
        fileio.remove_empty_dirs(created)  # a failed export leaves no empty folders
        raise


def _export(model, model_dir, name, version, max_pixels, max_request_pixels, warmup, overwrite):
    import keras

    if version is None:
        version = next_version(model_dir)
    version = int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer. Received: version={version}")
    if (model_dir / str(version)).exists() and not overwrite:
        raise FileExistsError(f"{model_dir / str(version)} already exists (pass overwrite=True / "
                              f"--overwrite to replace it, or another version)")

    multiple = tuple(model.size_multiple)

    def restore(images):
        shape = tf.shape(images, out_type=tf.int64)
        # In this order, so an oversized single image gets the per-image message.
        with tf.control_dependencies([graph.check_max_pixels(images, max_pixels)]):
            check = graph.check_request_pixels(shape[0], shape[0] * shape[1] * shape[2],
                                               max_request_pixels)
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        return {OUTPUT_NAME: graph.restore_any_size(model, images)}

    def header_size(data):
        size = graph.encoded_image_size(data)
        with tf.control_dependencies([graph.check_pixels(size[0], size[1], max_pixels)]):
            return tf.identity(size)

    def restore_one_encoded(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)
        image = tf.ensure_shape(image, [None, None, 3])[None]
        check = graph.check_max_pixels(image, max_pixels)
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        out = graph.restore_any_size(model, image)[0]
        out = tf.cast(tf.round(tf.clip_by_value(out, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.io.encode_png(out)

    def restore_bytes(image_bytes):
        # Sizes from the headers first: a bomb is refused before anything is decoded.
        sizes = tf.map_fn(header_size, image_bytes,
                          fn_output_signature=tf.TensorSpec([2], tf.int64))
        total = tf.reduce_sum(sizes[:, 0] * sizes[:, 1])
        check = graph.check_request_pixels(tf.size(image_bytes), total, max_request_pixels)
        with tf.control_dependencies([check]):
            image_bytes = tf.identity(image_bytes)
        png = tf.map_fn(restore_one_encoded, image_bytes,
                        fn_output_signature=tf.TensorSpec([], tf.string))
        return {BYTES_OUTPUT_NAME: png}

    # No archive.track(model): the endpoints already capture every variable, and
    # tracking the model as well stores each weight twice (Keras 3.15 saves both
    # `variables` and `_all_variables`), doubling the SavedModel.
    archive = keras.export.ExportArchive()
    archive.add_endpoint(DEFAULT_SIGNATURE, restore, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)])
    archive.add_endpoint(BYTES_SIGNATURE, restore_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name=BYTES_INPUT_NAME)])

    # Removed on any exception (SIGTERM included, as maxim-tf turns it into one); after a
    # kill -9 the next export of this model sweeps it (its process is gone).
    fileio.sweep_stale_temp_dirs(model_dir, TEMP_PREFIX)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=fileio.owned_temp_prefix(TEMP_PREFIX),
                                        dir=model_dir))
    try:
        archive.write_out(os.fspath(tmp), verbose=False)
        if warmup:
            write_warmup(tmp / "assets.extra" / WARMUP_FILE, name, warmup_inputs(multiple))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        final = atomic_replace_dir(tmp, model_dir / str(version), overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def next_version(model_dir):
    """One more than the highest numeric version directory in ``model_dir`` (1 if none)."""
    model_dir = pathlib.Path(model_dir)
    versions = [int(p.name) for p in model_dir.iterdir()
                if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    return max(versions, default=0) + 1


def warmup_inputs(multiple, seed=0):
    """Warmup requests: ``[(signature_name, {input_name: numpy array})]``.

    One float batch at the model's size multiple, one float batch of an odd
    size (exercises the in-graph padding) and one encoded PNG.
    """
    rng = np.random.default_rng(seed)
    mh, mw = multiple
    smooth = _smooth_image(rng, mh, mw)
    odd = _smooth_image(rng, mh + 7, mw - 3)
    return [
        (DEFAULT_SIGNATURE, {INPUT_NAME: smooth[None]}),
        (DEFAULT_SIGNATURE, {INPUT_NAME: np.stack([odd, odd[::-1]])}),
        (BYTES_SIGNATURE, {BYTES_INPUT_NAME: np.array([encode_png(odd)], dtype=object)}),
    ]


def write_warmup(path, model_name, requests):
    """Write TF Serving warmup records (``PredictionLog`` protos in a TFRecord)."""
    from maxim_tf.export.warmup import encode_prediction_log

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for signature, inputs in requests:
            writer.write(encode_prediction_log(model_name, signature, inputs))
    return path


def read_warmup(path):
    """Read warmup records back: ``[(signature_name, {input_name: numpy array})]``."""
    from maxim_tf.export.warmup import decode_prediction_log

    out = []
    for record in tf.data.TFRecordDataset(os.fspath(path)).as_numpy_iterator():
        _, signature, inputs = decode_prediction_log(record)
        out.append((signature or DEFAULT_SIGNATURE, inputs))
    return out


def encode_png(image):
    """float [H, W, 3] in [0, 1] -> PNG bytes (8-bit, rounded)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _smooth_image(rng, h, w):
    coarse = rng.random((1, 4, 4, 3)).astype(np.float32)
    return tf.image.resize(coarse, (h, w), method="bilinear").numpy()[0]


class TF1SessionRunner:
    """Run a SavedModel signature the way TF Serving does: a TF1 session, by tensor names.

    Args:
        export_dir: the version directory.

    Use as a context manager (it owns a ``tf.compat.v1.Session``).
    """

    def __init__(self, export_dir):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.load(self.session, ["serve"], os.fspath(export_dir))
        self.signatures = dict(meta.signature_def)

    def run(self, inputs, signature=DEFAULT_SIGNATURE):
        """Feed ``{input_key: array}`` by tensor name; return ``{output_key: array}``."""
        if signature not in self.signatures:
            raise KeyError(f"No signature {signature!r}; found {sorted(self.signatures)}")
        sig = self.signatures[signature]
        missing = set(sig.inputs) - set(inputs)
        if missing:
            raise KeyError(f"Signature {signature!r} needs inputs {sorted(sig.inputs)}; "
                           f"missing {sorted(missing)}")
        feed = {sig.inputs[k].name: v for k, v in inputs.items()}
        keys = sorted(sig.outputs)
        values = self.session.run([sig.outputs[k].name for k in keys], feed_dict=feed)
        return dict(zip(keys, values))

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
