"""The training loss against a hand computation in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from maxim_tf.training import losses

TAPS = {2: np.array([1, 3, 3, 1]) / 8.0, 4: np.array([1, 3, 5, 7, 7, 5, 3, 1]) / 32.0}


def _down1d(x, f, axis):
    """Antialiased bilinear x1/f along one axis: triangle taps, zero pad f/2, renormalised."""
    taps = TAPS[f]
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    pad = [(0, 0)] * (x.ndim - 1) + [(f // 2, f // 2)]
    xp, ones = np.pad(x, pad), np.pad(np.ones(n), (f // 2, f // 2))
    out = np.stack([
        (xp[..., i * f:i * f + len(taps)] * taps).sum(-1) / (ones[i * f:i * f + len(taps)] * taps).sum()
        for i in range(n // f)], -1)
    return np.moveaxis(out, -1, axis)


def _down(img, f):
    return img if f == 1 else _down1d(_down1d(img, f, 1), f, 2)


def _hand_loss(outputs, target, S, eps=1e-3, lam=0.1):
    total = np.zeros(target.shape[0])
    for out in outputs:
        f = target.shape[1] // out.shape[1]
        t = _down(target.astype(np.float64), f)
        d = out.astype(np.float64) - t
        char = np.sqrt(d ** 2 + eps ** 2).mean(axis=(1, 2, 3))
        spec = np.fft.fft2(d, axes=(1, 2))  # per channel over H, W
        freq = np.concatenate([spec.real, spec.imag], axis=-1)
        total += char + lam * np.abs(freq).mean(axis=(1, 2, 3))
    return total


def test_downscale_reference_matches_tf_resize(rng):
    x = rng.random((2, 16, 16, 3))
    for f in (2, 4):
        ref = _down(x, f)
        tfv = tf.image.resize(x, (16 // f, 16 // f), "bilinear", antialias=True).numpy()
        np.testing.assert_allclose(tfv, ref, atol=1e-6)


def test_charbonnier_single_value():
    out = np.zeros((1, 1, 1, 1), np.float32)
    tgt = np.full((1, 1, 1, 1), 0.5, np.float32)
    assert losses.charbonnier(out, tgt).numpy()[0] == pytest.approx(np.sqrt(0.25 + 1e-6))


def test_frequency_term_of_a_delta():
    # A unit impulse has a flat spectrum of ones: |Re| = 1, |Im| = 0 everywhere.
    out = np.zeros((1, 4, 4, 1), np.float32)
    out[0, 0, 0, 0] = 1.0
    assert losses.frequency_l1(out, np.zeros_like(out)).numpy()[0] == pytest.approx(0.5)


def test_maxim_loss_equals_hand_computation(rng):
    S, stages, N, H = 3, 2, 2, 16
    target = rng.random((N, H, H, 3)).astype(np.float32)
    outputs = [rng.random((N, H // 2 ** (S - 1 - k), H // 2 ** (S - 1 - k), 3)).astype(np.float32)
               for _ in range(stages) for k in range(S)]
    total, terms = losses.maxim_loss([tf.constant(o) for o in outputs], tf.constant(target), S)
    expected = _hand_loss(outputs, target, S)
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-5)
    assert sorted(terms) == [f"stage{s}_scale{k}" for s in range(stages) for k in range(S)]
    np.testing.assert_allclose(sum(t.numpy() for t in terms.values()), expected, rtol=1e-5)
    # The frequency term really contributes: without it the total is smaller.
    no_freq, _ = losses.maxim_loss(outputs, target, S, frequency_weight=0.0)
    assert np.all(no_freq.numpy() < total.numpy() - 0.1)


def test_maxim_loss_is_float32_for_bfloat16_outputs(rng):
    target = rng.random((1, 8, 8, 3)).astype(np.float32)
    out = tf.cast(target, tf.bfloat16)
    total, _ = losses.maxim_loss([out], target, 1)
    assert total.dtype == tf.float32


def test_maxim_loss_rejects_wrong_output_count():
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="multiple of num_supervision_scales=3"):
        losses.maxim_loss([x, x], x, 3)


@pytest.mark.parametrize("dynamic", [False, True])
def test_target_pyramid_gives_the_same_loss(rng, dynamic):
    # The trainer resizes the targets before its (optionally XLA-compiled) gradient step;
    # the loss must be the one maxim_loss computes from the full-size target.
    # Odd size 18: the coarse scales are 18 // 2 = 9 and 18 // 4 = 4, as NearestDownsample.
    S, stages, N, H = 3, 2, 2, 18
    target = rng.random((N, H, H, 3)).astype(np.float32)
    outputs = [rng.random((N, H // 2 ** (S - 1 - k), H // 2 ** (S - 1 - k), 3)).astype(np.float32)
               for _ in range(stages) for k in range(S)]
    expected = losses.maxim_loss(outputs, target, S)[0].numpy()
    if dynamic:
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        pyramid = tf.function(lambda t: losses.target_pyramid(t, S), input_signature=[spec])
        loss = tf.function(lambda o, p: losses.maxim_loss(o, p, S)[0])
        total = loss([tf.constant(o) for o in outputs], pyramid(tf.constant(target)))
    else:
        pyramid = losses.target_pyramid(tf.constant(target), S)
        assert [p.shape[1] for p in pyramid] == [4, 9, 18]
        total, _ = losses.maxim_loss(outputs, pyramid, S)
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="Expected 3 targets"):
        losses.maxim_loss(outputs, [target, target], S)
