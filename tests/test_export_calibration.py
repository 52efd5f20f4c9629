"""int8 calibration data: crops from a folder of images, or synthetic patches."""

import numpy as np
import pytest
from PIL import Image

from maxim_tf.export.tflite import calibration_samples


def _save(path, h, w, value):
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_folder_crops_have_the_size_range_and_are_deterministic(tmp_path):
    _save(tmp_path / "a.png", 100, 120, 51)
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub" / "b.jpg", 40, 30, 204)  # smaller than the crop: resized up
    (tmp_path / "notes.txt").write_text("not an image")
    samples = calibration_samples(tmp_path, 4, (64, 48))
    assert len(samples) == 4
    for s in samples:
        assert s.shape == (1, 64, 48, 3) and s.dtype == np.float32
    np.testing.assert_allclose(samples[0], 0.2, atol=1e-6)    # a.png, 51/255
    np.testing.assert_allclose(samples[1], 0.8, atol=0.02)    # b.jpg, 204/255 (JPEG)
    again = calibration_samples(tmp_path, 4, (64, 48))
    for s, t in zip(samples, again):
        np.testing.assert_array_equal(s, t)


def test_synthetic_patches_are_smooth_images_in_range():
    samples = calibration_samples(None, 3, (32, 40))
    assert [s.shape for s in samples] == [(1, 32, 40, 3)] * 3
    stacked = np.concatenate(samples)
    assert stacked.min() >= 0.0 and stacked.max() <= 1.0
    assert stacked.std() > 0.05  # not flat
    assert not np.array_equal(samples[0], samples[1])


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No images found"):
        calibration_samples(tmp_path, 2, (32, 32))
    with pytest.raises(FileNotFoundError, match="Image folder not found"):
        calibration_samples(tmp_path / "missing", 2, (32, 32))
