"""The resizes: references (jax.image.resize via TensorFlow's equivalents) and the portable forms."""

import numpy as np
import pytest
import tensorflow as tf

from maxim_tf import resize


def test_triangle_taps():
    np.testing.assert_allclose(resize.triangle_taps(2), np.array([1, 3, 3, 1]) / 8)
    np.testing.assert_allclose(resize.triangle_taps(4), np.array([1, 3, 5, 7, 7, 5, 3, 1]) / 32)
    with pytest.raises(ValueError, match="even integer"):
        resize.triangle_taps(3)


@pytest.mark.parametrize("factor", [2, 4])
def test_antialiased_downsample_equals_scale_and_translate(rng, factor):
    # tf.image.resize(antialias=True) equals jax.image.resize bilinear to ~1e-7
    # (checked against JAX for the fixtures); the conv form must equal it.
    x = rng.uniform(-1, 2, (2, 32, 24, 5)).astype("float32")
    got = resize.antialiased_downsample(tf.constant(x), factor).numpy()
    want = tf.image.resize(x, (32 // factor, 24 // factor), "bilinear", antialias=True).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 4])
def test_any_size_resizes_equal_the_graph_ones_with_dynamic_shapes(rng, factor):
    # The portable (TFLite/ONNX) forms: size-independent ops, same values.
    down = tf.function(lambda x: resize.antialiased_downsample_any_size(x, factor),
                       input_signature=[tf.TensorSpec([None, None, None, 4])])
    up = tf.function(lambda x: resize.bilinear_upsample_any_size(x, factor),
                     input_signature=[tf.TensorSpec([None, None, None, 4])])
    for shape in [(2, 8 * factor, 4 * factor, 4), (1, 3 * factor, 2 * factor, 4)]:
        x = rng.uniform(-1, 2, shape).astype("float32")
        want = resize.antialiased_downsample(tf.constant(x), factor).numpy()
        got = down(x).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)
        want = resize.bilinear_upsample(tf.constant(x), factor).numpy()
        got = up(x).numpy()
        assert got.shape == want.shape == (shape[0], shape[1] * factor, shape[2] * factor, 4)
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_bilinear_phase_taps_sample_at_half_pixel_centres():
    # Output f*i+k samples the input at i + (2k+1-f)/(2f): the taps sum to 1 and
    # their centre of mass (over i-1, i, i+1) is that offset.
    for f in (2, 4, 8):
        taps = resize.bilinear_phase_taps(f)
        np.testing.assert_allclose(taps.sum(1), 1.0)
        np.testing.assert_allclose(taps @ [-1, 0, 1], (2 * np.arange(f) + 1 - f) / (2 * f))
    np.testing.assert_array_equal(resize.bilinear_phase_taps(2), [[0.25, 0.75, 0], [0, 0.75, 0.25]])


def test_concat_tree_keeps_order_with_at_most_four_inputs_per_concat():
    parts = [tf.fill([1, 1, 1, 1], float(i)) for i in range(16)]
    got = resize.concat_tree(parts, 3)
    np.testing.assert_array_equal(got.numpy().ravel(), np.arange(16))
    ops = tf.function(lambda: resize.concat_tree(parts, 3)).get_concrete_function().graph.get_operations()
    assert max(len(op.inputs) - 1 for op in ops if op.type == "ConcatV2") <= 4


def test_bilinear_upsample_and_nearest_downsample(rng):
    x = rng.standard_normal((1, 6, 4, 2)).astype("float32")
    up = resize.bilinear_upsample(tf.constant(x), 2).numpy()
    assert up.shape == (1, 12, 8, 2)
    # Half-pixel centres: output 2i+1 is 3/4 x[i] + 1/4 x[i+1] along each axis.
    np.testing.assert_allclose(up[0, 1, 1], (0.75 * (0.75 * x[0, 0, 0] + 0.25 * x[0, 0, 1])
                                             + 0.25 * (0.75 * x[0, 1, 0] + 0.25 * x[0, 1, 1])),
                               atol=1e-6)
    x = rng.standard_normal((1, 8, 8, 3)).astype("float32")
    for f in (2, 4):
        got = resize.nearest_downsample(tf.constant(x), f).numpy()
        np.testing.assert_array_equal(got, x[:, f // 2::f, f // 2::f])
        np.testing.assert_array_equal(got, tf.image.resize(x, (8 // f, 8 // f), "nearest").numpy())
