"""Tests of maxim_tf.restore: official padding, ensemble, tiling, Restorer API."""

import numpy as np
import pytest
from conftest import REPO, SAMPLE_IMAGES, SHARED_IMAGES

from maxim_tf import image_io
from maxim_tf.hub import resolve_model
from maxim_tf.restore import (
    Restorer,
    blend_ramp,
    crop_to,
    ensemble_inverse,
    ensemble_transform,
    pad_for_model,
    pad_to_even,
    symmetric_padding,
    tile_starts,
    tile_window_1d,
)

# The committed samples (odd sizes, JPEG and PNG) and the quick-start photos; on machines
# with ../shared beside the clone, every degraded sample of the official repository too.
COMMITTED_SAMPLES = sorted(p for p in SAMPLE_IMAGES.rglob("*") if p.suffix in (".png", ".jpg"))
COMMITTED_SAMPLES += sorted((REPO / "examples" / "images").glob("*.png"))
SAMPLES = COMMITTED_SAMPLES + sorted(p for p in SHARED_IMAGES.rglob("*") if p.is_file())


class PixelModel:
    """Per-pixel toy model (equivariant to flips, rotations and translations).

    Refuses inputs whose H, W are not multiples of ``size_multiple``, like MAXIM,
    and records the shapes it saw.
    """

    def __init__(self, size_multiple=(64, 64)):
        self.size_multiple = size_multiple
        self.shapes = []

    def __call__(self, x):
        mh, mw = self.size_multiple
        assert x.shape[1] % mh == 0 and x.shape[2] % mw == 0, x.shape
        self.shapes.append(x.shape)
        return self.f(x)

    @staticmethod
    def f(x):
        return 0.8 * x ** 2 + 0.1 * x[..., ::-1] + 0.05


class ShiftModel(PixelModel):
    """Not equivariant: mixes each pixel with its right neighbour (tests de-augmentation)."""

    def __call__(self, x):
        super().__call__(x)
        return x + 0.5 * (np.roll(x, -1, axis=2) - x) + 0.3 * x[..., :1]


# --- the official procedure, written out as maxim/run_eval.py does it -------------------

def official_pad(image, factor):
    h, w = image.shape[:2]
    image = np.pad(image, [(0, h % 2), (0, w % 2), (0, 0)], mode="reflect")
    h, w = image.shape[:2]
    ph = ((h + factor) // factor) * factor - h if h % factor else 0
    pw = ((w + factor) // factor) * factor - w if w % factor else 0
    return np.pad(image, [(ph // 2, ph // 2), (pw // 2, pw // 2), (0, 0)], mode="reflect")


def official_crop(pred, height, width):
    h_even, w_even = height + height % 2, width + width % 2
    hs = pred.shape[0] // 2 - h_even // 2
    ws = pred.shape[1] // 2 - w_even // 2
    return pred[hs:hs + height, ws:ws + width]


def official_augment(image):
    views = [np.rot90(image, k) for k in range(4)]
    return views + [np.rot90(np.fliplr(image), k) for k in range(4)]


def official_deaugment(preds):
    out = [np.rot90(preds[k], 4 - k) for k in range(4)]
    out += [np.fliplr(np.rot90(preds[4 + k], 4 - k)) for k in range(4)]
    return np.mean(out, axis=0)


SIZES = [(1, 1), (1, 2), (2, 3), (5, 7), (63, 64), (64, 64), (65, 130), (309, 550), (413, 550)]


# --- pure helpers ------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", SIZES)
def test_padding_equals_official_procedure(h, w, rng):
    image = rng.random((h, w, 3), dtype=np.float32)
    padded, offset = pad_for_model(image, 64)
    np.testing.assert_array_equal(padded, official_pad(image, 64))
    pred = padded * 2.0 - 0.3  # any per-pixel "model"
    np.testing.assert_array_equal(crop_to(pred, offset, (h, w)), official_crop(pred, h, w))


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("multiple", [64, 32, (32, 16), 6])
def test_pad_crop_round_trip(h, w, multiple, rng):
    image = rng.random((2, h, w, 3), dtype=np.float32)
    padded, offset = pad_for_model(image, multiple)
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    assert padded.shape[1] % mh == 0 and padded.shape[2] % mw == 0
    assert padded.shape[1] - (h + h % 2) < mh and padded.shape[2] - (w + w % 2) < mw
    np.testing.assert_array_equal(crop_to(padded, offset, (h, w)), image)


def test_pad_to_even_reflects_last_but_one_row():
    image = np.arange(15, dtype=np.float32).reshape(3, 5, 1)
    even = pad_to_even(image)
    assert even.shape == (4, 6, 1)
    np.testing.assert_array_equal(even[3, :5, 0], image[1, :, 0])
    np.testing.assert_array_equal(even[:3, 5, 0], image[:, 3, 0])


def test_symmetric_padding():
    assert symmetric_padding(64, 64) == (0, 0)
    assert symmetric_padding(310, 64) == (5, 5)
    assert symmetric_padding(550, 64) == (13, 13)
    assert symmetric_padding(5, 4) == (1, 2)


def test_ensemble_transforms_match_official_order_and_invert(rng):
    image = rng.random((4, 6, 3), dtype=np.float32)
    batch = image[None]
    for k, view in enumerate(official_augment(image)):
        np.testing.assert_array_equal(ensemble_transform(batch, k)[0], view)
        np.testing.assert_array_equal(ensemble_inverse(ensemble_transform(batch, k), k), batch)


@pytest.mark.parametrize("length,tile,overlap,align", [
    (64, 64, 0, 64), (128, 64, 0, 64), (320, 128, 64, 32), (576, 128, 32, 32), (576, 256, 64, 64),
    (4096, 512, 64, 64), (100, 30, 7, 1), (992, 128, 96, 32)])
def test_tile_starts_cover_aligned_with_overlap(length, tile, overlap, align):
    starts = tile_starts(length, min(tile, length), overlap, align)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    assert all(s % align == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap kept
    assert all(b > a for a, b in zip(starts, starts[1:]))


def test_tile_starts_rejects_overlap_leaving_no_stride():
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(512, 128, 100, 64)


def test_blend_ramp_is_partition_of_unity():
    for n in (1, 7, 64):
        ramp = blend_ramp(n)
        assert (ramp > 0).all() and (ramp < 1).all() and (np.diff(ramp) > 0).all()
        np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-6)


def test_tile_window_flat_at_image_borders():
    first = tile_window_1d(0, 128, 300, 32)
    middle = tile_window_1d(64, 128, 300, 32)
    last = tile_window_1d(172, 128, 300, 32)
    assert (first[:96] == 1).all() and first[-1] < 0.01
    assert middle[0] < 0.01 and middle[-1] < 0.01 and (middle[32:96] == 1).all()
    assert last[0] < 0.01 and (last[32:] == 1).all()
    assert (tile_window_1d(0, 128, 300, 0) == 1).all()


# --- Restorer with toy models -----------------------------------------------------------

def test_exact_output_sizes_on_real_samples():
    assert len(COMMITTED_SAMPLES) >= 6  # 550x309, 720x480 (JPEG), 480x320, 256x256, 384x256 x2
    model = PixelModel((64, 64))
    restorer = Restorer(model)
    for path in SAMPLES:
        image = image_io.read_image(path).pixels
        out = restorer(image)
        assert out.shape == image.shape and out.dtype == np.uint8, path
        h, w = image.shape[:2]
        expected = (((h + h % 2) + 63) // 64 * 64, ((w + w % 2) + 63) // 64 * 64)
        assert model.shapes[-1][1:3] == expected, path
        # a per-pixel model restores every pixel from itself: output = f(input) exactly
        ref = np.rint(np.clip(PixelModel.f(image.astype(np.float32) / 255), 0, 1) * 255)
        np.testing.assert_array_equal(out, ref.astype(np.uint8))


def test_float_output_is_unclipped_and_padding_is_official(rng):
    image = rng.random((37, 51, 3), dtype=np.float32)
    out = Restorer(ShiftModel((16, 16)))(image)
    ref = official_crop(ShiftModel((16, 16))(official_pad(image, 16)[None])[0], 37, 51)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert out.dtype == np.float32 and out.max() > 1.0


def test_ensemble_of_equivariant_model_equals_plain(rng):
    image = rng.random((45, 70, 3), dtype=np.float32)
    plain = Restorer(PixelModel((32, 32)))(image)
    model = PixelModel((32, 32))
    ens = Restorer(model, ensemble=True, batch_size=3)(image)
    assert len(model.shapes) > 1  # eight views in batches of 3
    np.testing.assert_allclose(ens, plain, atol=1e-6)


def test_ensemble_matches_official_deaugmentation(rng):
    image = rng.random((40, 40, 3), dtype=np.float32)  # square: official code can stack views
    out = Restorer(ShiftModel((8, 8)), ensemble=True)(image)
    padded = official_pad(image, 8)
    preds = ShiftModel((8, 8))(np.stack(official_augment(padded)))
    ref = official_crop(official_deaugment(preds), 40, 40)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    plain = Restorer(ShiftModel((8, 8)))(image)
    assert np.abs(out - plain).max() > 0.01  # the non-equivariant model really differs


def test_ensemble_with_non_square_multiple_uses_common_multiple(rng):
    model = PixelModel((16, 32))
    restorer = Restorer(model, ensemble=True)
    assert restorer.multiple == (32, 32)
    image = rng.random((20, 50, 3), dtype=np.float32)
    np.testing.assert_allclose(restorer(image), Restorer(PixelModel((16, 32)))(image), atol=1e-6)


@pytest.mark.parametrize("tile,overlap,ensemble", [(64, 32, False), (128, 64, False), (64, 0, True)])
def test_tiling_per_pixel_model_equals_untiled(tile, overlap, ensemble, rng):
    image = rng.random((150, 333, 3), dtype=np.float32)
    model = PixelModel((32, 32))
    tiled = Restorer(model, tile=tile, overlap=overlap, ensemble=ensemble, batch_size=5)(image)
    assert max(s[1] for s in model.shapes) <= tile and max(s[2] for s in model.shapes) <= tile
    assert max(s[0] for s in model.shapes) <= 5
    np.testing.assert_allclose(tiled, Restorer(PixelModel((32, 32)))(image), atol=1e-5)


def test_tile_larger_than_image_is_plain(rng):
    image = rng.random((40, 50, 3), dtype=np.float32)
    model = ShiftModel((32, 32))
    np.testing.assert_array_equal(Restorer(model, tile=256)(image), Restorer(model)(image))


def test_dtypes_gray_alpha_and_batches(rng):
    restorer = Restorer(PixelModel((16, 16)))
    u16 = (rng.random((9, 11, 3)) * 65535).astype(np.uint16)
    assert restorer(u16).dtype == np.uint16 and restorer(u16).shape == (9, 11, 3)
    gray = (rng.random((9, 11)) * 255).astype(np.uint8)
    out = restorer(gray)
    assert out.shape == (9, 11) and out.dtype == np.uint8
    rgb = restorer(np.repeat(gray[..., None], 3, axis=-1)).astype(np.float64)
    np.testing.assert_allclose(out, rgb @ [0.299, 0.587, 0.114], atol=1.0)
    rgba = (rng.random((9, 11, 4)) * 255).astype(np.uint8)
    out = restorer(rgba)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out[..., :3], restorer(rgba[..., :3]))
    batch = rng.random((3, 9, 11, 3), dtype=np.float32)
    out = restorer(batch)
    assert out.shape == batch.shape
    np.testing.assert_allclose(out[1], restorer(batch[1]), atol=1e-6)
    listed = restorer([batch[0], batch[0, :5, :7]])
    assert [o.shape for o in listed] == [(9, 11, 3), (5, 7, 3)]


@pytest.mark.parametrize("bad,match", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or Inf"),
    (np.full((8, 8, 3), np.inf, np.float64), "NaN or Inf"),
    (np.full((8, 8, 3), 255.0, np.float32), r"must be in \[0, 1\]"),
    (np.zeros((8, 8, 3), np.int64), "uint8, uint16 or float"),
    (np.zeros((8, 8, 5), np.uint8), "shape"),
    (np.zeros((0, 8, 3), np.uint8), "no pixels"),
])
def test_bad_arrays_are_refused(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Restorer(PixelModel())(bad)


def test_one_pixel_image():
    out = Restorer(PixelModel())(np.array([[[10, 200, 30]]], np.uint8))
    assert out.shape == (1, 1, 3)


def test_option_errors():
    with pytest.raises(ValueError, match="multiple"):
        Restorer(PixelModel((64, 64)), tile=100)
    with pytest.raises(ValueError, match="overlap"):
        Restorer(PixelModel((64, 64)), tile=128, overlap=128)
    with pytest.raises(TypeError, match="size_multiple"):
        Restorer(lambda x: x)
    assert Restorer(lambda x: x, size_multiple=8).multiple == (8, 8)


def test_resolve_model_errors_list_available(tmp_path, monkeypatch):
    monkeypatch.setenv("MAXIM_TF_MODEL_DIR", str(tmp_path))
    (tmp_path / "denoise_small.keras").write_bytes(b"x")
    assert resolve_model("denoise_small") == tmp_path / "denoise_small.keras"
    assert resolve_model(tmp_path / "denoise_small.keras") == tmp_path / "denoise_small.keras"
    with pytest.raises(FileNotFoundError, match="Available names: .*denoise_small"):
        resolve_model("no_such_model")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .keras model file"):
        resolve_model(tmp_path / "weights.h5")


# --- Restorer with the tiny MAXIM ---------------------------------------------------------

@pytest.fixture(scope="module")
def dehazing_sample():
    return image_io.read_image(SAMPLE_IMAGES / "dehazing" / "0003_0.8_0.2.png").pixels  # 550 x 309


@pytest.fixture(scope="module")
def untiled(tiny_model, dehazing_sample):
    return Restorer(tiny_model)(dehazing_sample.astype(np.float32) / 255)


def test_tiny_maxim_exact_size_on_odd_real_sample(tiny_model, dehazing_sample, untiled):
    assert untiled.shape == dehazing_sample.shape == (309, 550, 3)
    assert np.isfinite(untiled).all()
    out8 = Restorer(tiny_model)(dehazing_sample)
    np.testing.assert_array_equal(out8, np.rint(np.clip(untiled, 0, 1) * 255).astype(np.uint8))


def _seam_lines(restorer, size, axis):
    """Tile borders, in image coordinates, along ``axis`` of an image ``size`` long."""
    m = restorer.multiple[axis]
    even = size + size % 2
    top, bottom = symmetric_padding(even, m)
    padded = even + top + bottom
    tile = min(restorer.tile, padded)
    starts = tile_starts(padded, tile, restorer.overlap, m)
    edges = set(starts[1:]) | {s + tile for s in starts[:-1]}
    return sorted(e - top for e in edges if 1 <= e - top < size)


def _tiling_stats(restorer, image, reference):
    tiled = restorer(image)
    diff = (tiled - reference).mean(-1)
    stats = {}
    for axis, size in ((0, image.shape[0]), (1, image.shape[1])):
        jumps = np.abs(np.diff(diff, axis=axis)).mean(axis=1 - axis)  # jump between line i-1 and i
        seams = [s - 1 for s in _seam_lines(restorer, size, axis)]
        others = np.setdiff1d(np.arange(len(jumps)), seams)
        stats[axis] = jumps[seams].mean() / jumps[others].mean()
    return tiled, stats


def test_tiled_tiny_maxim_agrees_with_untiled_without_seams(tiny_model, dehazing_sample, untiled):
    """Tiled vs whole-image restoration of a real 550x309 sample, tiles of 128, overlap 64.

    Tolerance: MAXIM's grid gMLP (a fixed grid whose cells grow with the input) and
    channel attention see the whole input, so a tile's output cannot equal the whole-image
    output; what tiling must preserve is the model's correction. We require the interior
    mean difference to be < 5% of the mean correction |output - input| (measured 1.0%;
    2.2% with overlap 32).
    Seams: the difference image must not jump at tile borders more than elsewhere (ratio
    < 1.5; measured 0.67-0.79), while hard seams (overlap 0, flat windows) do (measured ~3.8).
    """
    x = dehazing_sample.astype(np.float32) / 255
    tiled, ratio = _tiling_stats(Restorer(tiny_model, tile=128, overlap=64, batch_size=8), x, untiled)
    inner = (slice(16, -16), slice(16, -16))
    correction = np.abs(untiled - x)[inner].mean()
    assert np.abs(tiled - untiled)[inner].mean() < 0.05 * correction
    assert ratio[0] < 1.5 and ratio[1] < 1.5, ratio
    _, hard = _tiling_stats(Restorer(tiny_model, tile=128, overlap=0, batch_size=8), x, untiled)
    assert hard[1] > 1.5, hard  # the measure does detect seams when there are some


# --- 4096 x 4096 by tiling: memory follows the tile, not the image ------------------------

_RSS_SCRIPT = """
import resource, sys, time
import numpy as np, keras
sys.path.insert(0, {tests!r})
import maxim_tf
from conftest import SAMPLE_IMAGES, TINY_CONFIG
from maxim_tf import image_io
from maxim_tf.restore import Restorer
keras.utils.set_random_seed(0)
model = maxim_tf.MAXIM(**dict(TINY_CONFIG, num_stages=1, depth=2, num_supervision_scales=1))
real = image_io.read_image(SAMPLE_IMAGES / "dehazing" / "0003_0.8_0.2.png").pixels  # 550 x 309
reps = (-(-{size} // real.shape[0]), -(-{size} // real.shape[1]), 1)
image = np.tile(real, reps)[:{size}, :{size}]  # a real photo repeated to the size
start = time.perf_counter()
out = Restorer(model, tile=512, overlap=64, batch_size=4)(image)
assert out.shape == image.shape and out.dtype == np.uint8
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.perf_counter() - start)
"""


def _peak_rss(size):
    """Peak RSS (bytes) and seconds of restoring a size x size image by 512-pixel tiles."""
    import subprocess
    import sys

    from conftest import TESTS

    code = _RSS_SCRIPT.format(tests=str(TESTS), size=size)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, seconds = result.stdout.split()[-2:]
    return int(rss), float(seconds)


@pytest.mark.slow
def test_4096_image_by_tiles_memory_follows_tile_size():
    """Restoring 4096^2 instead of 1024^2 (16x the pixels) may add image-sized buffers only.

    Per image pixel the Restorer holds the uint8 input (3 B), its float32 copy (12 B), the
    blend accumulator (12 B) and weights (4 B), and the output (3 B + a 12 B float
    temporary): < 60 B/pixel. Model activations depend on the tile (512) alone.
    """
    small_rss, _ = _peak_rss(1024)
    big_rss, seconds = _peak_rss(4096)
    extra_pixels = 4096 ** 2 - 1024 ** 2
    print(f"peak RSS 1024^2: {small_rss / 2**20:.0f} MiB, 4096^2: {big_rss / 2**20:.0f} MiB "
          f"({seconds:.0f} s)")
    assert big_rss - small_rss < 60 * extra_pixels
