"""In-graph padding/cropping of the exporters against the official numpy semantics."""

import numpy as np
import pytest
import tensorflow as tf

from maxim_tf import padding
from maxim_tf.export import graph


def official_pad(image, multiple):
    """google-research/maxim run_eval.py: make_shape_even + mod_padding_symmetric.

    ``multiple`` is an int (official) or (mh, mw). Returns the padded image and
    the official crop start (new // 2 - even // 2 on each axis).
    """
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    h, w = image.shape[:2]
    image = np.pad(image, [(0, h % 2), (0, w % 2), (0, 0)], mode="reflect")
    he, we = image.shape[:2]
    ph = ((he + mh) // mh) * mh - he if he % mh else 0
    pw = ((we + mw) // mw) * mw - we if we % mw else 0
    image = np.pad(image, [(ph // 2, ph // 2), (pw // 2, pw // 2), (0, 0)], mode="reflect")
    return image, (image.shape[0] // 2 - he // 2, image.shape[1] // 2 - we // 2)


@pytest.mark.parametrize("h,w", [(33, 40), (64, 64), (65, 47), (50, 99), (1, 7), (2, 3), (17, 20)])
def test_pad_matches_official_and_crop_round_trips(h, w, rng):
    image = rng.random((h, w, 3)).astype(np.float32)
    expected, offset = official_pad(image, 32)
    padded, got_offset = padding.pad_to_multiple(tf.constant(image[None]), (32, 32))
    np.testing.assert_array_equal(padded.numpy()[0], expected)
    assert tuple(int(v) for v in got_offset) == offset
    cropped = padding.crop(padded, got_offset, (h, w)).numpy()[0]
    np.testing.assert_array_equal(cropped, image)


def test_pad_with_dynamic_shape_and_unequal_multiples(rng):
    images = rng.random((2, 45, 70, 3)).astype(np.float32)
    fn = tf.function(lambda x: padding.pad_to_multiple(x, (16, 64))[0],
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    out = fn(images).numpy()
    assert out.shape == (2, 48, 128, 3)
    for n in range(2):
        np.testing.assert_array_equal(out[n], official_pad(images[n], (16, 64))[0])


def test_restore_any_size_equals_padded_model_output(tiny_model, rng):
    image = rng.random((1, 40, 50, 3)).astype(np.float32)
    out = graph.restore_any_size(tiny_model, tf.constant(image)).numpy()
    padded, (top, left) = official_pad(image[0], 32)
    full = tiny_model(padded[None]).numpy()
    np.testing.assert_allclose(out[0], full[0, top:top + 40, left:left + 50], atol=1e-5)


def test_max_pixels_check_raises_invalid_argument():
    graph.check_max_pixels(tf.zeros([1, 10, 10, 3]), 100)  # exactly the limit passes
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Image too large: 10x11 = 110 "
                                                             r"pixels.*limit of 100 pixels"):
        graph.check_max_pixels(tf.zeros([1, 10, 11, 3]), 100)
