"""Run exported MAXIM ``.tflite`` files with LiteRT, without importing TensorFlow.

:class:`TFLiteRunner` runs any file written by ``maxim_tf.export`` (``restore``
signature, input ``images``, output ``restored``). For the shipped models of
``saved_models/``, :func:`shipped_tflite` finds the fp32 ``.tflite`` exported
from exactly that ``.keras`` file (``saved_models/manifest.json`` records both
files' sha256 and the measured difference), so :class:`maxim_tf.Restorer` can
run it instead of the Keras graph: LiteRT loads in milliseconds and needs no
tracing, which is most of a one-photo run's wall time with Keras.
"""

import json
import os
import pathlib

import numpy as np

from maxim_tf.fileio import sha256_file

SIGNATURE = "restore"
INPUT_NAME = "images"
OUTPUT_NAME = "restored"
MANIFEST = "manifest.json"
# Largest max-abs difference (float output) allowed between a shipped .tflite and its .keras.
SHIPPED_TOLERANCE = 1e-5


def _litert():
    from maxim_tf.errors import require

    interpreter = require("ai_edge_litert.interpreter", "cpu", "running .tflite models")
    return interpreter.Interpreter, interpreter.OpResolverType


def read_manifest(folder):
    """``saved_models/manifest.json`` of ``folder`` as a dict (empty if absent or unreadable)."""
    try:
        data = json.loads((pathlib.Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def shipped_tflite(keras_path):
    """The verified fp32 ``.tflite`` twin of a shipped ``.keras`` file, or None.

    A twin counts only if the manifest beside ``keras_path`` records, for
    ``<stem>_fp32.tflite``, the sha256 of this very ``.keras`` file, the
    ``.tflite`` file's own sha256 matches, and the recorded max-abs difference
    is within :data:`SHIPPED_TOLERANCE`.

    Returns:
        ``(tflite_path, size_multiple)`` or None.
    """
    keras_path = pathlib.Path(keras_path)
    name = f"{keras_path.stem}_fp32.tflite"
    entry = read_manifest(keras_path.parent).get("tflite", {}).get(name)
    if not isinstance(entry, dict) or entry.get("source") != keras_path.name:
        return None
    return _checked_twin(entry, keras_path.with_name(name), lambda: sha256_file(keras_path),
                         SHIPPED_TOLERANCE)


def _checked_twin(entry, tflite, source_digest, tolerance):
    """``(tflite, size_multiple)`` if the manifest ``entry`` vouches for ``tflite``: the file
    exists with the recorded sha256, was exported from the ``.keras`` file whose sha256
    ``source_digest()`` returns, and differed from it by at most ``tolerance`` (times
    the recorded output scale, if any, when above 1); else None."""
    try:
        scale = max(1.0, float(entry.get("output_scale", 1.0)))
        if not (tflite.is_file()
                and float(entry.get("max_abs_diff", 1.0)) <= tolerance * scale
                and entry.get("source_sha256") == source_digest()
                and entry.get("sha256") == sha256_file(tflite)):
            return None
        multiple = tuple(int(v) for v in entry["size_multiple"])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return tflite, multiple


# The fast-start twins of other .keras files (converted presets, `maxim-tf convert` outputs):
# <cache>/faststart/<first 32 hex digits of the .keras file's sha256>/.
FASTSTART_DIR = "faststart"
FASTSTART_FILE = "model_fp32.tflite"
# Largest max-abs difference allowed between a fast-start twin and its .keras, for outputs
# in [0, 1] (scaled by the largest |output| beyond that): the official fixtures'
# definition of "match". Official-size models run ~2 900 layers, so float32 rounding
# differs more between the two runtimes than for the small shipped models.
FASTSTART_TOLERANCE = 1e-4


_DIGESTS = {}


def file_digest(path):
    """sha256 of a file, remembered per (path, size, mtime) for this process: a preset's
    model is looked up by the cache and again by the Restorer (60-90 MB each for the
    official sizes)."""
    path = pathlib.Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def faststart_folder(digest):
    """Cache folder of the fast-start twin of a ``.keras`` file whose sha256 is ``digest``."""
    from maxim_tf import hub

    return hub.cache_dir() / FASTSTART_DIR / digest[:32]


def faststart_tflite(keras_path, digest=None):
    """The verified fp32 fast-start twin of any ``.keras`` file, or None.

    Built once by :func:`maxim_tf.export.faststart.build_twin` (``maxim-tf convert`` and the
    preset download do it) into :func:`faststart_folder`; it counts only if its
    ``manifest.json`` records this very ``.keras`` file's sha256, the ``.tflite``
    file's own sha256 matches and the measured max-abs difference is within
    :data:`FASTSTART_TOLERANCE`. A changed ``.keras`` file has another sha256, so its
    old twin is never used.

    Returns:
        ``(tflite_path, size_multiple)`` or None.
    """
    digest = digest or file_digest(keras_path)
    folder = faststart_folder(digest)
    entry = read_manifest(folder).get("tflite", {}).get(FASTSTART_FILE)
    if not isinstance(entry, dict):
        return None
    return _checked_twin(entry, folder / FASTSTART_FILE, lambda: digest, FASTSTART_TOLERANCE)


def verified_tflite(keras_path):
    """The shipped twin of a shipped model (:func:`shipped_tflite`), else its fast-start
    twin (:func:`faststart_tflite`), else None."""
    return shipped_tflite(keras_path) or faststart_tflite(keras_path)


def litert_available():
    """True if LiteRT's Python interpreter can be imported."""
    try:
        _litert()
    except ImportError:
        return False
    return True


class TFLiteRunner:
    """Run an exported MAXIM ``.tflite`` with LiteRT's Interpreter.

    Uses the ``restore`` signature runner; converts float images to the
    model's integer input type (and back) for a full-int8 model with integer
    I/O. A fixed-size model given another size raises ValueError.

    Args:
        path: the ``.tflite`` file.
        num_threads: interpreter threads (None: every core this process may use;
            LiteRT's own default runs XNNPACK on one thread).
        use_xnnpack: apply LiteRT's default XNNPACK delegate. None (auto):
            yes, except for an int8 model with a degenerate requantization
            scale (see :func:`xnnpack_safe`), on which the XNNPACK delegate of
            ai-edge-litert 2.3 aborts the process ("free(): double free") at
            the first invoke; the builtin kernels run it correctly.
    """

    def __init__(self, path, num_threads=None, use_xnnpack=None):
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TFLite model not found: {path}")
        Interpreter, OpResolverType = _litert()
        self.path = path
        if num_threads is None:
            num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
        self.num_threads = num_threads
        self.interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
        if use_xnnpack is None:
            ops = {op["op_name"] for op in self.interpreter._get_ops_details()}
            if "QUANTIZE" in ops:  # only int8 models can hit the XNNPACK crash (needs TF)
                use_xnnpack = xnnpack_compatible(path)
            else:
                use_xnnpack = True
        if not use_xnnpack:
            self.interpreter = Interpreter(
                model_path=os.fspath(path), num_threads=num_threads,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.uses_xnnpack = bool(use_xnnpack)
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ValueError(f"{path} has no {SIGNATURE!r} signature (found {sorted(signatures)}); "
                             f"was it exported by maxim_tf.export?")
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.input_details = self.runner.get_input_details()[INPUT_NAME]
        self.output_details = self.runner.get_output_details()[OUTPUT_NAME]

    @property
    def input_shape(self):
        """Declared input shape; -1 marks a dynamic dimension."""
        return tuple(int(v) for v in self.input_details["shape_signature"])

    @property
    def fixed_size(self):
        """(H, W) of a fixed-size model, or None if H, W are dynamic."""
        h, w = self.input_shape[1:3]
        return None if h < 0 or w < 0 else (h, w)

    def check_shape(self, shape):
        """Raise ValueError if ``shape`` cannot be fed to this model."""
        declared = self.input_shape
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"{self.path.name} expects images of shape [N, H, W, 3]. "
                             f"Received: shape={tuple(shape)}")
        bad = [(name, got, want) for name, got, want in zip(("batch", "height", "width"),
                                                           shape[:3], declared[:3])
               if want >= 0 and got != want]
        if bad:
            what = ", ".join(f"{n} {g} (model takes {w})" for n, g, w in bad)
            raise ValueError(
                f"{self.path.name} is a fixed-size TFLite model for input "
                f"{list(declared)}; received {what}. Resize or tile the image to "
                f"{declared[1]}x{declared[2]}, or export a dynamic-size model "
                f"(maxim-tf export ... --to tflite without --input-size).")

    def __call__(self, images):
        """Restore float32 ``[N, H, W, 3]`` images in [0, 1]; returns float32."""
        images = np.asarray(images, dtype=np.float32)
        self.check_shape(images.shape)
        x = _quantize(images, self.input_details)
        out = self.runner(**{INPUT_NAME: x})[OUTPUT_NAME]
        return _dequantize(out, self.output_details)


def _quantize(x, details):
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return x
    scale, zero = details["quantization_parameters"]["scales"][0], \
        details["quantization_parameters"]["zero_points"][0]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y, details):
    if np.dtype(details["dtype"]) == np.float32:
        return y
    scale, zero = details["quantization_parameters"]["scales"][0], \
        details["quantization_parameters"]["zero_points"][0]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


# The int8 XNNPACK check (TensorFlow's flatbuffer tools, imported only when needed).
_QUANTIZED_CONTRACTIONS = {"CONV_2D": (0, 1, 2), "FULLY_CONNECTED": (0, 1, 2),
                           "DEPTHWISE_CONV_2D": (0, 1, 2), "TRANSPOSE_CONV": (2, 1, 3)}


def _model_ops(model):
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    subgraph = model.subgraphs[0]
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        yield names.get(max(code.builtinCode, code.deprecatedBuiltinCode)), op


def _scales(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return np.asarray(q.scale, np.float64)


def _degenerate_contractions(model):
    """(op, input scale * max filter scale, output tensor) of int8 CONV/FC ops whose
    requantization scale is >= 128 (XNNPACK refuses >= 256)."""
    tensors = model.subgraphs[0].tensors
    for name, op in _model_ops(model):
        if name not in _QUANTIZED_CONTRACTIONS:
            continue
        i_in, i_w, _ = _QUANTIZED_CONTRACTIONS[name]
        out = tensors[op.outputs[0]]
        s_in, s_w, s_out = (_scales(tensors[op.inputs[i_in]]), _scales(tensors[op.inputs[i_w]]),
                            _scales(out))
        if out.type != 9 or s_in is None or s_w is None or s_out is None:  # 9: INT8
            continue
        if s_in[0] * s_w.max() / s_out[0] >= 128:
            yield op, s_in[0] * s_w.max(), out


def xnnpack_compatible(path):
    """False if the int8 model at ``path`` would abort LiteRT's XNNPACK delegate (see
    :func:`maxim_tf.export.tflite.xnnpack_safe`; models exported by this version are always compatible)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(os.fspath(path))
    return not any(True for _ in _degenerate_contractions(model))
