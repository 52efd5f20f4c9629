"""Restore an image with a MAXIM model served by TF Serving, over REST or gRPC.

    # REST (port 8501): PNG/JPEG bytes in, PNG bytes out (signature serving_bytes)
    python client.py rest  input.png restored.png --model maxim_dehaze
    # gRPC (port 8500), same signature
    python client.py grpc  input.png restored.png --model maxim_dehaze
    # float signature (serving_default) over REST: [N, H, W, 3] in [0, 1]
    python client.py rest-float input.png restored.png --model maxim_dehaze

REST needs only the standard library, numpy and Pillow; gRPC needs ``grpcio`` and
``tensorflow-serving-api`` (and TensorFlow for ``make_tensor_proto``).
"""

import argparse
import base64
import io
import json
import sys
import urllib.error
import urllib.request

import numpy as np
from PIL import Image


def predict_rest_bytes(data, host="localhost", port=8501, model="maxim", version=None):
    """PNG/JPEG bytes -> restored PNG bytes through ``serving_bytes`` (REST, base64)."""
    body = {"signature_name": "serving_bytes",
            "instances": [{"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}}]}
    out = _post(host, port, model, version, body)
    # Outputs whose name ends in "_bytes" come back as {"b64": ...}.
    return base64.b64decode(out["predictions"][0]["b64"])


def predict_rest_float(images, host="localhost", port=8501, model="maxim", version=None):
    """float32 [N, H, W, 3] in [0, 1] -> restored float32 through ``serving_default`` (REST)."""
    body = {"signature_name": "serving_default", "inputs": {"images": images.tolist()}}
    out = _post(host, port, model, version, body)
    return np.asarray(out["outputs"], dtype=np.float32)


def _post(host, port, model, version, body):
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    request = urllib.request.Request(f"http://{host}:{port}{path}",
                                     data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        # TF Serving puts the model's InvalidArgument message in {"error": ...}.
        raise RuntimeError(f"TF Serving returned {err.code}: {err.read().decode()}") from None


def predict_grpc_bytes(data, host="localhost", port=8500, model="maxim", version=None):
    """PNG/JPEG bytes -> restored PNG bytes through ``serving_bytes`` (gRPC)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_bytes"
    if version:
        request.model_spec.version.value = int(version)
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
    options = [("grpc.max_send_message_length", 256 << 20),
               ("grpc.max_receive_message_length", 256 << 20)]
    with grpc.insecure_channel(f"{host}:{port}", options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=600.0)
    return response.outputs["output_bytes"].string_val[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("rest", "grpc", "rest-float"))
    p.add_argument("input", help="PNG or JPEG image")
    p.add_argument("output", help="restored PNG")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, help="default 8501 (REST) / 8500 (gRPC)")
    p.add_argument("--model", default="maxim", help="served model name")
    p.add_argument("--version", type=int, help="model version (default: latest)")
    args = p.parse_args(argv)
    with open(args.input, "rb") as f:
        data = f.read()
    kw = dict(host=args.host, model=args.model, version=args.version)
    if args.mode == "rest":
        png = predict_rest_bytes(data, port=args.port or 8501, **kw)
    elif args.mode == "grpc":
        png = predict_grpc_bytes(data, port=args.port or 8500, **kw)
    else:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)[None] / 255.0
        restored = predict_rest_float(image, port=args.port or 8501, **kw)[0]
        buf = io.BytesIO()
        Image.fromarray(np.round(np.clip(restored, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
        png = buf.getvalue()
    with open(args.output, "wb") as f:
        f.write(png)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
