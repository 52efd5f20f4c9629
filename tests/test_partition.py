"""The multi-axis partitions and the size multiple: round trips and references."""

import numpy as np
import pytest
import tensorflow as tf

from maxim_tf import partition


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


PARTITIONS = {"block": (partition.block_partition, partition.block_unpartition, _block_rows),
              "grid": (partition.grid_partition, partition.grid_unpartition, _grid_rows)}


@pytest.mark.parametrize("kind", ["block", "grid"])
@pytest.mark.parametrize("shape,size", [((2, 8, 12, 3), (2, 3)), ((1, 16, 16, 5), (4, 4))])
@pytest.mark.parametrize("dynamic", [False, True])
def test_partition_rows_and_round_trip(rng, kind, shape, size, dynamic):
    split, unsplit, reference = PARTITIONS[kind]
    x = rng.standard_normal(shape).astype("float32")
    spec = tf.TensorSpec([None, None, None, shape[-1]]) if dynamic else tf.TensorSpec(shape)
    rows = tf.function(lambda t: split(t, size), input_signature=[spec])(x).numpy()
    want = reference(x, size)
    assert rows.shape == (len(want), size[0] * size[1])
    np.testing.assert_array_equal(rows, np.stack([r for _, r in want]))
    back = tf.function(lambda t, r: unsplit(r, partition.dims(t), size),
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
    cols = tf.function(lambda t: partition.position_columns(t, axis, size), input_signature=[spec])(x)
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
    back = tf.function(lambda t, r: partition.position_columns_to_image(r, partition.dims(t), axis, size),
                       input_signature=[spec, tf.TensorSpec([None, p, None])])(x, cols)
    np.testing.assert_array_equal(back.numpy(), x)


def test_size_multiple_of_official_config():
    levels = [[(16, 16), (16, 16)], [(16, 16), (16, 16)], [(8, 8), (8, 8)]]
    assert partition.size_multiple(levels, 3, (8, 8)) == (64, 64)
    levels = [[(8, 8), (8, 8)], [(8, 8), (8, 8)], [(4, 4), (4, 4)]]
    assert partition.size_multiple(levels, 3, (4, 4)) == (32, 32)
