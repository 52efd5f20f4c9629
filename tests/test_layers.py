"""Single-layer checks of the Flax parity traps, and layer serialization."""

import importlib
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_checks import check_layer

import maxim_tf
from maxim_tf import fused, padding
from maxim_tf import layers as L
from maxim_tf.conversion.checkpoint import to_keras


def test_layer_norm_uses_flax_epsilon(rng):
    # Small-variance input: epsilon 1e-6 vs Keras' 1e-3 changes the result a lot.
    x = (rng.standard_normal((2, 4, 4, 8)) * 0.01).astype("float32")
    rcab = L.RCAB(8)
    rcab.build(x.shape)
    ln = rcab.layer_norm
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(ln(x).numpy(), want, atol=1e-4, rtol=1e-4)


def test_gelu_is_tanh_approximation():
    x = np.linspace(-4, 4, 101).astype("float32")
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(fused.activate(tf.constant(x), "gelu").numpy(), tanh_form, atol=1e-6)


def _flax_conv_transpose_2x2_s2(x, k, b):
    """Reference Flax ConvTranspose(kernel 2x2, stride 2, 'SAME'): lhs-dilated conv
    with the kernel as is (no flip), padding (1, 0) per spatial axis."""
    n, h, w, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * w, k.shape[-1]), np.float64)
    dil = np.zeros((n, 2 * h - 1, 2 * w - 1, x.shape[-1]))
    dil[:, ::2, ::2] = x
    dil = np.pad(dil, ((0, 0), (1, 1), (1, 1), (0, 0)))  # SAME for k=2, s=2: (1, 1) after dilation
    for i in range(2 * h):
        for j in range(2 * w):
            out[:, i, j] = np.einsum("nabc,abcd->nd", dil[:, i:i + 2, j:j + 2], k)
    return out + b


def test_conv_transpose_kernel_port(rng):
    x = rng.standard_normal((1, 3, 4, 5)).astype("float32")
    k = rng.standard_normal((2, 2, 5, 6)).astype("float32")  # Flax (kh, kw, in, out)
    b = rng.standard_normal(6).astype("float32")
    layer = keras.layers.Conv2DTranspose(6, 2, strides=2, padding="same")
    layer.build(x.shape)
    layer.kernel.assign(to_keras("x/ConvTranspose_0/kernel", k))
    layer.bias.assign(b)
    np.testing.assert_allclose(layer(x).numpy(), _flax_conv_transpose_2x2_s2(x, k, b), atol=1e-5)
    # Without the flip the port would be wrong: the test can tell.
    layer.kernel.assign(k.transpose(0, 1, 3, 2))
    assert np.abs(layer(x).numpy() - _flax_conv_transpose_2x2_s2(x, k, b)).max() > 1e-2


def test_down_conv_same_padding(rng):
    # Flax Conv 4x4 stride 2 'SAME' pads (1, 2) per axis: total 2, low side 1.
    x = rng.standard_normal((1, 8, 6, 3)).astype("float32")
    k = rng.standard_normal((4, 4, 3, 2)).astype("float32")
    layer = keras.layers.Conv2D(2, 4, strides=2, padding="same", use_bias=False)
    layer.build(x.shape)
    layer.kernel.assign(k)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.stack([np.stack([np.einsum("abc,abcd->d", xp[0, 2 * i:2 * i + 4, 2 * j:2 * j + 4], k)
                               for j in range(3)]) for i in range(4)])[None]
    np.testing.assert_allclose(layer(x).numpy(), want, atol=1e-4)


# (class, constructor arguments, input shapes, trainable weight tensors); every
# layer class the package defines is here or in CHECKED_ELSEWHERE
# (test_every_layer_is_checked finds them all).
LAYER_CASES = [
    (L.MlpBlock, dict(mlp_dim=8), [(1, 8, 8, 4)], 4),
    (L.ChannelAttention, dict(features=8, reduction=4), [(1, 8, 8, 8)], 4),
    (L.RCAB, dict(features=8), [(1, 8, 8, 8)], 10),  # LN 2 + 2 convs 4 + CA 4
    (L.RDCAB, dict(features=8, reduction=4), [(1, 8, 8, 8)], 10),  # LN 2 + MLP 4 + CA 4
    (L.GatingUnit, dict(mode="grid", size=(2, 2)), [(1, 8, 8, 8)], 4),  # LN 2 + spatial Dense 2
    (L.GatingUnit, dict(mode="block", size=(4, 2)), [(1, 8, 8, 8)], 4),
    (L.GmlpLayer, dict(mode="grid", size=(2, 2)), [(1, 8, 8, 4)], 10),  # LN, in, gating 4, out
    (L.GmlpLayer, dict(mode="block", size=(4, 4)), [(1, 8, 8, 4)], 10),
    (L.MultiAxisGmlpBlock, dict(block_size=(4, 4), grid_size=(2, 2)), [(1, 8, 8, 8)], 26),
    (L.BottleneckBlock, dict(features=8, block_size=4, grid_size=4, num_groups=2), [(1, 8, 8, 4)],
     2 + 2 * (26 + 10)),
    (L.SpatialGatingWeights, dict(features=8, block_size=4, grid_size=2), [(1, 8, 8, 8)], 10),
    (L.CrossGatingBlock, dict(features=8, block_size=4, grid_size=4), [(1, 8, 8, 6), (1, 4, 4, 4)],
     2 + 4 + 4 + 4 + 2 * 10 + 4),  # up, 2 convs, 2 LN, 2 in, 2 gating, 2 out
    (L.UNetEncoderBlock, dict(features=8, block_size=4, grid_size=4), [(1, 8, 8, 4)], 2 + 26 + 10 + 2),
    (L.UNetDecoderBlock, dict(features=8, block_size=4, grid_size=4), [(1, 4, 4, 16)], 2 + 2 + 26 + 10),
    (L.UpSampleRatio, dict(features=4, ratio=0.25), [(1, 8, 8, 3)], 2),
    (L.UpSampleRatio, dict(features=4, ratio=2.0), [(1, 8, 8, 3)], 2),
    (L.SAM, dict(features=8), [(1, 8, 8, 8), (1, 8, 8, 3)], 6),
    (L.NearestDownsample, dict(factor=2), [(1, 8, 8, 3)], 0),
    (fused.Dense, dict(units=6, activation="gelu"), [(1, 4, 4, 8)], 2),
    (fused.SpatialDense, dict(axis="grid", size=(2, 2)), [(1, 4, 4, 8)], 2),
    (fused.Conv2D, dict(filters=6, kernel_size=3, activation="leaky_relu"), [(1, 4, 4, 8)], 2),
    (fused.LayerNormalization, dict(epsilon=1e-6), [(1, 4, 4, 8)], 2),
    (fused.Conv2DTranspose, dict(filters=6), [(1, 4, 4, 8)], 2),
]
# Weightless layers with their own tests (nothing to train).
CHECKED_ELSEWHERE = {padding.PadToMultiple: "tests/test_any_size.py",
                     padding.CropToInput: "tests/test_any_size.py"}


@pytest.mark.parametrize("cls,kwargs,shapes,num_weights", LAYER_CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(LAYER_CASES)])
def test_layer(rng, cls, kwargs, shapes, num_weights):
    if cls is L.NearestDownsample:  # no weights: nothing to train
        layer = cls(**kwargs)
        x = rng.standard_normal(shapes[0]).astype("float32")
        np.testing.assert_array_equal(layer(x).numpy(), x[:, 1::2, 1::2])
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert clone.get_config() == layer.get_config()
        return
    check_layer(cls, kwargs, shapes, num_weights, rng)


def test_every_layer_is_checked():
    checked = {c for c, *_ in LAYER_CASES} | set(CHECKED_ELSEWHERE)
    defined = set()
    for path in sorted(pathlib.Path(maxim_tf.__file__).parent.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "keras" not in source or path.stem.startswith("__"):
            continue
        module = importlib.import_module(f"maxim_tf.{path.stem}")
        defined |= {obj for obj in vars(module).values()
                    if isinstance(obj, type) and issubclass(obj, keras.layers.Layer)
                    and not issubclass(obj, keras.Model) and obj.__module__ == module.__name__
                    and not obj.__name__.startswith("_")}
    assert {fused.Conv2DTranspose, L.SAM, padding.CropToInput} <= defined  # the scan works
    assert defined <= checked, sorted(c.__name__ for c in defined - checked)
    assert set(L.LAYERS) <= checked


def test_variants_exist():
    assert sorted(maxim_tf.VARIANTS) == ["M-1", "M-2", "M-3", "S-1", "S-2", "S-3"]
    cfg = maxim_tf.variant_config("S-3")
    assert cfg["num_stages"] == 3 and cfg["features"] == 32 and cfg["num_supervision_scales"] == 3
    with pytest.raises(ValueError, match="Unknown variant"):
        maxim_tf.variant_config("XL")
