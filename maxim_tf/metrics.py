"""PSNR and SSIM with the conventions of the official MAXIM evaluation.

The official ``maxim/run_eval.py`` scores an image as follows, and so does
this module:

* both images are float64 on the [0, 255] scale (the prediction is the
  model's float output times 255, *not* clipped or rounded; the target is the
  8-bit file);
* ``crop_border`` pixels are removed on every side first;
* optionally only the Y channel of ITU-R BT.601 YCbCr is compared (MATLAB's
  ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B
  in [0, 1]), as is customary for deraining;
* PSNR is ``20 log10(255 / sqrt(MSE))`` over all pixels and channels at once,
  ``inf`` for identical images.

SSIM is the Gaussian-window SSIM of Wang et al. (2004) as used by the
BasicSR/MATLAB code the official metric functions derive from: 11x11 window,
sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, only positions where the window lies
fully inside the image ("valid"), computed per channel and averaged.
"""

import numpy as np

# BT.601 luma weights of MATLAB's rgb2ycbcr, for R, G, B in [0, 1].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def to_y_channel(image):
    """Return the BT.601 Y channel of an RGB image on the [0, 255] scale.

    Args:
        image: ``[H, W, 3]`` array on the [0, 255] scale (any real dtype).

    Returns:
        ``[H, W, 1]`` float64 array on the [0, 255] scale (Y lies in [16, 235]),
        not rounded.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"to_y_channel expects an [H, W, 3] image. Received: shape={image.shape}")
    # The official code computes this in float32; keep its rounding.
    rgb = image.astype(np.float32) / np.float32(255.0)
    y = rgb @ _Y_WEIGHTS.astype(np.float32) + np.float32(16.0)
    return y.astype(np.float64)[..., None]


def _prepare(img1, img2, crop_border, y_channel):
    """Validate a pair, cast to float64, crop borders, optionally keep only Y."""
    img1, img2 = np.asarray(img1), np.asarray(img2)
    if img1.shape != img2.shape:
        raise ValueError(f"Images must have the same shape. Received: {img1.shape} and {img2.shape}")
    if img1.ndim == 2:
        img1, img2 = img1[..., None], img2[..., None]
    if img1.ndim != 3:
        raise ValueError(f"Expected [H, W] or [H, W, C] images. Received: shape={img1.shape}")
    crop_border = int(crop_border)
    if crop_border < 0 or 2 * crop_border >= min(img1.shape[:2]):
        raise ValueError(
            f"crop_border must be >= 0 and leave pixels to compare. "
            f"Received: crop_border={crop_border} for an image of {img1.shape[0]}x{img1.shape[1]}")
    if crop_border:
        img1 = img1[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        if img1.shape[-1] != 3:
            raise ValueError(f"y_channel needs RGB images. Received: {img1.shape[-1]} channels")
        img1, img2 = to_y_channel(img1), to_y_channel(img2)
    return img1.astype(np.float64), img2.astype(np.float64)


def psnr(img1, img2, crop_border=0, y_channel=False):
    """Peak signal-to-noise ratio in dB, as the official MAXIM evaluation computes it.

    Args:
        img1, img2: images of the same shape, ``[H, W]`` or ``[H, W, C]``, on the
            [0, 255] scale (uint8 or float; floats are not clipped or rounded).
        crop_border: pixels removed from each side before comparing.
        y_channel: compare only the BT.601 Y channel (RGB inputs only).

    Returns:
        PSNR as a Python float; ``inf`` for identical images.
    """
    a, b = _prepare(img1, img2, crop_border, y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * np.log10(255.0 / np.sqrt(mse)))


def gaussian_window(size=_SSIM_WINDOW, sigma=_SSIM_SIGMA):
    """Normalised 1-D Gaussian taps (the separable SSIM window).

    Args:
        size: number of taps.
        sigma: standard deviation in pixels.

    Returns:
        float64 array of ``size`` taps summing to 1.
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return taps / taps.sum()


def _filter_valid(image, taps):
    """Separable 'valid' correlation of a 2-D array with ``taps`` on both axes."""
    k = len(taps)
    h, w = image.shape
    rows = sum(taps[i] * image[i:h - k + 1 + i] for i in range(k))
    return sum(taps[i] * rows[:, i:w - k + 1 + i] for i in range(k))


def _ssim_channel(a, b, taps):
    """Mean SSIM of two 2-D float64 arrays on the [0, 255] scale."""
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a ** 2
    var_b = _filter_valid(b * b, taps) - mu_b ** 2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(img1, img2, crop_border=0, y_channel=False):
    """Structural similarity (Gaussian 11x11, sigma 1.5), averaged over channels.

    Args:
        img1, img2: images of the same shape, ``[H, W]`` or ``[H, W, C]``, on the
            [0, 255] scale; at least 11x11 after ``crop_border``.
        crop_border: pixels removed from each side before comparing.
        y_channel: compare only the BT.601 Y channel (RGB inputs only).

    Returns:
        SSIM as a Python float (1.0 for identical images).
    """
    a, b = _prepare(img1, img2, crop_border, y_channel)
    if min(a.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after crop_border. "
            f"Received: {a.shape[0]}x{a.shape[1]}")
    taps = gaussian_window()
    return float(np.mean([_ssim_channel(a[..., c], b[..., c], taps) for c in range(a.shape[-1])]))
