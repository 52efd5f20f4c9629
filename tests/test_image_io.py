"""Hardened image reading/writing: modes, bit depths, orientation, bad files, atomic writes."""

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import SAMPLE_IMAGES
from PIL import Image, ImageOps

from maxim_tf import image_io
from maxim_tf.image_io import ImageReadError, ImageWriteError, read_image, write_image


@pytest.fixture
def rgb(rng):
    return (rng.random((13, 21, 3)) * 255).astype(np.uint8)


def _png_bytes(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _with_claimed_size(png, width, height):
    """Rewrite a PNG's IHDR to claim another size (valid CRC): a decompression-bomb header."""
    ihdr = bytearray(png[12:29])  # type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return png[:12] + bytes(ihdr) + crc + png[33:]


def test_rgb_png_round_trip(tmp_path, rgb):
    write_image(tmp_path / "a.png", rgb)
    img = read_image(tmp_path / "a.png")
    assert img.format == "PNG" and img.alpha is None and img.bit_depth == 8 and not img.grayscale
    np.testing.assert_array_equal(img.pixels, rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary left behind


def test_16bit_rgb_png_stays_16bit(tmp_path, rng):
    import tensorflow as tf

    data = (rng.random((9, 10, 3)) * 65535).astype(np.uint16)
    (tmp_path / "in.png").write_bytes(tf.io.encode_png(data).numpy())
    img = read_image(tmp_path / "in.png")
    assert img.pixels.dtype == np.uint16 and img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels, data)
    write_image(tmp_path / "out.png", img.pixels)
    assert (tmp_path / "out.png").read_bytes()[24] == 16  # IHDR bit depth
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, data)


def test_16bit_gray_and_rgba(tmp_path, rng):
    import tensorflow as tf

    gray = (rng.random((6, 5, 1)) * 65535).astype(np.uint16)
    (tmp_path / "g.png").write_bytes(tf.io.encode_png(gray).numpy())
    img = read_image(tmp_path / "g.png")
    assert img.grayscale and img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, gray)
    rgba = (rng.random((6, 5, 4)) * 65535).astype(np.uint16)
    (tmp_path / "a.png").write_bytes(tf.io.encode_png(rgba).numpy())
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img.pixels, rgba[..., :3])
    np.testing.assert_array_equal(img.alpha, rgba[..., 3:])


def test_grayscale_in_grayscale_out(tmp_path, rgb):
    gray = rgb[..., 0]
    (tmp_path / "g.png").write_bytes(_png_bytes(gray, "L"))
    img = read_image(tmp_path / "g.png")
    assert img.grayscale and img.pixels.shape == (13, 21, 1)
    write_image(tmp_path / "o.png", img.pixels)
    with Image.open(tmp_path / "o.png") as out:
        assert out.mode == "L"
        np.testing.assert_array_equal(np.asarray(out), gray)


def test_alpha_kept_and_reattached(tmp_path, rgb, rng):
    alpha = (rng.random((13, 21)) * 255).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(_png_bytes(np.dstack([rgb, alpha]), "RGBA"))
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img.pixels, rgb)
    np.testing.assert_array_equal(img.alpha[..., 0], alpha)
    write_image(tmp_path / "o.png", img.pixels, alpha=img.alpha)
    with Image.open(tmp_path / "o.png") as out:
        assert out.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)
    (tmp_path / "la.png").write_bytes(_png_bytes(np.dstack([rgb[..., 0], alpha]), "LA"))
    img = read_image(tmp_path / "la.png")
    assert img.grayscale and img.alpha is not None
    with pytest.raises(ImageWriteError, match="alpha"):
        write_image(tmp_path / "o.jpg", img.pixels, alpha=img.alpha)


def test_palette_and_cmyk_are_converted(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(img.pixels, np.asarray(pal.convert("RGB")))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    img = read_image(tmp_path / "pt.png")
    assert img.pixels.shape == (13, 21, 3) and img.alpha is not None
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg")
    assert img.format == "JPEG" and img.pixels.shape == (13, 21, 3)
    with Image.open(tmp_path / "c.jpg") as ref:
        np.testing.assert_array_equal(img.pixels, np.asarray(ref.convert("RGB")))
    Image.fromarray(rgb[..., 0] > 128).save(tmp_path / "bw.png")
    assert read_image(tmp_path / "bw.png").grayscale


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, rgb, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    img = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(img.pixels, expected)
    assert img.pixels.shape[:2] == ((21, 13) if orientation >= 5 else (13, 21))


def test_one_pixel_image(tmp_path):
    (tmp_path / "1.png").write_bytes(_png_bytes(np.array([[[1, 2, 3]]], np.uint8)))
    assert read_image(tmp_path / "1.png").pixels.shape == (1, 1, 3)


@pytest.mark.parametrize("name,make,match", [
    ("empty.png", lambda png, jpg: b"", "empty"),
    ("trunc.png", lambda png, jpg: png[: len(png) // 2], "truncated or corrupt"),
    ("trunc.jpg", lambda png, jpg: jpg[: len(jpg) // 2], "truncated or corrupt"),
    ("text.png", lambda png, jpg: b"this is not an image\n" * 10, "not a recognised image"),
])
def test_bad_files_name_file_and_problem(tmp_path, rng, name, make, match):
    noise = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    path = tmp_path / name
    path.write_bytes(make(_png_bytes(noise), _jpeg_bytes(noise)))
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_decompression_bomb_refused_before_decoding(tmp_path, rgb):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_with_claimed_size(_png_bytes(rgb), 20000, 20000))
    with pytest.raises(ImageReadError, match=r"400\.0 megapixels.*limit of 100 megapixels") as info:
        read_image(bomb)
    assert str(bomb) in str(info.value)


def test_pixel_limit_is_configurable(tmp_path, rgb):
    (tmp_path / "a.png").write_bytes(_png_bytes(rgb))
    with pytest.raises(ImageReadError, match="limit"):
        read_image(tmp_path / "a.png", max_pixels=100)
    assert read_image(tmp_path / "a.png", max_pixels=None).pixels.shape == (13, 21, 3)
    # above Pillow's own default bomb threshold (89 MP) but within ours: header check passes
    big = tmp_path / "big.png"
    big.write_bytes(_with_claimed_size(_png_bytes(rgb), 10000, 9500))
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(big)


def test_atomic_write_failures_leave_nothing(tmp_path, rgb):
    with pytest.raises(ImageWriteError, match="cannot write") as info:
        write_image(tmp_path / "missing_dir" / "a.png", rgb)
    assert "missing_dir" in str(info.value)
    target = tmp_path / "keep.jpg"
    target.write_bytes(b"previous")
    with pytest.raises(ImageWriteError):
        write_image(target, np.dstack([rgb, rgb[..., :1]]))  # JPEG cannot hold alpha
    assert target.read_bytes() == b"previous"
    write_image(target, rgb)
    assert read_image(target).format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jpg"]


def test_jpeg_written_at_high_quality(tmp_path):
    image = image_io.read_image(SAMPLE_IMAGES / "deraining" / "0.jpg").pixels
    write_image(tmp_path / "o.jpg", image)
    back = read_image(tmp_path / "o.jpg").pixels.astype(np.float64)
    assert np.abs(back - image).mean() < 1.5


def test_output_format_follows_input():
    assert image_io.output_format("PNG") == ("PNG", ".png")
    assert image_io.output_format("JPEG") == ("JPEG", ".jpg")
    assert image_io.output_format("GIF") == ("PNG", ".png")
    assert image_io.output_format("JPEG", "png") == ("PNG", ".png")
    assert image_io.output_format("PNG", "jpeg") == ("JPEG", ".jpg")
    with pytest.raises(ValueError, match="Unknown output format"):
        image_io.output_format("PNG", "exr")
