"""The fusion-friendly layer forms equal the Keras layers, and do fuse."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from maxim_tf import fused
from maxim_tf import layers as L

DYNAMIC = tf.TensorSpec([None, None, None, 8], tf.float32)


def _built(layer, channels=8):
    layer.build((None, None, None, channels))
    # Non-trivial weights everywhere (Keras initialises biases/betas to 0, gammas to 1).
    rng = np.random.default_rng(3)
    for v in layer.weights:
        v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("activation", [None, "gelu", "leaky_relu"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_dense_equals_keras(rng, activation, dynamic):
    layer = _built(keras.layers.Dense(6))
    x = rng.normal(size=(2, 5, 7, 8)).astype("float32")
    res = rng.normal(size=(2, 5, 7, 6)).astype("float32")
    spec = DYNAMIC if dynamic else tf.TensorSpec(x.shape, tf.float32)
    fn = tf.function(lambda t: fused.dense(layer, t, activation, residual=res), input_signature=[spec])
    want = layer(x).numpy() + res
    if activation == "gelu":
        want = 0.5 * want * (1 + np.tanh(np.sqrt(2 / np.pi) * (want + 0.044715 * want**3)))
    elif activation == "leaky_relu":
        want = np.where(want > 0, want, 0.2 * want)
    np.testing.assert_allclose(fn(x).numpy(), want, rtol=1e-5, atol=1e-5)


def test_dense_columns_and_bias_shift(rng):
    layer = _built(keras.layers.Dense(6))
    x = rng.normal(size=(1, 3, 4, 8)).astype("float32")
    full = layer(x).numpy()
    got = fused.dense(layer, tf.constant(x), columns=(2, 5), bias_shift=1.0).numpy()
    np.testing.assert_allclose(got, full[..., 2:5] + 1.0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides,kernel", [(1, 3), (2, 4), (1, 1)])
def test_conv_equals_keras(rng, strides, kernel):
    layer = _built(keras.layers.Conv2D(5, kernel, strides=strides, padding="same"))
    x = rng.normal(size=(2, 8, 12, 8)).astype("float32")
    want = layer(x).numpy()
    np.testing.assert_allclose(fused.conv(layer, tf.constant(x)).numpy(), want, rtol=1e-5, atol=1e-5)
    lrelu = fused.conv(layer, tf.constant(x), "leaky_relu", 0.1).numpy()
    np.testing.assert_allclose(lrelu, np.where(want > 0, want, 0.1 * want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_layer_norm_equals_flax_formula(rng, dynamic, scale):
    # scale 1e-3: variance 1e-6, so epsilon 1e-6 vs the 1.001e-5 that the
    # tf.nn batch-norm wrapper would force changes the output by ~2x.
    layer = _built(keras.layers.LayerNormalization(epsilon=L.LN_EPS))
    x = (rng.normal(size=(2, 6, 10, 8)) * scale).astype("float32")
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    x64 = x.astype(np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    want = (x64 - mean) / np.sqrt(var + L.LN_EPS) * gamma + beta
    spec = DYNAMIC if dynamic else tf.TensorSpec(x.shape, tf.float32)
    fn = tf.function(lambda t: fused.layer_norm(layer, t), input_signature=[spec])
    np.testing.assert_allclose(fn(x).numpy(), want, rtol=1e-4, atol=1e-4)


def _op_types(fn, spec):
    return {op.type for op in fn.get_concrete_function(spec).graph.get_operations()}


def test_portable_graph_has_no_batch_norm():
    layer = _built(keras.layers.LayerNormalization(epsilon=L.LN_EPS))
    fast = _op_types(tf.function(lambda t: fused.layer_norm(layer, t)), DYNAMIC)
    with fused.portable_graph():
        assert fused.is_portable()
        portable = _op_types(tf.function(lambda t: fused.layer_norm(layer, t)), DYNAMIC)
    assert not fused.is_portable()
    assert "FusedBatchNormV3" in fast
    assert "FusedBatchNormV3" not in portable


def _runtime_ops(fn, x, tmp_path):
    """Op types that actually ran (TF profiler trace of one call)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    fn(x)
    tf.profiler.experimental.start(str(tmp_path))
    fn(x)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(open(glob.glob(f"{tmp_path}/**/*.xplane.pb", recursive=True)[0],
                               "rb").read())
    names = {m.name for plane in space.planes for m in plane.event_metadata.values()}
    return {n.rsplit(":", 1)[-1] for n in names if ":" in n}


def test_gmlp_layer_fuses_on_onednn(rng, tmp_path):
    from tensorflow.python.util import _pywrap_util_port

    if not _pywrap_util_port.IsMklEnabled():
        pytest.skip("Grappler's oneDNN fusions need a oneDNN (x86) TensorFlow build")
    layer = _built(L.GmlpLayer("grid", 2))
    fn = tf.function(lambda t: layer(t), input_signature=[DYNAMIC])
    ops = _runtime_ops(fn, tf.constant(rng.normal(size=(1, 8, 8, 8)).astype("float32")), tmp_path)
    assert "_MklLayerNorm" in ops, sorted(ops)
    assert any("FusedMatMul" in op for op in ops), sorted(ops)
    assert "Tanh" not in ops, "GELU was not fused into the matmul"
