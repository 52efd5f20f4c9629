"""Tensor reshuffles and resizes: round trips and references."""

import numpy as np
import pytest
import tensorflow as tf

from maxim_tf import ops as mops


def _np_block(x, fh, fw):
    # Reference: "n (gh fh) (gw fw) c -> n (gh gw) (fh fw) c" written with numpy.
    n, h, w, c = x.shape
    y = x.reshape(n, h // fh, fh, w // fw, fw, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, (h // fh) * (w // fw), fh * fw, c)


def _np_unblock(y, gh, gw, fh, fw):
    n, _, _, c = y.shape
    y = y.reshape(n, gh, gw, fh, fw, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, gh * fh, gw * fw, c)


@pytest.mark.parametrize("shape,patch", [((2, 8, 12, 3), (2, 3)), ((1, 16, 16, 5), (4, 4))])
def test_block_unblock_round_trip(rng, shape, patch):
    x = rng.standard_normal(shape).astype("float32")
    blocked = mops.block_images(tf.constant(x), patch).numpy()
    n, gh, gw, fh, fw, c = blocked.shape
    assert (gh, gw, fh, fw) == (shape[1] // patch[0], shape[2] // patch[1], *patch)
    np.testing.assert_array_equal(blocked.reshape(n, gh * gw, fh * fw, c), _np_block(x, *patch))
    np.testing.assert_array_equal(mops.unblock_images(tf.constant(blocked)).numpy(), x)


def test_mix_block_axis_equals_official_block_gating(rng):
    x = rng.standard_normal((2, 8, 12, 3)).astype("float32")
    fh, fw = 4, 3
    k = rng.standard_normal((fh * fw, fh * fw)).astype("float32")
    b = rng.standard_normal(fh * fw).astype("float32")
    got = mops.mix_block_axis(tf.constant(x), (fh, fw), k, b).numpy()
    # Official: block, swap the pixel axis (-2) to last, Dense, swap back, unblock.
    blocked = _np_block(x, fh, fw)
    mixed = np.swapaxes(np.swapaxes(blocked, -1, -2) @ k + b, -1, -2)
    want = _np_unblock(mixed, 8 // fh, 12 // fw, fh, fw)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_mix_grid_axis_equals_official_grid_gating(rng):
    x = rng.standard_normal((2, 8, 12, 3)).astype("float32")
    gh, gw = 2, 3
    fh, fw = 8 // gh, 12 // gw
    k = rng.standard_normal((gh * gw, gh * gw)).astype("float32")
    b = rng.standard_normal(gh * gw).astype("float32")
    got = mops.mix_grid_axis(tf.constant(x), (gh, gw), k, b).numpy()
    # Official: block with patch (H/gh, W/gw), swap the grid axis (-3) to last, Dense.
    blocked = _np_block(x, fh, fw)
    mixed = np.swapaxes(np.swapaxes(blocked, -1, -3) @ k + b, -1, -3)
    want = _np_unblock(mixed, gh, gw, fh, fw)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_triangle_taps():
    np.testing.assert_allclose(mops.triangle_taps(2), np.array([1, 3, 3, 1]) / 8)
    np.testing.assert_allclose(mops.triangle_taps(4), np.array([1, 3, 5, 7, 7, 5, 3, 1]) / 32)
    with pytest.raises(ValueError, match="even integer"):
        mops.triangle_taps(3)


@pytest.mark.parametrize("factor", [2, 4])
def test_antialiased_downsample_equals_scale_and_translate(rng, factor):
    # tf.image.resize(antialias=True) equals jax.image.resize bilinear to ~1e-7
    # (checked against JAX for the fixtures); the conv form must equal it.
    x = rng.uniform(-1, 2, (2, 32, 24, 5)).astype("float32")
    got = mops.antialiased_downsample(tf.constant(x), factor).numpy()
    want = tf.image.resize(x, (32 // factor, 24 // factor), "bilinear", antialias=True).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_bilinear_upsample_and_nearest_downsample(rng):
    x = rng.standard_normal((1, 6, 4, 2)).astype("float32")
    up = mops.bilinear_upsample(tf.constant(x), 2).numpy()
    assert up.shape == (1, 12, 8, 2)
    # Half-pixel centres: output 2i+1 is 3/4 x[i] + 1/4 x[i+1] along each axis.
    np.testing.assert_allclose(up[0, 1, 1], (0.75 * (0.75 * x[0, 0, 0] + 0.25 * x[0, 0, 1])
                                             + 0.25 * (0.75 * x[0, 1, 0] + 0.25 * x[0, 1, 1])),
                               atol=1e-6)
    x = rng.standard_normal((1, 8, 8, 3)).astype("float32")
    for f in (2, 4):
        got = mops.nearest_downsample(tf.constant(x), f).numpy()
        np.testing.assert_array_equal(got, x[:, f // 2::f, f // 2::f])
        np.testing.assert_array_equal(got, tf.image.resize(x, (8 // f, 8 // f), "nearest").numpy())


def test_size_multiple_of_official_config():
    levels = [[(16, 16), (16, 16)], [(16, 16), (16, 16)], [(8, 8), (8, 8)]]
    assert mops.size_multiple(levels, 3, (8, 8)) == (64, 64)
    levels = [[(8, 8), (8, 8)], [(8, 8), (8, 8)], [(4, 4), (4, 4)]]
    assert mops.size_multiple(levels, 3, (4, 4)) == (32, 32)
