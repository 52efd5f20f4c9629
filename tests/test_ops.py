"""Tensor reshuffles and resizes: round trips and references."""

import numpy as np
import pytest
import tensorflow as tf

from maxim_tf import ops as mops


def _block_rows(x, size):
    """Reference rows of block_partition: row (n, i, j, ch) is block (i, j) of channel ch."""
    n, h, w, c = x.shape
    fh, fw = size
    return [((k, i, j, ch), x[k, i * fh:(i + 1) * fh, j * fw:(j + 1) * fw, ch].ravel())
            for k in range(n) for i in range(h // fh) for j in range(w // fw) for ch in range(c)]


def _grid_rows(x, size):
    """Reference rows of grid_partition: row (n, a, b, ch) holds the gh*gw pixels at offset
    (a, b) of every grid cell of channel ch, i.e. x[a::fh, b::fw]."""
    n, h, w, c = x.shape
    fh, fw = h // size[0], w // size[1]
    return [((k, a, b, ch), x[k, a::fh, b::fw, ch].ravel())
            for k in range(n) for a in range(fh) for b in range(fw) for ch in range(c)]


PARTITIONS = {"block": (mops.block_partition, mops.block_unpartition, _block_rows),
              "grid": (mops.grid_partition, mops.grid_unpartition, _grid_rows)}


@pytest.mark.parametrize("kind", ["block", "grid"])
@pytest.mark.parametrize("shape,size", [((2, 8, 12, 3), (2, 3)), ((1, 16, 16, 5), (4, 4))])
@pytest.mark.parametrize("dynamic", [False, True])
def test_partition_rows_and_round_trip(rng, kind, shape, size, dynamic):
    partition, unpartition, reference = PARTITIONS[kind]
    x = rng.standard_normal(shape).astype("float32")
    spec = tf.TensorSpec([None, None, None, shape[-1]]) if dynamic else tf.TensorSpec(shape)
    rows = tf.function(lambda t: partition(t, size), input_signature=[spec])(x).numpy()
    want = reference(x, size)
    assert rows.shape == (len(want), size[0] * size[1])
    np.testing.assert_array_equal(rows, np.stack([r for _, r in want]))
    back = tf.function(lambda t, r: unpartition(r, mops.dims(t), size),
                       input_signature=[spec, tf.TensorSpec([None, rows.shape[1]])])(x, rows)
    np.testing.assert_array_equal(back.numpy(), x)


@pytest.mark.parametrize("axis", ["block", "grid"])
@pytest.mark.parametrize("shape,size", [((2, 8, 12, 3), (2, 3)), ((1, 16, 16, 5), (4, 4))])
@pytest.mark.parametrize("dynamic", [False, True])
def test_position_columns_and_round_trip(rng, axis, shape, size, dynamic):
    # Column layout: block -> (n gh gw) (fh fw) c, grid -> n (gh gw) (fh fw c); the mixed
    # positions (axis 1) of column (..., ch) are exactly the partition's row for ch.
    x = rng.standard_normal(shape).astype("float32")
    spec = tf.TensorSpec([None, None, None, shape[-1]]) if dynamic else tf.TensorSpec(shape)
    cols = tf.function(lambda t: mops.position_columns(t, axis, size), input_signature=[spec])(x)
    cols = cols.numpy()
    n, h, w, c = shape
    p = size[0] * size[1]
    if axis == "block":
        got = cols.transpose(0, 2, 1).reshape(-1, p)  # rows (n gh gw c), columns (fh fw)
        want = np.stack([r for _, r in _block_rows(x, size)])
    else:
        got = cols.reshape(n, p, -1, c).transpose(0, 2, 3, 1).reshape(-1, p)  # (n fh fw c)
        want = np.stack([r for _, r in _grid_rows(x, size)])
    np.testing.assert_array_equal(got, want)
    back = tf.function(lambda t, r: mops.position_columns_to_image(r, mops.dims(t), axis, size),
                       input_signature=[spec, tf.TensorSpec([None, p, None])])(x, cols)
    np.testing.assert_array_equal(back.numpy(), x)


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


@pytest.mark.parametrize("factor", [2, 4])
def test_any_size_resizes_equal_the_graph_ones_with_dynamic_shapes(rng, factor):
    # The portable (TFLite/ONNX) forms: size-independent ops, same values.
    down = tf.function(lambda x: mops.antialiased_downsample_any_size(x, factor),
                       input_signature=[tf.TensorSpec([None, None, None, 4])])
    up = tf.function(lambda x: mops.bilinear_upsample_any_size(x, factor),
                     input_signature=[tf.TensorSpec([None, None, None, 4])])
    for shape in [(2, 8 * factor, 4 * factor, 4), (1, 3 * factor, 2 * factor, 4)]:
        x = rng.uniform(-1, 2, shape).astype("float32")
        want = mops.antialiased_downsample(tf.constant(x), factor).numpy()
        got = down(x).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)
        want = mops.bilinear_upsample(tf.constant(x), factor).numpy()
        got = up(x).numpy()
        assert got.shape == want.shape == (shape[0], shape[1] * factor, shape[2] * factor, 4)
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_bilinear_phase_taps_sample_at_half_pixel_centres():
    # Output f*i+k samples the input at i + (2k+1-f)/(2f): the taps sum to 1 and
    # their centre of mass (over i-1, i, i+1) is that offset.
    for f in (2, 4, 8):
        taps = mops.bilinear_phase_taps(f)
        np.testing.assert_allclose(taps.sum(1), 1.0)
        np.testing.assert_allclose(taps @ [-1, 0, 1], (2 * np.arange(f) + 1 - f) / (2 * f))
    np.testing.assert_array_equal(mops.bilinear_phase_taps(2), [[0.25, 0.75, 0], [0, 0.75, 0.25]])


def test_concat_tree_keeps_order_with_at_most_four_inputs_per_concat():
    parts = [tf.fill([1, 1, 1, 1], float(i)) for i in range(16)]
    got = mops.concat_tree(parts, 3)
    np.testing.assert_array_equal(got.numpy().ravel(), np.arange(16))
    ops = tf.function(lambda: mops.concat_tree(parts, 3)).get_concrete_function().graph.get_operations()
    assert max(len(op.inputs) - 1 for op in ops if op.type == "ConcatV2") <= 4


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
