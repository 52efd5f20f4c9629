"""MAXIM to ONNX via tf2onnx, with dynamic N, H, W and a standard-op check.

The ONNX graph takes ``images`` float32 ``[N, H, W, 3]`` in [0, 1] (NHWC, as
the Keras model) and returns ``restored`` of the same shape; padding to the
size multiple and cropping back are inside the graph. Strings (PNG in/out)
cannot be expressed in ONNX, so there is no bytes variant.

tf2onnx can write nodes that are not standard ONNX (a TF op it does not know
is kept as-is in a custom domain) without raising: :func:`check_standard_ops`
rejects such graphs, and :func:`export_onnx` calls it before writing.

The conversion runs in a child process (tf2onnx's graph optimisation blocks in C++,
where a signal cannot stop it): the model is saved as a ``.keras`` file in a temporary
folder beside the output, the child loads it, converts and checks it, and the result
is renamed into place. SIGTERM/SIGINT kill the child and remove the folder; after a
``kill -9`` the next export into the same folder sweeps it.
"""

import os
import pathlib

import tensorflow as tf

from maxim_tf import fileio, fused
from maxim_tf.export import graph

TEMP_PREFIX = ".maxim_onnx_tmp_"

INPUT_NAME = "images"
OUTPUT_NAME = "restored"
DEFAULT_OPSET = 17


def export_onnx(model, path, opset=DEFAULT_OPSET):
    """Convert a Keras MAXIM to an ``.onnx`` file (dynamic N, H, W).

    Args:
        model: a Keras MAXIM.
        path: output file (written atomically).
        opset: ONNX opset (17 and 18 are tested).

    Returns:
        pathlib.Path of the written file.
    """
    path = pathlib.Path(path)
    folder = path.absolute().parent
    created = fileio.make_dirs(folder)
    fileio.sweep_stale_temp_dirs(folder, TEMP_PREFIX)
    try:
        with fileio.owned_temp_dir(folder, TEMP_PREFIX) as tmp:
            source, result, error = (os.path.join(tmp, name) for name in
                                     ("model.keras", "model.onnx", "error.txt"))
            model.save(source)
            status = fileio.run_child("maxim_tf.export.onnx:_child_main", source, result,
                                      error, int(opset))
            if os.path.exists(error):
                raise _child_error(pathlib.Path(error).read_text())
            if status != 0 or not os.path.exists(result):
                raise RuntimeError(f"ONNX conversion (opset {opset}) failed: the converter "
                                   f"process exited with status {status}")
            return pathlib.Path(fileio.atomic_write_bytes(path, pathlib.Path(result).read_bytes()))
    except BaseException:
        fileio.remove_empty_dirs(created)
        raise


def _child_error(text):
    """The parent's exception for the child's message ("ValueError: ..." or a RuntimeError)."""
    kind, _, message = text.partition(": ")
    return ValueError(message) if kind == "ValueError" else RuntimeError(message)


def _child_main(argv):
    """The conversion in the child process of :func:`export_onnx`;
    ``argv``: ``[model.keras, result, error file, opset]``."""
    from maxim_tf.modelfile import load_keras_model

    source, result, error, opset = argv
    try:
        proto = convert(load_keras_model(source, require_maxim=True), int(opset))
    except (ValueError, RuntimeError) as err:
        pathlib.Path(error).write_text(f"{type(err).__name__}: {err}")
        return 1
    except Exception as err:  # noqa: BLE001  (one message for the parent, no traceback)
        pathlib.Path(error).write_text(f"RuntimeError: ONNX conversion failed: "
                                       f"{type(err).__name__}: {err}")
        return 1
    pathlib.Path(result).write_bytes(proto.SerializeToString())
    return 0


def convert(model, opset=DEFAULT_OPSET):
    """The checked ONNX ``ModelProto`` of a Keras MAXIM (in this process)."""
    import tf2onnx

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)])
    def restore(images):
        return {OUTPUT_NAME: graph.restore_any_size(model, images)}

    try:
        with fused.portable_graph():  # standard ONNX ops only
            proto, _ = tf2onnx.convert.from_function(
                restore, input_signature=restore.input_signature, opset=int(opset))
    except Exception as err:
        raise RuntimeError(f"tf2onnx could not convert the MAXIM graph (opset {opset}): {err}") \
            from err
    _rename_output(proto)
    check_standard_ops(proto)
    return proto


def _rename_output(proto):
    """tf2onnx names the output after the TF tensor; give it the signature's name."""
    graph_proto = proto.graph
    if len(graph_proto.output) != 1 or graph_proto.output[0].name == OUTPUT_NAME:
        return
    old = graph_proto.output[0].name
    for node in graph_proto.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = OUTPUT_NAME
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = OUTPUT_NAME
    graph_proto.output[0].name = OUTPUT_NAME


def nonstandard_ops(proto):
    """Sorted ``"domain:op_type"`` of nodes that are not standard ONNX ops of the model's opset."""
    import onnx

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    bad = set()

    def visit(graph_proto):
        for node in graph_proto.node:
            domain = node.domain or ""
            standard = domain in ("", "ai.onnx") and onnx.defs.has(node.op_type, opset, domain="")
            if not standard:
                bad.add(f"{domain or 'ai.onnx'}:{node.op_type}")
            for attr in node.attribute:  # If / Loop / Scan bodies
                if attr.g.node:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(proto.graph)
    return sorted(bad)


def check_standard_ops(proto):
    """Raise ValueError naming every node that is not a standard ONNX op."""
    import onnx

    bad = nonstandard_ops(proto)
    if bad:
        raise ValueError(
            f"The ONNX graph has non-standard ops that ONNX runtimes cannot run: {', '.join(bad)}. "
            f"Rewrite the TF op in the MAXIM graph with standard ops.")
    onnx.checker.check_model(proto)


class OnnxRunner:
    """Run an exported MAXIM ``.onnx`` with onnxruntime (CPU)."""

    def __init__(self, path, num_threads=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(os.fspath(path), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, images):
        import numpy as np

        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(images, np.float32)})[0]
