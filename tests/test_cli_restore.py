"""``maxim-tf restore`` and ``maxim-tf eval``, run in-process on real and broken files."""

import csv
import io
import math
import shutil
import zlib

import keras
import numpy as np
import pytest
from conftest import SAMPLE_IMAGES, TINY_CONFIG
from PIL import Image

from maxim_tf import image_io, metrics
from maxim_tf.cli import main

SCALE, OFFSET = 0.9, 0.05  # the toy model: y = 0.9 x + 0.05 per channel


@keras.saving.register_keras_serializable(package="maxim_tf_tests")
class ToyRestorer(keras.Model):
    """A per-pixel 1x1-conv model with MAXIM's ``size_multiple`` interface."""

    def __init__(self, multiple=32, **kwargs):
        inputs = keras.Input(shape=(None, None, 3), name="images")
        outputs = keras.layers.Conv2D(3, 1, name="mix")(inputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.multiple = multiple
        self.size_multiple = (multiple, multiple)

    def get_config(self):
        return {"multiple": self.multiple, "name": self.name}


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory):
    model = ToyRestorer()
    model.get_layer("mix").set_weights([SCALE * np.eye(3, dtype=np.float32)[None, None],
                                        np.full(3, OFFSET, np.float32)])
    path = tmp_path_factory.mktemp("models") / "toy.keras"
    model.save(path)
    return path


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def _toy(array_uint8):
    """What the toy model gives for an 8-bit image, on [0, 255] (float, unclipped)."""
    return (SCALE * array_uint8.astype(np.float32) / 255 + OFFSET) * 255


@pytest.fixture
def batch_dir(tmp_path, rng):
    """A folder of good images in every supported flavour plus every kind of bad file."""
    import tensorflow as tf

    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(SAMPLE_IMAGES / "dehazing" / "0003_0.8_0.2.png", d / "haze_550x309.png")
    shutil.copy(SAMPLE_IMAGES / "deraining" / "0.jpg", d / "rain.jpg")
    rgb = (rng.random((31, 45, 3)) * 255).astype(np.uint8)
    _png(d / "gray.png", rgb[..., 0], "L")
    _png(d / "rgba.png", np.dstack([rgb, rgb[..., :1]]), "RGBA")
    Image.fromarray(rgb).quantize(8).save(d / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    _png(d / "one_pixel.png", rgb[:1, :1])
    deep = (rng.random((17, 19, 3)) * 65535).astype(np.uint16)
    (d / "deep16.png").write_bytes(tf.io.encode_png(deep).numpy())
    good = (d / "haze_550x309.png").read_bytes()
    jpg = (d / "rain.jpg").read_bytes()
    (d / "bad_empty.png").write_bytes(b"")
    (d / "bad_trunc.png").write_bytes(good[: len(good) // 3])
    (d / "bad_trunc.jpg").write_bytes(jpg[: len(jpg) // 3])
    (d / "bad_text.png").write_text("not an image\n")
    bomb = bytearray(good)
    bomb[16:24] = (30000).to_bytes(4, "big") * 2  # header claims 30000x30000
    bomb[29:33] = (zlib.crc32(bytes(bomb[12:29])) & 0xFFFFFFFF).to_bytes(4, "big")
    (d / "bad_bomb.png").write_bytes(bytes(bomb))
    return d


def test_restore_batch_keeps_going_and_reports(batch_dir, tmp_path, toy_path, capsys):
    out = tmp_path / "out"
    rc = main(["restore", str(batch_dir), "-o", str(out), "--model", str(toy_path)])
    captured = capsys.readouterr()
    assert rc == 1
    for bad, problem in [("bad_empty.png", "empty"), ("bad_trunc.png", "truncated"),
                         ("bad_trunc.jpg", "truncated"), ("bad_text.png", "not a recognised image"),
                         ("bad_bomb.png", "megapixels")]:
        line = next(text for text in captured.err.splitlines() if bad in text)
        assert problem in line, line
        assert not list(out.glob(bad.split(".")[0] + ".*"))
    assert "Restored 8 image(s)" in captured.out and "5 failed" in captured.out
    assert "s/MP" in captured.out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cmyk.jpg", "deep16.png", "gray.png", "haze_550x309.png", "one_pixel.png",
                     "palette.png", "rain.jpg", "rgba.png"]  # no temporaries either
    with Image.open(out / "haze_550x309.png") as im:
        assert im.size == (550, 309) and im.mode == "RGB"
        src = image_io.read_image(batch_dir / "haze_550x309.png").pixels
        np.testing.assert_array_equal(np.asarray(im), np.rint(np.clip(_toy(src), 0, 255)).astype(np.uint8))
    with Image.open(out / "rain.jpg") as im:
        assert im.format == "JPEG" and im.size == (720, 480)
    with Image.open(out / "gray.png") as im:
        assert im.mode == "L" and im.size == (45, 31)
    with Image.open(out / "rgba.png") as im, Image.open(batch_dir / "rgba.png") as src:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im)[..., 3], np.asarray(src)[..., 3])
    deep = image_io.read_image(out / "deep16.png")
    assert deep.bit_depth == 16 and deep.pixels.shape == (17, 19, 3)
    assert (out / "deep16.png").read_bytes()[24] == 16
    assert image_io.read_image(out / "one_pixel.png").pixels.shape == (1, 1, 3)
    assert image_io.read_image(out / "cmyk.jpg").pixels.shape == (31, 45, 3)


def test_restore_refuses_input_as_output(tmp_path, toy_path, capsys):
    src = _png(tmp_path / "a.png", np.full((8, 8, 3), 77, np.uint8))
    before = src.read_bytes()
    rc = main(["restore", str(src), "-o", str(tmp_path), "--model", str(toy_path), "-q"])
    assert rc == 1
    assert "output path is the input file" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_restore_unwritable_output_dir(tmp_path, toy_path, capsys):
    src = _png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["restore", str(src), "-o", str(blocker / "out"), "--model", str(toy_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "output directory" in err and "not usable" in err and str(blocker) in err


def test_restore_unknown_model_lists_available(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MAXIM_TF_MODEL_DIR", str(tmp_path))
    (tmp_path / "some_model.keras").write_bytes(b"")
    src = _png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    rc = main(["restore", str(src), "-o", str(tmp_path / "o"), "--model", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "'nope' not found" in err and "some_model" in err


def test_restore_missing_input_and_format_option(tmp_path, toy_path, capsys):
    shutil.copy(SAMPLE_IMAGES / "deraining" / "0.jpg", tmp_path / "r.jpg")
    rc = main(["restore", str(tmp_path / "r.jpg"), str(tmp_path / "absent.png"), "-o",
               str(tmp_path / "o"), "--model", str(toy_path), "--image-format", "png",
               "--tile", "256", "--overlap", "64"])
    captured = capsys.readouterr()
    assert rc == 1 and "absent.png: no such file" in captured.err
    with Image.open(tmp_path / "o" / "r.png") as im:
        assert im.format == "PNG" and im.size == (720, 480)


def test_restore_recursive_mirrors_folders(tmp_path, toy_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    _png(tmp_path / "in" / "top.png", np.zeros((5, 6, 3), np.uint8))
    _png(tmp_path / "in" / "sub" / "deep.png", np.zeros((7, 3, 3), np.uint8))
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "flat"), "--model",
                 str(toy_path), "-q"]) == 0
    assert [p.name for p in (tmp_path / "flat").rglob("*.png")] == ["top.png"]
    assert main(["restore", str(tmp_path / "in"), "-r", "-o", str(tmp_path / "o"), "--model",
                 str(toy_path), "-q", "--ensemble"]) == 0
    assert image_io.read_image(tmp_path / "o" / "sub" / "deep.png").pixels.shape == (7, 3, 3)


def _eval_dirs(tmp_path, rng):
    inp, tgt = tmp_path / "input", tmp_path / "target"
    inp.mkdir()
    tgt.mkdir()
    pairs = {}
    for name, shape in (("a.png", (16, 20, 3)), ("b.png", (17, 15, 3))):
        target = (rng.random(shape) * 255).astype(np.uint8)
        noisy = np.clip(target + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
        _png(inp / name, noisy)
        _png(tgt / name, target)
        pairs[name] = (noisy, target)
    return inp, tgt, pairs


def _hand_psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0 ** 2 / mse)


def _read_csv(text):
    return {r["file"]: r for r in csv.DictReader(io.StringIO(text))}


def test_eval_without_model_equals_hand_psnr(tmp_path, rng, capsys):
    inp, tgt, pairs = _eval_dirs(tmp_path, rng)
    rc = main(["eval", "--input-dir", str(inp), "--target-dir", str(tgt), "-q",
               "--side-by-side", str(tmp_path / "sbs")])
    captured = capsys.readouterr()
    assert rc == 0
    rows = _read_csv(captured.out)
    hand = {n: _hand_psnr(a, b) for n, (a, b) in pairs.items()}
    for name in pairs:
        assert float(rows[name]["psnr"]) == pytest.approx(hand[name], abs=1e-4)
        assert float(rows[name]["ssim"]) == pytest.approx(metrics.ssim(*pairs[name]), abs=1e-4)
    assert float(rows["mean"]["psnr"]) == pytest.approx(np.mean(list(hand.values())), abs=1e-4)
    with Image.open(tmp_path / "sbs" / "a.png") as im:
        assert im.size == (40, 16)  # output | target


def test_eval_with_model_y_channel_crop_border_and_csv(tmp_path, rng, toy_path, capsys):
    inp, tgt, pairs = _eval_dirs(tmp_path, rng)
    (tgt / "a.png").rename(tgt / "a.jpg.png")  # a: no target of that name -> reported, others go on
    rc = main(["eval", "--input-dir", str(inp), "--target-dir", str(tgt), "--model", str(toy_path),
               "--y-channel", "--crop-border", "2", "--csv", str(tmp_path / "m.csv"), "-q",
               "--side-by-side", str(tmp_path / "sbs")])
    captured = capsys.readouterr()
    assert rc == 1 and "a.png: no target named a.*" in captured.err
    rows = _read_csv((tmp_path / "m.csv").read_text())
    noisy, target = pairs["b.png"]
    pred, ref = _toy(noisy)[2:-2, 2:-2], target[2:-2, 2:-2].astype(np.float64)
    weights = np.array([65.481, 128.553, 24.966]) / 255
    hand = _hand_psnr(pred @ weights, ref @ weights)
    assert float(rows["b.png"]["psnr"]) == pytest.approx(hand, abs=1e-3)
    assert "a.png" not in rows and "Mean over 1 image(s)" in captured.out
    with Image.open(tmp_path / "sbs" / "b.png") as im:
        assert im.size == (45, 17)  # input | output | target


def test_small_maxim_keras_file_end_to_end(tmp_path, capsys, monkeypatch):
    """A real (1-stage, depth-2) MAXIM saved as .keras, loaded by name, restored by tiles."""
    keras.utils.set_random_seed(0)
    import maxim_tf

    config = dict(TINY_CONFIG, num_stages=1, depth=2, num_supervision_scales=1)
    path = tmp_path / "small.keras"
    maxim_tf.MAXIM(**config).save(path)
    monkeypatch.setenv("MAXIM_TF_MODEL_DIR", str(tmp_path))
    src = SAMPLE_IMAGES / "deraining" / "1.png"
    rc = main(["restore", str(src), "-o", str(tmp_path / "o"), "--model", "small",
               "--tile", "128", "--overlap", "32", "--tile-batch", "8"])
    assert rc == 0, capsys.readouterr().err
    out = image_io.read_image(tmp_path / "o" / "1.png")
    assert out.pixels.shape == image_io.read_image(src).pixels.shape


def test_restore_paths_is_the_library_loop_of_the_command(tmp_path):
    """A Python user restores a folder as the command does: bad files reported, the rest
    restored, existing outputs skipped (maxim_tf.restore_files.restore_paths)."""
    from maxim_tf.restore_files import collect_inputs, restore_paths

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE_IMAGES / "deraining" / "1.png", src / "a.png")
    shutil.copy(SAMPLE_IMAGES / "deraining" / "0.jpg", src / "sub" / "b.jpg")
    (src / "bad.png").write_bytes(b"not an image")
    jobs, missing = collect_inputs([src, tmp_path / "absent.png"], recursive=True)
    lines = []
    identity = lambda pixels: pixels  # noqa: E731
    result = restore_paths(identity, jobs, tmp_path / "out", missing=missing, report=lines.append)
    assert (result.restored, result.skipped) == (2, 0)
    assert len(result.failures) == 2 and lines == result.failures
    assert any("absent.png: no such file" in f for f in result.failures)
    assert any(f.startswith(str(src / "bad.png")) for f in result.failures)
    assert sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*.*")) == ["a.png", "sub/b.jpg"]
    again = restore_paths(identity, jobs, tmp_path / "out", report=lines.append)
    assert (again.restored, again.skipped) == (0, 2)
