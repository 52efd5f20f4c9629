"""MAXIM to TFLite (LiteRT): fp32, fp16, dynamic-range int8 and full int8.

Every model is converted with builtin ops only (``TFLITE_BUILTINS``; an "int8"
model is integer except for ``INT8_FLOAT_OPS``, the layer-norm statistics and GELU,
which XNNPACK only runs in float), so an op that would need the Flex
delegate makes the conversion fail loudly instead of producing a file a
phone cannot run. The model carries one signature, ``restore``, with input
``images`` (float32 ``[N, H, W, 3]`` in [0, 1], or int8/uint8 for a full-int8
model exported with integer I/O) and output ``restored`` (same size; not
clamped). Padding to the model's size multiple and cropping back happen in the
graph, so a dynamic-size model takes any H, W.

The converter runs in a child process (:func:`maxim_tf.fileio.run_child`): it blocks
in C++ for minutes, where SIGTERM/SIGINT cannot reach Python; killing the child stops
an export within a moment. A fixed ``input_size`` is bounded
(:data:`MAX_FIXED_INPUT_PIXELS`, :data:`MAX_FIXED_INPUT_SIDE`) and checked, with the
batch and the calibration folder, before any work.

Example:
    >>> export_tflite(model, "maxim_fp16.tflite", quantization="fp16")
    >>> runner = TFLiteRunner("maxim_fp16.tflite")
    >>> restored = runner(images)   # float32 [N, H, W, 3]
"""

import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from maxim_tf import fileio, fused
from maxim_tf.export import graph
from maxim_tf.export.io import (
    check_fixed_input,
    check_representative_data,
    load_images,
)
from maxim_tf.litert import (
    _QUANTIZED_CONTRACTIONS,
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE,
    _degenerate_contractions,
    _model_ops,
    _scales,
)

QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
INT8_IO_TYPES = ("float32", "uint8", "int8")
# Left in float32 in an "int8" model. XNNPACK (LiteRT's CPU delegate) has no int8 kernel for
# them, so each one split the graph into a separate delegate partition (84 partitions at a
# fixed 512x512, slower than fp32); in float the whole fixed-size model is one XNNPACK
# partition (timings: benchmarks/results/). The layer-norm statistics are also far more
# accurate in float.
INT8_FLOAT_OPS = ("GELU", "SQUARED_DIFFERENCE", "RSQRT", "NEG", "MEAN")
TEMP_PREFIX = ".maxim_tflite_tmp_"


def export_tflite(model, path, quantization="fp32", input_size=None, batch_size=None,
                  representative_data=None, num_calibration_images=8,
                  calibration_size=(128, 128), int8_io="float32"):
    """Convert a Keras MAXIM to a ``.tflite`` file with builtin ops only.

    Args:
        model: a Keras MAXIM (``maxim_tf.MAXIM`` or a loaded ``.keras``).
        path: output ``.tflite`` file (written atomically).
        quantization: "fp32", "fp16" (float16 weights), "dynamic" (int8
            weights, float activations) or "int8" (int8 weights and
            activations; with float32 I/O the ``INT8_FLOAT_OPS`` stay
            float32, with uint8/int8 I/O every op is integer).
        input_size: None for a dynamic-size model (any N, H, W; resize with
            ``resize_tensor_input`` or let the signature runner do it), or
            ``(H, W)`` for a fixed-size model as mobile GPU/NNAPI delegates
            want. H, W need not be multiples of the model's size multiple.
        batch_size: batch dimension of a fixed-size model (default 1); for a
            dynamic model None keeps it dynamic.
        representative_data: for "int8": a folder of images (random crops are
            taken) or None for synthetic smooth patches.
        num_calibration_images: number of calibration samples for "int8".
        calibration_size: (H, W) of the calibration crops of a dynamic-size
            model (a fixed-size model is calibrated at its own size).
        int8_io: for "int8": "float32" (quantize/dequantize inside the model),
            "uint8" or "int8" input and output tensors.

    Returns:
        pathlib.Path of the written file.
    """
    return export_tflite_set(
        model, {quantization: path}, input_size=input_size, batch_size=batch_size,
        representative_data=representative_data,
        num_calibration_images=num_calibration_images, calibration_size=calibration_size,
        int8_io=int8_io)[quantization]


def export_tflite_set(model, paths, input_size=None, batch_size=None, representative_data=None,
                      num_calibration_images=8, calibration_size=(128, 128), int8_io="float32"):
    """Several quantizations of one model, tracing it only once.

    Args:
        paths: ``{quantization: output path}``.
        others: as :func:`export_tflite`.

    Returns:
        ``{quantization: pathlib.Path}``.
    """
    for quantization in paths:
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"Unknown TFLite quantization {quantization!r}. "
                             f"Choose one of {', '.join(QUANTIZATIONS)}.")
    if int8_io not in INT8_IO_TYPES:
        raise ValueError(f"Unknown int8_io {int8_io!r}. Choose one of {', '.join(INT8_IO_TYPES)}.")
    if int8_io != "float32" and set(paths) != {"int8"}:
        raise ValueError(f"int8_io={int8_io!r} needs quantization='int8'. "
                         f"Received: quantization={', '.join(paths)}")
    input_size, batch_size = check_fixed_input(input_size, batch_size)
    if input_size is not None:
        shape = [batch_size or 1, input_size[0], input_size[1], 3]
    else:
        shape = [batch_size, None, None, 3]
    if "int8" in paths:
        if int(num_calibration_images) < 1:
            raise ValueError(f"num_calibration_images must be >= 1. "
                             f"Received: num_calibration_images={num_calibration_images}")
        if representative_data is not None:
            check_representative_data(representative_data)

    written = {}
    # The intermediate SavedModel (as large as the model) goes beside the first output,
    # not in $TMPDIR: a run stopped hard leaves it where the user looks, with a name that
    # says what it is, and clean-up on any exception (SIGTERM included, as maxim-tf turns
    # it into one) removes it; folders made for the outputs go too if nothing was written.
    # The converter itself runs in a child process (see _convert), so SIGTERM/SIGINT stop
    # an export within a moment; after a kill -9 the next export into the same folder
    # sweeps the temporary folders whose process is gone (maxim_tf.fileio.owned_temp_dir).
    folder = pathlib.Path(next(iter(paths.values()))).absolute().parent
    created = fileio.make_dirs(folder)
    fileio.sweep_stale_temp_dirs(folder, TEMP_PREFIX)
    try:
        with fileio.owned_temp_dir(folder, TEMP_PREFIX) as tmp:
            _convert_all(model, paths, shape, input_size, representative_data,
                         num_calibration_images, calibration_size, int8_io, tmp, written)
    except BaseException:
        fileio.remove_empty_dirs(created)
        raise
    return written


def _convert_all(model, paths, shape, input_size, representative_data, num_calibration_images,
                 calibration_size, int8_io, tmp, written):
    """Trace ``model`` once into the SavedModel ``tmp``, convert it per quantization."""
    # Through a Keras ExportArchive: it lets the converter freeze the Keras
    # variables into constants (a tf.Module holding the model would leave
    # 1000+ READ_VARIABLE ops and defeat quantization).
    archive = keras.export.ExportArchive()
    archive.track(model)
    # Builtin ops only: trace without the TF-runtime fusion patterns.
    with fused.portable_graph():
        archive.add_endpoint(
            SIGNATURE, lambda images: {OUTPUT_NAME: graph.restore_any_size(model, images)},
            input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
        saved_model = os.path.join(tmp, "saved_model")
        archive.write_out(saved_model, verbose=False)
    for quantization, path in paths.items():
        samples = None
        if quantization == "int8":
            size = input_size or tuple(calibration_size)
            samples = calibration_samples(representative_data, num_calibration_images, size)
            if shape[0] is not None and shape[0] > 1:  # fixed batch: calibrate whole batches
                samples = [np.concatenate([samples[(i + k) % len(samples)]
                                           for k in range(shape[0])])
                           for i in range(len(samples))]
        flatbuffer = _convert(saved_model, quantization, samples, int8_io)
        flatbuffer = describe(flatbuffer, model_info(model, quantization, int8_io, shape))
        written[quantization] = pathlib.Path(fileio.atomic_write_bytes(path, flatbuffer))


METADATA_NAME = "maxim_tf"


def model_info(model, quantization, int8_io, shape):
    """What a consumer of the ``.tflite`` file must know to feed it (stored in the file)."""
    from maxim_tf import __version__

    integer_io = quantization == "int8" and int8_io != "float32"
    return {
        "name": model.name,
        "producer": f"maxim_tf {__version__}",
        "license": "Apache-2.0",
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "shape": [-1 if d is None else d for d in shape],
                  "dtype": int8_io if integer_io else "float32", "layout": "NHWC",
                  "color": "RGB", "range": [0.0, 1.0],
                  "normalization": {"scale": 1 / 255, "mean": 0.0,
                                    "note": "float = uint8 pixel / 255, no mean subtraction"},
                  "any_size": shape[1] is None},
        "output": {"name": OUTPUT_NAME, "shape": "same as input", "range": [0.0, 1.0],
                   "note": "clip to [0, 1], then * 255 and round for 8-bit pixels"},
        "quantization": quantization,
    }


def describe(flatbuffer, info):
    """Write a readable description and a ``maxim_tf`` JSON metadata entry into a model.

    ``Model.description`` gets one line; the JSON (see :func:`model_info`) is a named
    metadata buffer that :func:`read_info` returns. This is not the TFLite Support
    ``TFLITE_METADATA`` flatbuffer (no maintained writer works with TF 2.21).
    """
    import json

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    model.description = (
        f"MAXIM image restoration ({info['name']}, {info['quantization']}): signature "
        f"'{SIGNATURE}', input '{INPUT_NAME}' {info['input']['dtype']} NHWC RGB in [0, 1] "
        f"(pixel / 255), output '{OUTPUT_NAME}' same shape in [0, 1]. Apache-2.0.").encode()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != entry.name] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_info(path):
    """The ``maxim_tf`` metadata of a ``.tflite`` file written by :func:`describe` (or None)."""
    import json

    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(os.fspath(path))
    for entry in model.metadata or []:
        if entry.name == METADATA_NAME.encode():
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return None


def _calibration_feed(samples):
    """The converter's representative dataset, with a progress bar (calibration is slow)."""
    import sys

    from tqdm import tqdm

    for sample in tqdm(samples, desc="int8 calibration", unit="sample", file=sys.stderr,
                       leave=False, disable=None):
        yield {INPUT_NAME: sample}


_JOB, _SAMPLES, _RESULT, _ERROR = "convert_job.json", "calibration.npy", "converted.tflite", \
    "convert_error.txt"


def _convert(saved_model_dir, quantization, samples, int8_io):
    """Convert the SavedModel in a child process (see :func:`maxim_tf.fileio.run_child`).

    The TFLite converter blocks in C++ for minutes and never returns to Python, so a
    signal could not stop it in this process; killing the child can. The job, the
    calibration samples and the result are files in ``saved_model_dir``'s parent (the
    export's temporary folder).
    """
    import json

    work = pathlib.Path(saved_model_dir)
    folder = work.parent  # the export's temporary folder
    job, result, error = folder / _JOB, folder / _RESULT, folder / _ERROR
    for stale in (result, error):  # from the previous quantization of the same set
        stale.unlink(missing_ok=True)
    job.write_text(json.dumps({"saved_model": os.fspath(work), "quantization": quantization,
                               "int8_io": int8_io, "result": os.fspath(result),
                               "error": os.fspath(error),
                               "samples": None if samples is None else os.fspath(
                                   folder / _SAMPLES)}))
    if samples is not None:
        np.save(folder / _SAMPLES, np.stack(samples))
    status = fileio.run_child("maxim_tf.export.tflite:_child_main", job)
    if error.exists():
        raise RuntimeError(error.read_text())
    if status != 0 or not result.exists():
        raise RuntimeError(f"TFLite conversion ({quantization}) failed: the converter process "
                           f"exited with status {status}")
    return result.read_bytes()


def _child_main(argv):
    """One conversion in the child process of :func:`_convert`; ``argv``: ``[job file]``."""
    import json

    job = json.loads(pathlib.Path(argv[0]).read_text())
    samples = None if job["samples"] is None else list(np.load(job["samples"]))
    try:
        flatbuffer = _convert_here(job["saved_model"], job["quantization"], samples,
                                   job["int8_io"])
    except RuntimeError as err:
        pathlib.Path(job["error"]).write_text(str(err))
        return 1
    except Exception as err:  # noqa: BLE001  (one message for the parent, no traceback)
        pathlib.Path(job["error"]).write_text(
            f"TFLite conversion ({job['quantization']}) failed: {type(err).__name__}: {err}")
        return 1
    pathlib.Path(job["result"]).write_bytes(flatbuffer)
    return 0


def _convert_here(saved_model_dir, quantization, samples, int8_io):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8" and int8_io == "float32":
        # Calibrate, then quantize everything but INT8_FLOAT_OPS (still builtin ops only).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration_feed(samples)
        converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    elif quantization == "int8":
        # Integer input/output: every op integer (the float ops of the mixed
        # form would need float tensors in and out of the integer graph).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: _calibration_feed(samples)
        converter.inference_input_type = getattr(tf, int8_io)
        converter.inference_output_type = getattr(tf, int8_io)
    try:
        flatbuffer = converter.convert()
        if quantization == "int8" and int8_io == "float32":
            from tensorflow.lite.python import convert as tflite_convert

            flatbuffer = tflite_convert.mlir_quantize(
                flatbuffer, fully_quantize=False, denylisted_ops=list(INT8_FLOAT_OPS))
        if quantization == "int8":
            flatbuffer = xnnpack_safe(flatbuffer)
        return flatbuffer
    except Exception as err:  # the converter raises ConverterError and friends
        raise RuntimeError(
            f"TFLite conversion ({quantization}, builtin ops only) failed. If the converter "
            f"names an op that is not a builtin TFLite op, that op must be rewritten in the "
            f"MAXIM graph. Converter said:\n{err}") from err


def xnnpack_safe(flatbuffer):
    """Fix quantization parameters of an int8 ``.tflite`` that XNNPACK cannot take.

    1. A CONV/FC whose output never left 0 in calibration (a ReLU that never fired)
       gets a degenerate output scale (~1e-8), so its requantization scale exceeds the
       256 XNNPACK allows. LiteRT's XNNPACK delegate (2.3 and the 2.4 nightlies) still
       claims the op, fails to create the runtime and aborts the process with
       "free(): double free detected in tcache 2". The output scale is raised to
       input scale x filter scale (the int32 bias of consuming convolutions is rescaled
       to match); the tensor's values are unchanged (they were all 0 in calibration).
    2. A constant added to an int8 tensor at a scale < 2^-10 of the output's (the
       layer-norm epsilon, 1e-6) makes XNNPACK reject the ADD and split the graph there.
       The constant is requantized at 2^-9 x the output scale (each such op gets its own
       copy); it still rounds to (almost) nothing, exactly as the int8 ADD computed it.
    """
    import copy

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    subgraph = model.subgraphs[0]
    tensors, buffers = subgraph.tensors, model.buffers
    ops = list(_model_ops(model))
    for op, new_scale, out in list(_degenerate_contractions(model)):
        ratio = _scales(out)[0] / new_scale
        out.quantization.scale = np.array([new_scale], np.float32)
        for name, consumer in ops:
            spec = _QUANTIZED_CONTRACTIONS.get(name)
            if spec and consumer.inputs[spec[0]] == op.outputs[0] \
                    and len(consumer.inputs) > spec[2] and consumer.inputs[spec[2]] >= 0:
                bias = tensors[consumer.inputs[spec[2]]]
                values = np.frombuffer(bytes(buffers[bias.buffer].data), np.int32)
                values = np.round(values.astype(np.float64) * ratio).astype(np.int32)
                buffers[bias.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
                bias.quantization.scale = (_scales(bias) / ratio).astype(np.float32)
    for name, op in ops:
        if name not in ("ADD", "SUB"):
            continue
        s_out = _scales(tensors[op.outputs[0]])
        if tensors[op.outputs[0]].type != 9 or s_out is None:
            continue
        for index in list(op.inputs):
            const = tensors[index]
            s_c = _scales(const)
            if buffers[const.buffer].data is None or s_c is None or len(s_c) != 1 \
                    or s_c[0] / s_out[0] >= 2.0 ** -10:
                continue
            q = np.frombuffer(bytes(buffers[const.buffer].data), np.int8).astype(np.float64)
            real = (q - const.quantization.zeroPoint[0]) * s_c[0]
            new_scale = s_out[0] * 2.0 ** -9
            fixed = copy.deepcopy(const)
            buffers.append(schema.BufferT())
            buffers[-1].data = np.frombuffer(
                np.clip(np.round(real / new_scale), -128, 127).astype(np.int8).tobytes(), np.uint8)
            fixed.buffer = len(buffers) - 1
            fixed.quantization.scale = np.array([new_scale], np.float32)
            fixed.quantization.zeroPoint = np.array([0], np.int64)
            tensors.append(fixed)
            op.inputs = np.array([len(tensors) - 1 if i == index else i for i in op.inputs],
                                 np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def calibration_samples(source, count, size, seed=0):
    """Representative float32 ``[1, H, W, 3]`` images in [0, 1] for int8 calibration.

    Args:
        source: a folder of images (random ``size`` crops, images smaller than
            ``size`` are resized up first) or None for synthetic patches
            (smooth random colour fields with edges and mild noise, which
            exercise the same activation ranges as natural photos far better
            than white noise).
        count: number of samples.
        size: (H, W) of each sample.
        seed: random seed (calibration is deterministic).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    if source is None:
        return [_synthetic_patch(rng, h, w) for _ in range(count)]
    images = load_images(source)
    if not images:
        raise ValueError(f"No images found in the representative data folder {source}")
    out = []
    for k in range(count):
        img = images[k % len(images)]
        if img.shape[0] < h or img.shape[1] < w:
            scale = max(h / img.shape[0], w / img.shape[1])
            new = (int(np.ceil(img.shape[0] * scale)), int(np.ceil(img.shape[1] * scale)))
            img = tf.image.resize(img, new, antialias=True).numpy()
        y = rng.integers(0, img.shape[0] - h + 1)
        x = rng.integers(0, img.shape[1] - w + 1)
        out.append(np.clip(img[None, y:y + h, x:x + w, :3], 0, 1).astype(np.float32))
    return out


def _synthetic_patch(rng, h, w):
    coarse = rng.random((1, max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    img = tf.image.resize(coarse, (h, w), method="bicubic").numpy()
    # A few hard edges, then mild noise, as degraded photos have.
    for _ in range(3):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        img[:, y0:, x0:, :] = 0.5 * img[:, y0:, x0:, :] + 0.5 * rng.random(3)
    img = img + rng.normal(0, 0.02, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)
