"""The trained models shipped in saved_models/: loadable, small, and restoring for real."""


import keras
import numpy as np
import pytest
from conftest import REPO

from maxim_tf import image_io, metrics
from maxim_tf.cli import main
from maxim_tf.image_io import read_image
from maxim_tf.restore import Restorer
from maxim_tf.tools import quality

MODELS = REPO / "saved_models"
SAMPLES = REPO / "examples" / "images"
# Measured on examples/images/life_*.png (a crop of a held-out photo), see
# saved_models/*.md; thresholds sit 0.4-1 dB under the measurements.
DENOISE_MIN_GAIN_DB = 5.2  # sigma 25: noisy -> restored (measured 6.2 dB)
DEBLUR_MIN_GAIN_DB = 0.5  # Gaussian sigma 2: blurred -> restored (measured 0.92 dB)
INT8_MAX_LOSS_DB = 1.0  # full-int8 TFLite vs the Keras model (measured 0.15 and 0.01 dB)


@pytest.fixture(scope="module")
def clean():
    return read_image(SAMPLES / "life_clean.png").pixels


@pytest.mark.parametrize("name", ["denoise", "deblur"])
def test_shipped_model_is_small_safe_and_documented(name):
    path = MODELS / f"{name}.keras"
    assert path.stat().st_size <= 25 * 2**20
    import maxim_tf.model  # noqa: F401  (registers MAXIM and its layers for deserialization)

    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    assert model.size_multiple == (32, 32)
    card = (MODELS / f"{name}.md").read_text()
    assert "Validation" in card and "lomiri-wallpapers-16.04" in card
    # The card's model figures are those of the shipped files (its quality figures:
    # tests/test_readme.py against benchmarks/quality/quality.json).
    assert f"| parameters | {model.count_params():,} |" in card
    assert f"{model.count_params() / 1e6:.2f} M parameters" in (REPO / "README.md").read_text()
    for q in ("fp32", "int8"):
        tflite = MODELS / f"{name}_{q}.tflite"
        assert tflite.stat().st_size <= 25 * 2**20
        assert f"`{tflite.name}` ({tflite.stat().st_size / 2**20:.1f} MiB" in card
    assert f"`{path.name}` ({path.stat().st_size / 2**20:.1f} MiB" in card


def test_default_restore_model_denoises_the_demo_sample(tmp_path, clean):
    noisy_path = SAMPLES / "life_noisy_sigma25.png"
    noisy = read_image(noisy_path).pixels
    assert main(["restore", str(noisy_path), "-o", str(tmp_path), "-q"]) == 0  # no --model
    restored = read_image(tmp_path / noisy_path.name).pixels
    assert restored.shape == noisy.shape
    gain = metrics.psnr(clean, restored) - metrics.psnr(clean, noisy)
    assert gain >= DENOISE_MIN_GAIN_DB, gain
    np.testing.assert_array_equal(restored, Restorer("denoise")(noisy))  # it was `denoise`


def test_deblur_model_sharpens_gaussian_blur(clean):
    blurred = quality.degrade_uint8(clean, quality.degradation_specs("gaussian", 2.0), 0)
    restored = Restorer("deblur")(blurred)
    gain = metrics.psnr(clean, restored) - metrics.psnr(clean, blurred)
    assert gain >= DEBLUR_MIN_GAIN_DB, gain


@pytest.mark.parametrize("name", ["denoise", "deblur"])
def test_tflite_exports_match_the_keras_model(name, clean):
    pytest.importorskip("ai_edge_litert", reason="needs the [export] extra")
    from maxim_tf.litert import TFLiteRunner

    kind, level = ("denoise", 25.0) if name == "denoise" else ("gaussian", 2.0)
    degraded = quality.degrade_uint8(clean, quality.degradation_specs(kind, level), 0)
    x = degraded[None].astype(np.float32) / 255.0
    keras_out = Restorer(name).restore_float(x)
    fp32 = TFLiteRunner(MODELS / f"{name}_fp32.tflite")(x)
    assert np.abs(fp32 - keras_out).max() < 1e-4
    int8 = image_io.to_uint8(TFLiteRunner(MODELS / f"{name}_int8.tflite")(x)[0])
    loss = metrics.psnr(clean, image_io.to_uint8(keras_out[0])) - metrics.psnr(clean, int8)
    assert loss <= INT8_MAX_LOSS_DB, loss
