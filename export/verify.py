"""Check an exported MAXIM in its own runtime against the Keras model.

The same deterministic test images go through Keras (pad, restore, crop in
eager TF) and through the artifact's runtime: the SavedModel in TF2
(``tf.saved_model.load``) and in a TF1 session by tensor names (as TF Serving
runs it), TFLite in LiteRT's Interpreter, ONNX in onnxruntime. Float exports
must match to an absolute tolerance; quantized TFLite models must reach a
PSNR (against the float Keras output) above a threshold.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from maxim_tf.errors import EXIT_CHECK_FAILED, CheckFailedError
from maxim_tf.export import graph

# Max |export - keras| for float artifacts.
TOLERANCES = {
    "savedmodel": 1e-4,
    "savedmodel-tf1": 1e-4,
    "tflite-fp32": 1e-4,
    "tflite-fp16": 1e-2,
    "onnx": 1e-4,
}
# Min PSNR (dB, peak 1.0) of quantized TFLite output against the float Keras
# output on smooth natural-like images, calibrated on synthetic patches.
# Measured: full int8 37.5 dB on the official-init tiny fixture model (tiny1s)
# and 29.0 dB on an S-2-sized model (official init, conv kernels halved so the
# outputs have a trained model's range); dynamic-range int8 35.3 dB on S-2.
# The thresholds sit ~4-5 dB under the worst measurement (other weights and
# calibration sets vary) and far above a failed quantization (the unscaled
# S-2, whose activations overflow the calibrated ranges, gave -18 dB).
MIN_PSNR = {
    "tflite-dynamic": 30.0,
    "tflite-int8": 25.0,
}


class VerificationError(CheckFailedError):
    """An exported model disagrees with the Keras model beyond the threshold
    (``maxim-tf export --verify`` exits 3, :data:`maxim_tf.errors.EXIT_CHECK_FAILED`)."""

    exit_code = EXIT_CHECK_FAILED


@dataclasses.dataclass
class Check:
    """One runtime x input comparison."""

    runtime: str
    shape: tuple
    max_abs_error: float
    psnr: float
    threshold: str
    passed: bool

    def __str__(self):
        status = "ok  " if self.passed else "FAIL"
        return (f"{status} {self.runtime:<16} input {list(self.shape)}  max|err| "
                f"{self.max_abs_error:.3g}  PSNR {self.psnr:.2f} dB  ({self.threshold})")


def sample_images(sizes, batch=1, seed=0):
    """Deterministic smooth RGB images in [0, 1] (float32 ``[batch, h, w, 3]`` per size)."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        coarse = rng.random((batch, max(2, h // 12), max(2, w // 12), 3)).astype(np.float32)
        img = tf.image.resize(coarse, (h, w), method="bicubic").numpy()
        img += rng.normal(0.0, 0.03, img.shape).astype(np.float32)  # noise to restore
        out.append(np.clip(img, 0.0, 1.0).astype(np.float32))
    return out


def default_sizes(model):
    """Two sizes off the model's multiple (exercising in-graph padding)."""
    mh, mw = model.size_multiple
    return [(mh + 13, 2 * mw - 5), (2 * mh - 2, mw + 1)]


def keras_reference(model, images):
    """The Keras model's output on images of any size (official pad/crop)."""
    return graph.restore_any_size(model, tf.constant(images)).numpy()


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def runners(fmt, path, quantization=None):
    """``{runtime_name: callable(images) -> restored}`` for an artifact."""
    if fmt == "savedmodel":
        from maxim_tf.export.savedmodel import TF1SessionRunner

        loaded = tf.saved_model.load(str(path))
        sig = loaded.signatures["serving_default"]
        tf1 = TF1SessionRunner(path)
        return {
            "savedmodel": lambda x: sig(images=tf.constant(x))["restored"].numpy(),
            "savedmodel-tf1": lambda x: tf1.run({"images": x})["restored"],
        }
    if fmt == "tflite":
        from maxim_tf.litert import TFLiteRunner

        return {f"tflite-{quantization or 'fp32'}": TFLiteRunner(path)}
    if fmt == "onnx":
        from maxim_tf.export.onnx import OnnxRunner

        return {"onnx": OnnxRunner(path)}
    raise ValueError(f"Unknown format {fmt!r}")


def compare(runtime, output, reference, shape):
    """Compare one output to the Keras reference with the runtime's threshold."""
    err = float(np.max(np.abs(output - reference))) if output.shape == reference.shape else math.inf
    quality = psnr(output, reference) if output.shape == reference.shape else -math.inf
    if runtime in TOLERANCES:
        tol = TOLERANCES[runtime]
        return Check(runtime, tuple(shape), err, quality, f"max|err| <= {tol:g}", err <= tol)
    floor = MIN_PSNR[runtime]
    return Check(runtime, tuple(shape), err, quality, f"PSNR >= {floor:g} dB", quality >= floor)


def verify_export(model, fmt, path, quantization=None, sizes=None, batch=1, raise_on_fail=True):
    """Run an exported artifact in its runtime and compare it with ``model``.

    Args:
        model: the Keras MAXIM it was exported from.
        fmt: "savedmodel", "tflite" or "onnx".
        path: the version directory, ``.tflite`` or ``.onnx`` file.
        quantization: TFLite quantization ("fp32", "fp16", "dynamic", "int8").
        sizes: list of (H, W) to test; default: two sizes that need padding
            (a fixed-size TFLite model is tested at its own size).
        batch: images per size.
        raise_on_fail: raise VerificationError listing the failing checks.

    Returns:
        list of :class:`Check`.
    """
    run = runners(fmt, path, quantization)
    if sizes is None:
        sizes = default_sizes(model)
        for runner in run.values():
            fixed = getattr(runner, "fixed_size", None)
            if fixed:
                sizes = [fixed]
                batch = runner.input_shape[0] if runner.input_shape[0] > 0 else batch
    checks = []
    for images in sample_images(sizes, batch=batch):
        reference = keras_reference(model, images)
        for name, fn in run.items():
            checks.append(compare(name, np.asarray(fn(images)), reference, images.shape))
    failed = [c for c in checks if not c.passed]
    if failed and raise_on_fail:
        raise VerificationError("Export verification failed:\n" + "\n".join(map(str, failed)))
    return checks
