"""PSNR / SSIM against hand computations (official MAXIM conventions)."""

import math

import numpy as np
import pytest

from maxim_tf import metrics


def test_psnr_hand_computation():
    a = np.zeros((2, 2, 1), np.uint8)
    b = np.array([1, 2, 3, 4], np.uint8).reshape(2, 2, 1)
    mse = (1 + 4 + 9 + 16) / 4
    assert metrics.psnr(a, b) == pytest.approx(20 * math.log10(255 / math.sqrt(mse)), abs=1e-12)


def test_psnr_is_over_all_channels_and_takes_unclipped_floats():
    a = np.full((1, 2, 3), 100.0)
    b = a.copy()
    b[0, 0, 0] = 300.0  # a float prediction beyond 255 counts as is
    mse = 200.0 ** 2 / 6
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-12)


def test_psnr_identical_is_inf_and_crop_border():
    a = np.random.default_rng(0).integers(0, 256, (8, 9, 3)).astype(np.uint8)
    assert metrics.psnr(a, a) == math.inf
    b = a.copy()
    b[0] = 0
    b[:, -1] = 255
    assert math.isfinite(metrics.psnr(a, b))
    assert metrics.psnr(a, b, crop_border=1) == math.inf


def test_y_channel_hand_computation():
    white = np.full((1, 1, 3), 255.0)
    black = np.zeros((1, 1, 3))
    assert metrics.to_y_channel(white)[0, 0, 0] == pytest.approx(235.0, abs=1e-3)
    assert metrics.to_y_channel(black)[0, 0, 0] == pytest.approx(16.0, abs=1e-6)
    a = np.zeros((2, 2, 3))
    b = a.copy()
    b[0, 0] = [255.0, 0.0, 0.0]  # pure red: Y differs by 65.481 at one of 4 pixels
    mse = 65.481 ** 2 / 4
    assert metrics.psnr(a, b, y_channel=True) == pytest.approx(
        10 * math.log10(255 ** 2 / mse), abs=1e-4)


def test_ssim_identical_is_one():
    a = np.random.default_rng(1).random((20, 17, 3)) * 255
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_closed_form():
    a, b = np.full((13, 12), 100.0), np.full((13, 12), 110.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)  # zero variances
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-12)


def test_ssim_single_window_hand_computation():
    rng = np.random.default_rng(2)
    a = rng.random((11, 11)) * 255
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    x = np.arange(11) - 5.0
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()  # the 11x11 window, one valid position
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a = (w * a * a).sum() - mu_a ** 2
    var_b = (w * b * b).sum() - mu_b ** 2
    cov = (w * a * b).sum() - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert metrics.ssim(a[..., None].repeat(3, -1), b[..., None].repeat(3, -1)) == pytest.approx(expected)


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(3)
    a = rng.random((32, 32, 3)) * 255
    small = metrics.ssim(a, a + rng.normal(0, 5, a.shape))
    large = metrics.ssim(a, a + rng.normal(0, 40, a.shape))
    assert 1.0 > small > large


@pytest.mark.parametrize("call,match", [
    (lambda: metrics.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3))), "same shape"),
    (lambda: metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8))), "at least 11x11"),
    (lambda: metrics.psnr(np.zeros((4, 4)), np.zeros((4, 4)), crop_border=2), "crop_border"),
    (lambda: metrics.psnr(np.zeros((4, 4)), np.zeros((4, 4)), y_channel=True), "RGB"),
])
def test_metric_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
