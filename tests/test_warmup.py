"""TF Serving warm-up records are encoded without tensorflow-serving-api."""

import numpy as np
import pytest

from maxim_tf.export import warmup

pytest.importorskip("tensorflow")


def _inputs():
    rng = np.random.default_rng(0)
    return {"images": rng.random((2, 5, 7, 3)).astype(np.float32),
            "image_bytes": np.array([b"\x89PNG fake", b"second"], dtype=object)}


def test_round_trip():
    data = warmup.encode_prediction_log("maxim", "serving_bytes", _inputs())
    name, signature, inputs = warmup.decode_prediction_log(data)
    assert (name, signature) == ("maxim", "serving_bytes")
    assert sorted(inputs) == ["image_bytes", "images"]
    np.testing.assert_array_equal(inputs["images"], _inputs()["images"])
    assert list(inputs["image_bytes"]) == [b"\x89PNG fake", b"second"]


def test_truncated_record_is_an_error():
    data = warmup.encode_prediction_log("maxim", "serving_default", _inputs())
    with pytest.raises(ValueError, match="truncated"):
        warmup.decode_prediction_log(data[:-5])


def test_tf_serving_parses_our_bytes():
    """Cross-check with TF Serving's own protos (installed by scripts/test.sh for this test)."""
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    import tensorflow as tf

    data = warmup.encode_prediction_log("maxim", "serving_default", _inputs())
    log = prediction_log_pb2.PredictionLog.FromString(data)
    request = log.predict_log.request
    assert log.WhichOneof("log_type") == "predict_log"
    assert request.model_spec.name == "maxim"
    assert request.model_spec.signature_name == "serving_default"
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["images"]), _inputs()["images"])
    assert list(tf.make_ndarray(request.inputs["image_bytes"])) == [b"\x89PNG fake", b"second"]
    # ... and our decoder reads what TF Serving's protobuf library writes.
    assert warmup.decode_prediction_log(log.SerializeToString())[1] == "serving_default"
