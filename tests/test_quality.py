"""Quality benchmark, photo preparation and the new degradations (quantize, one_of)."""

import json

import numpy as np
import pytest
from conftest import TINY_CONFIG
from PIL import Image

import maxim_tf
from maxim_tf import metrics
from maxim_tf.cli import main
from maxim_tf.tools import quality
from maxim_tf.training import degrade, photos


def _run(image, specs, seed):
    return degrade.degrade(image, degrade.validate(specs), seed).numpy()


def test_quantize_rounds_to_levels_and_clips(rng):
    x = rng.uniform(-0.2, 1.2, (16, 16, 3)).astype(np.float32)
    y = _run(x, [{"type": "quantize"}], [0, 1])
    np.testing.assert_allclose(y * 255, np.round(y * 255), atol=1e-4)
    np.testing.assert_allclose(y, np.round(np.clip(x, 0, 1) * 255) / 255, atol=1e-6)
    y4 = _run(x, [{"type": "quantize", "levels": 4}], [0, 1])
    assert set(np.round(np.unique(y4) * 3, 4)) <= {0.0, 1.0, 2.0, 3.0}


def test_one_of_applies_exactly_one_option(rng):
    x = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    specs = [{"type": "one_of", "options": [{"type": "quantize", "levels": 2},
                                            {"type": "quantize", "levels": 3}]}]
    seen = set()
    for seed in range(24):
        values = set(np.round(np.unique(_run(x, specs, [seed, 0])), 4))
        if values <= {0.0, 1.0}:
            seen.add(2)
        else:
            assert values <= {0.0, 0.5, 1.0}, values  # never both, never neither
            seen.add(3)
    assert seen == {2, 3}


@pytest.mark.parametrize("spec, match", [
    ({"type": "quantize", "levels": 1}, "levels"),
    ({"type": "quantize", "bits": 8}, "unknown keys"),
    ({"type": "one_of", "options": []}, "non-empty"),
    ({"type": "one_of", "options": [{"type": "nope"}]}, "one_of.*unknown type"),
])
def test_new_degradation_specs_are_validated(spec, match):
    with pytest.raises(ValueError, match=match):
        degrade.validate([spec])


def test_prepare_photos_downscales_holds_out_and_tiles(tmp_path, rng):
    src = tmp_path / "src"
    src.mkdir()
    arrays = {}
    for i in range(6):
        a = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
        Image.fromarray(a).save(src / f"p{i}.png")
        arrays[f"p{i}"] = a
    m = photos.prepare_photos(src, tmp_path / "out", scale=2, tile=64, val_every=5,
                              progress=False)
    val = sorted(p.stem for p in (tmp_path / "out" / "val").iterdir())
    assert val == ["p0", "p5"]  # every 5th in name order
    tiles = sorted((tmp_path / "out" / "train").iterdir())
    assert len(tiles) == 4 * (100 // 64) * (150 // 64) == 8
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == m
    # Box downscale: every output pixel is the rounded mean of a 2x2 block.
    small = np.asarray(Image.open(tmp_path / "out" / "val" / "p0.png")).astype(np.float64)
    blocks = arrays["p0"].astype(np.float64).reshape(100, 2, 150, 2, 3).mean(axis=(1, 3))
    assert small.shape == (100, 150, 3)
    assert np.abs(small - blocks).max() <= 1.0
    tile = np.asarray(Image.open(tiles[0]))
    assert tile.shape == (64, 64, 3)
    assert photos.main([str(tmp_path / "missing"), str(tmp_path / "o2")]) == 2


def test_benchmark_degradations_match_their_nominal_strength(rng):
    clean = np.full((128, 128, 3), 128, np.uint8)
    noisy = quality.degrade_uint8(clean, quality.degradation_specs("denoise", 25.0), 0)
    assert noisy.dtype == np.uint8
    assert 23.5 < np.std(noisy.astype(np.float64)) < 26.5  # sigma 25 on mid-grey: no clipping
    np.testing.assert_array_equal(
        noisy, quality.degrade_uint8(clean, quality.degradation_specs("denoise", 25.0), 0))
    edge = np.zeros((64, 64, 3), np.uint8)
    edge[:, 32:] = 255
    blurred = [quality.degrade_uint8(edge, quality.degradation_specs("gaussian", s), 0)
               for s in (1.0, 3.0)]
    widths = [int(np.sum((b[32, :, 0] > 5) & (b[32, :, 0] < 250))) for b in blurred]
    assert 0 < widths[0] < widths[1]  # more blur, wider transition
    with pytest.raises(ValueError, match="Unknown benchmark degradation"):
        quality.degradation_specs("rain", 1)


def test_quality_benchmark_writes_tables_and_figure(tmp_path, rng):
    images = tmp_path / "clean"
    images.mkdir()
    for i in range(2):
        # Smooth images with edges, so blur and noise change them measurably.
        base = np.kron(rng.integers(0, 256, (4, 6, 3)), np.ones((24, 16, 1))).astype(np.uint8)
        Image.fromarray(base).save(images / f"img{i}.png")
    model = maxim_tf.MAXIM(**dict(TINY_CONFIG, num_stages=1, num_supervision_scales=1))
    path = tmp_path / "tiny.keras"
    model.save(path)
    out = tmp_path / "q"
    rc = main(["benchmark", "--measure", "quality", "--images", str(images), "--denoise-model", str(path),
               "--deblur-model", str(path), "--no-bm3d", "--center-crop", "64", "-o", str(out)])
    assert rc == 0
    results = json.loads((out / "quality.json").read_text())
    assert len(results["rows"]) == 2 * (3 + 5)
    assert results["rows"][0]["size"] == [64, 64]
    by_case = {e["case"]: e["methods"] for e in results["summary"]}
    assert set(by_case) == {"σ = 15", "σ = 25", "σ = 50", "Gaussian σ = 1", "Gaussian σ = 2",
                            "Gaussian σ = 3", "disk r = 2", "disk r = 4"}
    # The noisy inputs have the PSNR their sigma implies (about 20.2 dB at sigma 25).
    assert by_case["σ = 15"]["input"]["psnr"] > by_case["σ = 25"]["input"]["psnr"] \
        > by_case["σ = 50"]["input"]["psnr"]
    assert 19.0 < by_case["σ = 25"]["input"]["psnr"] < 21.5
    assert by_case["Gaussian σ = 1"]["input"]["psnr"] > by_case["Gaussian σ = 3"]["input"]["psnr"]
    assert by_case["σ = 25"]["ours"]["seconds"] > 0
    assert "Wiener" in by_case["disk r = 4"] and "Wiener" not in by_case["σ = 25"]
    md = (out / "quality.md").read_text()
    assert "| σ = 25 |" in md and "| disk r = 4 |" in md and "s / image" in md
    assert "Wiener (kernel given)" in md
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A model's score is its own: recompute one cell by hand.
    row = results["rows"][0]
    clean = quality.load_clean_images(images, 64)[0][1]
    noisy = quality.degrade_uint8(clean, quality.degradation_specs("denoise", 15.0), 0)
    assert row["results"]["input"]["psnr"] == pytest.approx(metrics.psnr(clean, noisy))


def test_quality_benchmark_errors(tmp_path):
    assert main(["benchmark", "--measure", "quality", "--no-bm3d"]) == 2
    # A missing photo folder is a usage error (exit 2: nothing done), as everywhere.
    assert main(["benchmark", "--measure", "quality", "--images", str(tmp_path / "nope"),
                 "--no-bm3d", "--deblur-model", "none", "-o", str(tmp_path / "o")]) == 2
    # The old spelling stops with one line naming the new flag.
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--quality", "--images", str(tmp_path)])
    assert exc.value.code == 2


def test_bm3d_baseline_denoises():
    pytest.importorskip("bm3d", reason="bm3d is an optional comparison dependency ([bench])")
    yy, xx = np.mgrid[0:64, 0:64]
    clean = np.stack([xx * 3, yy * 3, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    noisy = quality.degrade_uint8(clean, quality.degradation_specs("denoise", 25.0), 1)
    out, seconds = quality.bm3d_method(25.0)(noisy)
    assert seconds > 0
    assert metrics.psnr(clean, out) > metrics.psnr(clean, noisy) + 5


@pytest.mark.parametrize("kind,level", [("gaussian", 2.0), ("disk", 4.0)])
def test_wiener_baseline_undoes_the_true_blur(rng, kind, level):
    # A textured image, blurred by the benchmark's own degradation: the non-blind
    # Wiener filter must get much closer to it than the blurred input is.
    clean = np.clip(np.kron(rng.integers(0, 256, (24, 24, 3)), np.ones((4, 4, 1)))
                    + rng.normal(0, 20, (96, 96, 3)), 0, 255).astype(np.uint8)
    blurred = quality.degrade_uint8(clean, quality.degradation_specs(kind, level), 0)
    restored, _ = quality.wiener_method(kind, level)(blurred)
    assert restored.dtype == np.uint8 and restored.shape == clean.shape
    assert metrics.psnr(clean, restored) > metrics.psnr(clean, blurred) + 3.0, (
        metrics.psnr(clean, restored), metrics.psnr(clean, blurred))
