"""Cross-runtime matrix: one fixture-converted MAXIM exported to every format, the same
inputs through Keras, SavedModel (TF2 and a TF1 session, as TF Serving loads it), TFLite
fp32/fp16/dynamic/int8 (LiteRT) and ONNX Runtime; plus the serving contract of the
SavedModel (warmup replay, bytes signature, in-graph limits) and the op checks.

The model is the official tiny single-stage checkpoint (committed under
tests/fixtures, official initialisation perturbed), so its outputs are in a natural
range and the int8 PSNR means something.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from conftest import FIXTURES
from PIL import Image

from maxim_tf.export import export_model, verify
from maxim_tf.export import onnx as onnx_export
from maxim_tf.export import savedmodel as sm
from maxim_tf.export.tflite import export_tflite_set
from maxim_tf.fileio import current_umask
from maxim_tf.image_io import to_uint8
from maxim_tf.litert import TFLiteRunner

MAX_PIXELS = 128 * 128
TFLITE = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def model():
    from maxim_tf.conversion.checkpoint import convert_checkpoint

    model, _ = convert_checkpoint(FIXTURES / "official" / "tiny1s_single_scale" / "checkpoint.npz")
    return model


@pytest.fixture(scope="module")
def artifacts(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_matrix")
    # Requests of the tests hold up to two images near the per-image limit.
    paths = {"savedmodel": export_model(model, out / "serving", "savedmodel", name="tiny",
                                        max_pixels=MAX_PIXELS,
                                        max_request_pixels=4 * MAX_PIXELS)[0],
             "onnx": export_model(model, out / "tiny.onnx", "onnx")[0]}
    tflite = export_tflite_set(model, {q: out / f"tiny_{q}.tflite" for q in TFLITE},
                               num_calibration_images=4)
    paths.update({f"tflite-{q}": p for q, p in tflite.items()})
    return paths


@pytest.fixture(scope="module")
def runtimes(artifacts):
    run = {}
    run.update(verify.runners("savedmodel", artifacts["savedmodel"]))
    run.update(verify.runners("onnx", artifacts["onnx"]))
    for q in TFLITE:
        run.update(verify.runners("tflite", artifacts[f"tflite-{q}"], quantization=q))
    return run


@pytest.fixture(scope="module")
def tf1(artifacts):
    """The SavedModel in a TF1 session, as TF Serving loads it."""
    with sm.TF1SessionRunner(artifacts["savedmodel"]) as runner:
        yield runner


@pytest.fixture(scope="module")
def inputs_and_reference(model):
    # Two sizes that need padding (multiple 64), a batch of two each.
    images = verify.sample_images([(77, 123), (126, 65)], batch=2, seed=3)
    return [(x, verify.keras_reference(model, x)) for x in images]


RUNTIMES = ["savedmodel", "savedmodel-tf1", "onnx"] + [f"tflite-{q}" for q in TFLITE]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_matches_keras(runtime, runtimes, inputs_and_reference):
    for images, reference in inputs_and_reference:
        out = np.asarray(runtimes[runtime](images))
        assert out.shape == images.shape
        check = verify.compare(runtime, out, reference, images.shape)
        assert check.passed, str(check)


def test_thresholds_are_the_issue_ones():
    assert verify.TOLERANCES["savedmodel"] == verify.TOLERANCES["savedmodel-tf1"] == 1e-4
    assert verify.TOLERANCES["tflite-fp32"] == verify.TOLERANCES["onnx"] == 1e-4
    assert verify.TOLERANCES["tflite-fp16"] == 1e-2


def test_verify_export_reports_every_size(model, artifacts):
    checks = verify.verify_export(model, "savedmodel", artifacts["savedmodel"])
    assert {c.runtime for c in checks} == {"savedmodel", "savedmodel-tf1"}
    assert len(checks) == 4 and all(c.passed for c in checks)
    assert all(c.max_abs_error <= 1e-4 for c in checks)


# --- SavedModel as TF Serving sees it -------------------------------------------------

def test_savedmodel_layout_and_signatures(artifacts, tf1):
    version_dir = artifacts["savedmodel"]
    assert version_dir.name == "1" and version_dir.parent.name == "tiny"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "assets.extra" / sm.WARMUP_FILE).is_file()
    assert not [p for p in version_dir.parent.iterdir() if p.name.startswith(".tmp")]
    # Not mkdtemp's 0700: a serving user other than the exporter can read it.
    assert version_dir.stat().st_mode & 0o777 == 0o777 & ~current_umask()
    sigs = tf1.signatures
    assert set(sigs) >= {"serving_default", "serving_bytes"}
    images = sigs["serving_default"].inputs["images"]
    assert [d.size for d in images.tensor_shape.dim] == [-1, -1, -1, 3]
    assert list(sigs["serving_default"].outputs) == ["restored"]
    assert list(sigs["serving_bytes"].inputs) == ["image_bytes"]
    assert list(sigs["serving_bytes"].outputs) == ["output_bytes"]


def test_next_version_is_one_more_than_highest(tmp_path):
    for name in ("1", "7", "not_a_version", ".tmp-8-x"):
        (tmp_path / name).mkdir()
    assert sm.next_version(tmp_path) == 8
    assert sm.next_version(tmp_path / "missing") == 1


def test_tf1_session_replays_every_warmup_record(model, artifacts, tf1):
    records = sm.read_warmup(artifacts["savedmodel"] / "assets.extra" / sm.WARMUP_FILE)
    assert [sig for sig, _ in records] == ["serving_default", "serving_default", "serving_bytes"]
    for signature, inputs in records:
        out = tf1.run(inputs, signature)
        if signature == "serving_default":
            reference = verify.keras_reference(model, inputs["images"])
            assert np.max(np.abs(out["restored"] - reference)) <= 1e-4
        else:
            (data,) = inputs["image_bytes"]
            image = np.asarray(Image.open(io.BytesIO(data)), np.float32)[None] / 255.0
            expected = to_uint8(verify.keras_reference(model, image))[0]
            got = np.asarray(Image.open(io.BytesIO(out["output_bytes"][0])))
            assert got.shape == expected.shape
            assert np.max(np.abs(got.astype(int) - expected.astype(int))) <= 1


def _encode(image, fmt):
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_bytes_signature_batch_of_png_and_jpeg_of_different_sizes(model, tf1):
    a, b = verify.sample_images([(70, 90), (64, 33)], seed=5)
    data = np.array([_encode(a[0], "PNG"), _encode(b[0], "JPEG")], dtype=object)
    out = tf1.run({"image_bytes": data}, "serving_bytes")["output_bytes"]
    assert out.shape == (2,)
    for encoded, result in zip(data, out):
        # TF's own decoder: PIL's JPEG IDCT differs from libjpeg-turbo's by a few levels.
        decoded = tf.io.decode_image(encoded, channels=3, dtype=tf.float32).numpy()
        expected = to_uint8(verify.keras_reference(model, decoded[None]))[0]
        png = Image.open(io.BytesIO(result))
        assert png.format == "PNG" and png.mode == "RGB"
        got = np.asarray(png).astype(int)
        assert got.shape == expected.shape
        assert np.max(np.abs(got - expected.astype(int))) <= 1


def test_bytes_signature_rejects_a_non_image_with_invalid_argument(tf1):
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        tf1.run({"image_bytes": np.array([b"hello, not an image"], dtype=object)},
                "serving_bytes")


def test_over_the_pixel_limit_is_a_readable_invalid_argument(tf1, runtimes):
    too_big = np.zeros((129, 128, 3), np.float32)
    message = r"Image too large: 129x128 = 16512 pixels, more than the limit of 16384 pixels"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf1.run({"image_bytes": np.array([_encode(too_big, "PNG")], dtype=object)},
                "serving_bytes")
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf1.run({"images": too_big[None]})
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        runtimes["savedmodel"](too_big[None])  # TF2 tf.saved_model.load
    # Exactly at the limit is accepted.
    out = tf1.run({"images": np.full((1, 128, 128, 3), 0.5, np.float32)})["restored"]
    assert out.shape == (1, 128, 128, 3)


# --- Op sets ------------------------------------------------------------------------

@pytest.mark.parametrize("quantization", TFLITE)
def test_tflite_uses_builtin_ops_only(quantization, artifacts):
    runner = TFLiteRunner(artifacts[f"tflite-{quantization}"])
    ops = {op["op_name"] for op in runner.interpreter._get_ops_details()}
    assert ops, "no ops listed"
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    assert "READ_VARIABLE" not in ops  # weights frozen into constants
    if quantization == "int8":
        assert runner.input_details["dtype"] == np.float32
        tensors = runner.interpreter.get_tensor_details()
        assert any(t["dtype"] == np.int8 for t in tensors)
        assert {"CONV_2D", "FULLY_CONNECTED"} <= ops


def test_tflite_dynamic_model_takes_any_size(artifacts):
    runner = TFLiteRunner(artifacts["tflite-fp32"])
    assert runner.fixed_size is None and runner.input_shape == (-1, -1, -1, 3)
    for shape in [(1, 5, 9, 3), (3, 64, 64, 3)]:
        assert runner(np.full(shape, 0.5, np.float32)).shape == shape


@pytest.mark.parametrize("quantization", ["fp32", "int8"])
def test_dynamic_tflite_leaves_only_partition_reshapes_outside_xnnpack(quantization, artifacts):
    # A resize whose output size comes from the input's shape at run time is not
    # taken by XNNPACK (an int8 RESIZE_BILINEAR or DIV then runs on LiteRT's
    # reference kernels); the portable graph writes the resizes with
    # size-independent ops. Left to LiteRT: the block/grid partition reshapes and
    # the small ops of the input padding (3 channels).
    from maxim_tf.litert import _litert

    path = artifacts[f"tflite-{quantization}"]
    assert TFLiteRunner(path).uses_xnnpack
    interpreter = _litert()[0](model_path=str(path), num_threads=2)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [1, 64, 128, 3])
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    assert not {"RESIZE_BILINEAR", "FILL", "DIV"} & {op["op_name"] for op in ops}
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    assert delegates
    delegated_outputs = {t for op in delegates for t in op["outputs"]}
    producer = {t: op["op_name"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    left = {producer[t] for op in delegates for t in op["inputs"]
            if t in producer and t not in delegated_outputs}
    assert left <= {"RESHAPE", "GATHER", "STRIDED_SLICE"}, left


def test_onnx_graph_has_only_standard_ops_and_dynamic_axes(artifacts):
    import onnx

    proto = onnx.load(str(artifacts["onnx"]))
    assert onnx_export.nonstandard_ops(proto) == []
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("images", "restored")
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims[3] == 3 and all(isinstance(d, str) for d in dims[:3]), dims


def test_onnx_check_rejects_a_nonstandard_node(artifacts):
    import onnx

    proto = onnx.load(str(artifacts["onnx"]))
    proto.graph.node.append(onnx.helper.make_node(
        "ScaleAndTranslate", ["images"], ["unused"], domain="ai.onnx.contrib"))
    assert onnx_export.nonstandard_ops(proto) == ["ai.onnx.contrib:ScaleAndTranslate"]
    with pytest.raises(ValueError, match="non-standard ops.*ScaleAndTranslate"):
        onnx_export.check_standard_ops(proto)


# --- examples/serving/client.py against stand-ins for TF Serving's REST and gRPC -----------
# The stand-ins follow TF Serving's documented JSON mapping (row "instances" / columnar
# "inputs", {"b64": ...} for strings, base64 for outputs named *_bytes) and run the
# signature in the TF1 session, so the client's request shapes meet the real SavedModel.

def _load_client():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(
        "maxim_serving_client", REPO / "examples" / "serving" / "client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    return client


def _rest_predict(tf1, body):
    import base64

    def decode(value):
        return base64.b64decode(value["b64"]) if isinstance(value, dict) else value

    signature = body.get("signature_name", "serving_default")
    if "instances" in body:
        keys = body["instances"][0].keys()
        inputs = {k: np.array([decode(row[k]) for row in body["instances"]],
                              dtype=object if k.endswith("bytes") else np.float32) for k in keys}
    else:
        inputs = {k: np.asarray(v, np.float32) for k, v in body["inputs"].items()}
    (name, value), = tf1.run(inputs, signature).items()
    if name.endswith("_bytes"):
        value = [{"b64": base64.b64encode(v).decode("ascii")} for v in value]
    else:
        value = value.tolist()
    return {"predictions": value} if "instances" in body else {"outputs": value}


@pytest.fixture(scope="module")
def rest_server(tf1):
    import http.server
    import json
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            assert self.path == "/v1/models/tiny:predict", self.path
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                status, reply = 200, _rest_predict(tf1, body)
            except tf.errors.InvalidArgumentError as err:
                status, reply = 400, {"error": err.message}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_rest_client_bytes_and_float(model, rest_server):
    client = _load_client()
    image = verify.sample_images([(70, 90)], seed=9)[0]
    png = client.predict_rest_bytes(_encode(image[0], "PNG"), port=rest_server, model="tiny")
    got = np.asarray(Image.open(io.BytesIO(png))).astype(int)
    expected = to_uint8(verify.keras_reference(model, image))[0].astype(int)
    assert np.max(np.abs(got - expected)) <= 1
    restored = client.predict_rest_float(image, port=rest_server, model="tiny")
    assert np.max(np.abs(restored - verify.keras_reference(model, image))) <= 1e-4
    with pytest.raises(RuntimeError, match="400.*Image too large"):
        client.predict_rest_float(np.zeros((1, 129, 128, 3), np.float32), port=rest_server,
                                  model="tiny")


def test_grpc_client_bytes(model, tf1):
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            assert request.model_spec.name == "tiny"
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            out = tf1.run(inputs, request.model_spec.signature_name)
            response = predict_pb2.PredictResponse()
            for key, value in out.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        image = verify.sample_images([(50, 66)], seed=11)[0]
        png = _load_client().predict_grpc_bytes(_encode(image[0], "PNG"), port=port, model="tiny")
    finally:
        server.stop(None)
    got = np.asarray(Image.open(io.BytesIO(png))).astype(int)
    expected = to_uint8(verify.keras_reference(model, image))[0].astype(int)
    assert np.max(np.abs(got - expected)) <= 1
