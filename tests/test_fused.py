"""The fusion-friendly layer forms equal the Keras layers, and do fuse."""

import contextlib
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


def _keras_dense(layer, units):
    """A stock keras Dense holding ``layer``'s weights (the reference)."""
    ref = keras.layers.Dense(units)
    ref.build((None, layer.kernel.shape[0]))
    ref.set_weights(layer.get_weights())
    return ref


def _gelu_tanh(y):
    return 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))


def _graph_mode(portable):
    return fused.portable_graph() if portable else contextlib.nullcontext()


@pytest.mark.parametrize("activation", [None, "gelu", "leaky_relu"])
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("portable", [False, True])  # 2-D matmul / 1x1 convolution
def test_dense_equals_keras(rng, activation, dynamic, portable):
    layer = _built(fused.Dense(6, activation=activation))
    x = rng.normal(size=(2, 5, 7, 8)).astype("float32")
    spec = DYNAMIC if dynamic else tf.TensorSpec(x.shape, tf.float32)
    with _graph_mode(portable):
        fn = tf.function(lambda t: layer(t), input_signature=[spec])
        fn.get_concrete_function()
    want = _keras_dense(layer, 6)(x).numpy()
    if activation == "gelu":
        want = _gelu_tanh(want)
    elif activation == "leaky_relu":
        want = np.where(want > 0, want, 0.2 * want)
    np.testing.assert_allclose(fn(x).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("portable", [False, True])
def test_dense_epilogues_equal_their_reference_forms(rng, portable):
    layer = _built(fused.Dense(6))
    ref = _keras_dense(layer, 6)
    u = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    v = rng.normal(size=(2, 5, 7, 5)).astype("float32")
    res = rng.normal(size=(2, 5, 7, 6)).astype("float32")
    x = np.concatenate([u, v], -1)
    full = ref(x).numpy()
    with _graph_mode(portable):  # traced: the portable form is chosen when tracing
        call = tf.function(lambda *a, **k: layer(*a, **k))
        np.testing.assert_allclose(call(x, residual=res).numpy(), full + res, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(call([u, v]).numpy(), full, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(call([u, v], residual=res).numpy(), full + res, rtol=1e-5, atol=1e-5)
        halves = call(x, split=2)
    assert len(halves) == 2
    for got, want in zip(halves, np.split(full, 2, -1)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be combined"):
        layer(x, residual=res, split=2)


def test_dense_dropout_only_in_training(rng):
    layer = _built(fused.Dense(6, dropout_rate=0.5))
    x = rng.normal(size=(1, 16, 16, 8)).astype("float32")
    res = rng.normal(size=(1, 16, 16, 6)).astype("float32")
    clean = layer(x, residual=res).numpy()
    np.testing.assert_allclose(clean, _keras_dense(layer, 6)(x).numpy() + res, rtol=1e-5, atol=1e-5)
    dropped = layer(x, residual=res, training=True).numpy() - res
    zeroed = np.isclose(dropped, 0).mean()
    assert 0.35 < zeroed < 0.65, zeroed  # about half the outputs dropped ...
    kept = ~np.isclose(dropped, 0)
    np.testing.assert_allclose(dropped[kept], 2 * (clean - res)[kept], rtol=1e-4, atol=1e-4)  # ... the rest x2


def _np_blocks(x, fh, fw):
    # The official layout: "n (gh fh) (gw fw) c -> n (gh gw) (fh fw) c".
    n, h, w, c = x.shape
    y = x.reshape(n, h // fh, fh, w // fw, fw, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, (h // fh) * (w // fw), fh * fw, c)


def _np_unblocks(y, gh, gw, fh, fw):
    n, _, _, c = y.shape
    y = y.reshape(n, gh, gw, fh, fw, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, gh * fh, gw * fw, c)


@pytest.mark.parametrize("axis", ["block", "grid"])
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("portable", [False, True])  # TF's position-columns form / the 2-D form
def test_spatial_dense_equals_official_gating_dense(rng, axis, dynamic, portable):
    x = rng.standard_normal((2, 8, 12, 3)).astype("float32")
    size = (4, 3) if axis == "block" else (2, 3)
    layer = fused.SpatialDense(axis, size)
    layer.build(x.shape)
    k = rng.standard_normal(layer.kernel.shape).astype("float32")
    b = rng.standard_normal(layer.bias.shape).astype("float32")
    layer.set_weights([k, b])
    spec = tf.TensorSpec([None, None, None, 3], tf.float32) if dynamic else tf.TensorSpec(x.shape)
    with fused.portable_graph() if portable else contextlib.nullcontext():
        got = tf.function(lambda t: layer(t, offset=1.0), input_signature=[spec])(x).numpy()
    # Official: block with patch (fh, fw) (grid: patch (H/gh, W/gw)), Dense over the
    # pixel axis -2 (block) or the cell axis -3 (grid), unblock; then "+ 1".
    if axis == "block":
        fh, fw = size
        gh, gw = 8 // fh, 12 // fw
        mixed = np.swapaxes(np.swapaxes(_np_blocks(x, fh, fw), -1, -2) @ k + b, -1, -2)
    else:
        gh, gw = size
        fh, fw = 8 // gh, 12 // gw
        mixed = np.swapaxes(np.swapaxes(_np_blocks(x, fh, fw), -1, -3) @ k + b, -1, -3)
    np.testing.assert_allclose(got, _np_unblocks(mixed, gh, gw, fh, fw) + 1.0, atol=1e-5)


@pytest.mark.parametrize("strides,kernel", [(1, 3), (2, 4), (1, 1)])
def test_conv_equals_keras(rng, strides, kernel):
    layer = _built(fused.Conv2D(5, kernel, strides=strides))
    ref = keras.layers.Conv2D(5, kernel, strides=strides, padding="same")
    ref.build((None, None, None, 8))
    ref.set_weights(layer.get_weights())
    x = rng.normal(size=(2, 8, 12, 8)).astype("float32")
    want = ref(x).numpy()
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-5, atol=1e-5)
    lrelu = _built(fused.Conv2D(5, kernel, strides=strides, activation="leaky_relu", negative_slope=0.1))
    lrelu.set_weights(layer.get_weights())
    np.testing.assert_allclose(lrelu(x).numpy(), np.where(want > 0, want, 0.1 * want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,use_bias,activation", [(3, True, "leaky_relu"), (3, False, None), (5, True, None)])
@pytest.mark.parametrize("dynamic", [False, True])
def test_conv_rows_form_equals_keras(rng, kernel, use_bias, activation, dynamic):
    channels = fused.ROWS_MIN_CHANNELS  # the row form starts here
    layer = fused.Conv2D(7, kernel, use_bias=use_bias, activation=activation)
    _built(layer, channels)
    ref = keras.layers.Conv2D(7, kernel, padding="same", use_bias=use_bias)
    ref.build((None, None, None, channels))
    ref.set_weights(layer.get_weights())
    x = rng.normal(size=(2, 9, 11, channels)).astype("float32")
    want = ref(x).numpy()
    if activation:
        want = np.where(want > 0, want, 0.2 * want)
    spec = tf.TensorSpec([None, None, None, channels] if dynamic else x.shape, tf.float32)
    fn = tf.function(lambda t: layer(t), input_signature=[spec])
    with fused.graph_form_scope("avx2"):
        types = {op.type for op in fn.get_concrete_function().graph.get_operations()}
    assert "Conv2D" not in types and "MatMul" in types, sorted(types)
    np.testing.assert_allclose(fn(x).numpy(), want, rtol=1e-4, atol=1e-4)


def test_conv_rows_form_only_where_it_pays(rng):
    spec = tf.TensorSpec([None, None, None, fused.ROWS_MIN_CHANNELS - 1], tf.float32)
    with fused.graph_form_scope("avx2"):
        for layer in (fused.Conv2D(4, 3), fused.Conv2D(4, 4, strides=2), fused.Conv2D(4, 1)):
            _built(layer, fused.ROWS_MIN_CHANNELS - 1)
            graph = tf.function(lambda t, layer=layer: layer(t)).get_concrete_function(spec).graph
            assert "Conv2D" in {op.type for op in graph.get_operations()}
    layer = _built(fused.Conv2D(4, 3), fused.ROWS_MIN_CHANNELS)
    spec = tf.TensorSpec([None, None, None, fused.ROWS_MIN_CHANNELS], tf.float32)
    for form in ("stock", "portable"):
        with fused.graph_form_scope(form):
            graph = tf.function(lambda t: layer(t)).get_concrete_function(spec).graph
        assert "Conv2D" in {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("portable", [False, True])  # transposed conv / 1x1 conv + depth-to-space
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_transpose_equals_keras(rng, portable, use_bias):
    layer = fused.Conv2DTranspose(6, use_bias=use_bias)
    ref = keras.layers.Conv2DTranspose(6, 2, strides=2, padding="same", use_bias=use_bias)
    x = rng.normal(size=(2, 5, 7, 8)).astype("float32")
    ref.build(x.shape)
    for v in ref.weights:
        v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    layer.build(x.shape)
    layer.set_weights(ref.get_weights())
    with _graph_mode(portable):
        got = tf.function(lambda t: layer(t), input_signature=[DYNAMIC])(x).numpy()
    assert got.shape == (2, 10, 14, 6)
    np.testing.assert_allclose(got, ref(x).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="kernel_size=2, strides=2"):
        fused.Conv2DTranspose(6, kernel_size=3)


def test_portable_graph_has_no_size_dependent_reshapes():
    """Dense and the upsampling need no shape computed from the input size in the
    portable graph (XNNPACK cannot take a reshape or transposed conv without static
    shapes, and splits a dynamic-size TFLite file there)."""
    dense, up = _built(fused.Dense(6)), fused.Conv2DTranspose(4)
    up.build((None, None, None, 6))
    fn = tf.function(lambda t: up(dense(t, residual=t[..., :6])))
    with fused.portable_graph():
        ops = _op_types(fn, DYNAMIC)
    assert {"Conv2D", "DepthToSpace"} <= ops
    assert not ops & {"Shape", "Conv2DBackpropInput", "MatMul"}, ops
    assert {"Shape", "Conv2DBackpropInput", "MatMul"} <= _op_types(tf.function(lambda t: up(dense(t))), DYNAMIC)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        fused.Dense(4, activation="relu6")


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_layer_norm_equals_flax_formula(rng, dynamic, scale):
    # scale 1e-3: variance 1e-6, so epsilon 1e-6 vs the 1.001e-5 that the
    # tf.nn batch-norm wrapper would force changes the output by ~2x.
    layer = _built(fused.LayerNormalization(epsilon=L.LN_EPS))
    x = (rng.normal(size=(2, 6, 10, 8)) * scale).astype("float32")
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    x64 = x.astype(np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    want = (x64 - mean) / np.sqrt(var + L.LN_EPS) * gamma + beta
    spec = DYNAMIC if dynamic else tf.TensorSpec(x.shape, tf.float32)
    fn = tf.function(lambda t: layer(t), input_signature=[spec])
    np.testing.assert_allclose(fn(x).numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("offset", [0.0, 40.0])
def test_bfloat16_layer_norm_keeps_float32_statistics(rng, offset):
    # mixed_bfloat16: bf16 in and out, mean and variance in float32 inside the
    # one batch-norm (or fused oneDNN) pass. A large common offset is where
    # bf16 statistics would fail: 40 + N(0, 1) has ~0.25 resolution in bf16 and
    # its sum of squares (~1.3e4 over 8 channels) none for a variance of 1.
    layer = _built(fused.LayerNormalization(epsilon=L.LN_EPS, dtype="mixed_bfloat16"))
    x = tf.cast(rng.normal(size=(2, 6, 10, 8)).astype("float32") + offset, tf.bfloat16)
    fn = tf.function(lambda t: layer(t), input_signature=[tf.TensorSpec([None, None, None, 8], tf.bfloat16)])
    assert "FusedBatchNormV3" in {op.type for op in fn.get_concrete_function().graph.get_operations()}
    got = fn(x)
    assert got.dtype == tf.bfloat16
    x64 = x.numpy().astype(np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    want = (x64 - mean) / np.sqrt(var + L.LN_EPS) * layer.gamma.numpy() + layer.beta.numpy()
    # Output rounding of bf16 (8 significant bits): 2**-8 relative, ~2e-2 near |y| = 3.
    np.testing.assert_allclose(got.numpy().astype(np.float64), want, rtol=2**-7, atol=2e-2)


def test_bfloat16_layer_norm_fuses_on_onednn(onednn, rng, tmp_path):
    layer = _built(fused.LayerNormalization(epsilon=L.LN_EPS, dtype="mixed_bfloat16"))
    fn = tf.function(lambda t: layer(t), input_signature=[tf.TensorSpec([None, None, None, 8], tf.bfloat16)])
    ops = _runtime_ops(fn, tf.cast(rng.normal(size=(1, 8, 8, 8)), tf.bfloat16), tmp_path)
    assert "_MklLayerNorm" in ops, sorted(ops)


def _op_types(fn, spec):
    return {op.type for op in fn.get_concrete_function(spec).graph.get_operations()}


def test_portable_graph_has_no_batch_norm():
    layer = _built(fused.LayerNormalization(epsilon=L.LN_EPS))
    fast = _op_types(tf.function(lambda t: layer(t)), DYNAMIC)
    with fused.portable_graph():
        assert fused.is_portable()
        portable = _op_types(tf.function(lambda t: layer(t)), DYNAMIC)
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


@pytest.fixture
def onednn():
    """Skip where TensorFlow runs without oneDNN (aarch64, ``TF_ENABLE_ONEDNN_OPTS=0``)."""
    from tensorflow.python.util import _pywrap_util_port

    if not _pywrap_util_port.IsMklEnabled():
        pytest.skip("Grappler's oneDNN fusions need a oneDNN (x86) TensorFlow build")


def test_gmlp_layer_fuses_on_onednn(onednn, rng, tmp_path):
    layer = _built(L.GmlpLayer("grid", 2))
    fn = tf.function(lambda t: layer(t), input_signature=[DYNAMIC])
    ops = _runtime_ops(fn, tf.constant(rng.normal(size=(1, 8, 8, 8)).astype("float32")), tmp_path)
    assert "_MklLayerNorm" in ops, sorted(ops)
    assert any("FusedMatMul" in op for op in ops), sorted(ops)
    # Either form: no tanh pass (oneDNN's AVX2 tanh is the slow part of the fused GELU).
    assert not {"Tanh", "_MklTanh"} & ops, "GELU was not fused into the matmul"
    if fused.active_graph_form() == "avx2":
        assert "Sigmoid" in ops, sorted(ops)


@pytest.mark.parametrize("form", fused.GRAPH_FORMS)
def test_gelu_equals_the_tanh_formula_in_every_form(form):
    y = np.linspace(-16, 16, 200001).astype("float32")
    fn = tf.function(fused.gelu, input_signature=[tf.TensorSpec([None], tf.float32)])
    with fused.graph_form_scope(form):
        assert fused.active_graph_form() == form
        graph = fn.get_concrete_function().graph
    # Only the avx2 form writes it with a sigmoid; TFLite/ONNX traces keep the builtin GELU.
    assert ("Sigmoid" in {op.type for op in graph.get_operations()}) == (form == "avx2")
    np.testing.assert_allclose(fn(y).numpy(), _gelu_tanh(y.astype(np.float64)), rtol=0, atol=1.5e-6)


def test_gmlp_layer_equal_in_every_graph_form(rng):
    layer = _built(L.GmlpLayer("grid", 2))
    x = tf.constant(rng.normal(size=(1, 8, 8, 8)).astype("float32"))
    outs, op_types = {}, {}
    for form in fused.GRAPH_FORMS:
        fn = tf.function(lambda t: layer(t), input_signature=[DYNAMIC])
        with fused.graph_form_scope(form):
            op_types[form] = {op.type for op in fn.get_concrete_function().graph.get_operations()}
        outs[form] = fn(x).numpy()
    assert "Sigmoid" in op_types["avx2"] and "Sigmoid" not in op_types["stock"]
    np.testing.assert_allclose(outs["avx2"], outs["stock"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(outs["portable"], outs["stock"], rtol=0, atol=1e-5)


# -- choosing the graph form ------------------------------------------------------------------

AVX2 = {"sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize("machine,flags,onednn,want", [
    ("x86_64", AVX2, True, "avx2"),  # AMD Zen 2/3, Intel before AVX-512, oneDNN on
    ("AMD64", AVX2, True, "avx2"),  # Windows spelling
    ("x86_64", AVX2 | {"avx512f", "avx512bw"}, True, "stock"),  # AVX-512: oneDNN's fast paths
    ("x86_64", AVX2, False, "stock"),  # Eigen kernels (TF_ENABLE_ONEDNN_OPTS=0)
    ("x86_64", {"sse4_2", "avx"}, True, "stock"),  # no AVX2
    ("x86_64", None, True, "stock"),  # flags unknown (no /proc/cpuinfo)
    ("aarch64", {"asimd", "sve"}, True, "stock"),
    ("arm64", None, False, "stock"),
])
def test_choose_graph_form(machine, flags, onednn, want):
    assert fused.choose_graph_form(machine, flags, onednn) == want


@pytest.fixture
def no_form_env(monkeypatch):
    for name in (fused.GRAPH_FORM_ENV, "MAXIM_TF_GELU", "MAXIM_TF_CONV"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_graph_form_is_the_machine_choice_or_the_environment(no_form_env):
    assert fused.default_graph_form() == fused.choose_graph_form(*fused.machine_facts())
    assert fused.active_graph_form() == fused.default_graph_form()
    no_form_env.setenv(fused.GRAPH_FORM_ENV, "auto")
    assert fused.default_graph_form() == fused.choose_graph_form(*fused.machine_facts())
    for form in fused.GRAPH_FORMS:
        no_form_env.setenv(fused.GRAPH_FORM_ENV, form.upper())
        assert fused.default_graph_form() == form == fused.resolve_graph_form("auto")
        assert fused.resolve_graph_form("stock") == "stock"  # an explicit setting wins
    no_form_env.setenv(fused.GRAPH_FORM_ENV, "fast")
    with pytest.raises(ValueError, match="MAXIM_TF_GRAPH_FORM must be one of"):
        fused.default_graph_form()


def test_removed_variables_are_refused_with_their_replacement(no_form_env):
    no_form_env.setenv("MAXIM_TF_GELU", "fused")
    with pytest.raises(ValueError, match="MAXIM_TF_GELU no longer exist.*MAXIM_TF_GRAPH_FORM=stock"):
        fused.default_graph_form()


def test_graph_form_scope_outermost_wins_and_auto_is_transparent(no_form_env):
    with pytest.raises(ValueError, match="graph_form must be one of"):
        with fused.graph_form_scope("sigmoid"):
            pass
    with fused.graph_form_scope("auto"):
        assert fused.active_graph_form() == fused.default_graph_form()
    with fused.portable_graph():
        with fused.graph_form_scope("avx2"):  # e.g. a MAXIM's own setting, inside an export
            assert fused.is_portable()
        assert fused.active_graph_form() == "portable"
    assert not fused.is_portable()
