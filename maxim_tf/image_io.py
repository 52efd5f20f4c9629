"""Hardened image reading and writing for restoration (Pillow; TF for 16-bit PNG).

Reading (:func:`read_image`) gives the colour pixels and, separately, the alpha
channel, upright (EXIF orientation applied), with:

* grayscale kept grayscale (1 channel) and RGB as RGB (3 channels);
* palette, CMYK, YCbCr, LAB, HSV and bilevel images converted (not rejected);
* 8-bit images as uint8 and 16-bit images as uint16 (16-bit RGB(A) PNGs are
  decoded with ``tf.io.decode_png``: Pillow reduces them to 8 bits);
* a pixel limit checked from the header before any decoding (decompression
  bombs; default 100 megapixels, configurable);
* one :class:`ImageReadError` naming the file and the problem for missing,
  empty, truncated, corrupt or non-image files.

Writing (:func:`write_image`) is atomic: the encoded file goes to a temporary
file in the destination folder, which then replaces the target with
``os.replace``, so an interrupted or failed write never leaves half a file.
"""

import contextlib
import dataclasses
import os

import numpy as np
from PIL import Image

from maxim_tf import fileio
from maxim_tf.errors import MaximError

DEFAULT_MAX_PIXELS = 100_000_000
JPEG_QUALITY = 95

# Output formats Pillow writes that keep the input's format; others become PNG.
_KEEP_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
_FORMAT_ALIASES = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "bmp": "BMP", "tiff": "TIFF",
                   "tif": "TIFF", "webp": "WEBP"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# Pillow mode -> mode to convert to before reading pixels.
_CONVERT = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB",
            "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "I;16L": "I;16", "I;16B": "I;16",
            "I;16N": "I;16"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageIOError(MaximError):
    """An image file could not be read or written; the message names file and problem."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ImageReadError(ImageIOError):
    """The file is missing, empty, too large, truncated, corrupt or not an image."""


class ImageWriteError(ImageIOError):
    """The image could not be encoded or saved at the requested path."""


@dataclasses.dataclass
class LoadedImage:
    """Pixels of one image file, upright, with the alpha channel kept apart.

    Attributes:
        pixels: ``[H, W, 1]`` (grayscale) or ``[H, W, 3]`` (colour), uint8 or uint16.
        alpha: ``[H, W, 1]`` alpha of the same dtype, or None.
        format: Pillow format name of the file ("PNG", "JPEG", ...).
        path: the file read.
        icc_profile: embedded ICC profile bytes, or None (written back as is).
        frames: frames (animated GIF/WebP/PNG) or pages (TIFF) in the file; only the
            first is read.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    format: str
    path: str
    icc_profile: bytes | None = None
    frames: int = 1

    @property
    def grayscale(self):
        return self.pixels.shape[-1] == 1

    @property
    def bit_depth(self):
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def megapixels(self):
        return self.pixels.shape[0] * self.pixels.shape[1] / 1e6

    def with_alpha(self):
        """Return the pixels with the alpha channel appended (if any)."""
        if self.alpha is None:
            return self.pixels
        return np.concatenate([self.pixels, self.alpha], axis=-1)


@contextlib.contextmanager
def _own_pixel_limit():
    """Disable Pillow's global bomb check: :func:`read_image` applies its own limit."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_file(path):
    """Raise ImageReadError for a missing path, a folder or an empty file."""
    if not os.path.exists(path):
        raise ImageReadError(path, "no such file")
    if os.path.isdir(path):
        raise ImageReadError(path, "is a directory, not an image file")
    if os.path.getsize(path) == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")


def _png_bit_depth(path):
    """Bit depth from a PNG's IHDR chunk, or None if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24]


# EXIF orientation tag value -> the numpy operation that makes the image upright
# (the same eight transposes as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, k=1),
}


def apply_orientation(array, orientation):
    """Make ``array`` ([H, W, C]) upright for an EXIF orientation value 1-8.

    Args:
        array: pixels as stored in the file.
        orientation: EXIF tag 0x0112 value; None, 1 or unknown values leave it as is.

    Returns:
        A contiguous array, upright.
    """
    op = _ORIENT.get(orientation)
    return np.ascontiguousarray(op(array) if op else array)


def _split_alpha(array, mode):
    """Split an [H, W, C] array of Pillow ``mode`` into (colour, alpha or None)."""
    if array.ndim == 2:
        array = array[..., None]
    if mode in ("LA", "RGBA") or array.shape[-1] in (2, 4):
        return array[..., :-1], array[..., -1:]
    return array, None


def _decode_pillow(im):
    """Pixels of an open Pillow image as (uint8/uint16 [H, W, C] array, mode)."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in _CONVERT:
        im = im.convert(_CONVERT[im.mode])
    if im.mode == "I":
        array = np.asarray(im)
        if array.min() < 0 or array.max() > 65535:
            raise ValueError("32-bit integer pixels outside the 16-bit range are not supported")
        return array.astype(np.uint16), "I;16"
    if im.mode == "F":
        raise ValueError("floating-point (mode F) images are not supported")
    array = np.asarray(im)
    if im.mode == "I;16":
        array = array.astype(np.uint16)
    return array, im.mode


def _decode_png16(path):
    """Decode a 16-bit PNG with TensorFlow (Pillow keeps only 8 bits of 16-bit RGB)."""
    import tensorflow as tf

    with open(path, "rb") as f:
        data = f.read()
    try:
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(f"corrupt 16-bit PNG data ({e.message.splitlines()[0]})") from e


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Read an image file for restoration.

    Args:
        path: file to read.
        max_pixels: refuse images whose header claims more pixels than this
            (decompression-bomb guard); None disables the check.

    Returns:
        A :class:`LoadedImage` (upright, alpha apart, uint8 or uint16).

    Raises:
        ImageReadError: naming the file and the problem.
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        with _own_pixel_limit(), Image.open(path) as im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageReadError(
                    path, f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels, more "
                          f"than the limit of {max_pixels / 1e6:g} megapixels (possible "
                          f"decompression bomb; raise the limit with --max-pixels if it is genuine)")
            fmt, icc = im.format, im.info.get("icc_profile")
            if im.mode in ("CMYK", "LAB", "HSV"):
                icc = None  # a profile for another colour space would mislabel the RGB output
            orientation = im.getexif().get(0x0112)
            frames = int(getattr(im, "n_frames", 1) or 1)
            im.load()  # decode fully here so truncation is detected now
            if fmt == "PNG" and _png_bit_depth(path) == 16:
                array, mode = _decode_png16(path), None
            else:
                array, mode = _decode_pillow(im)
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError as e:
        raise ImageReadError(path, "not a recognised image (contents match no image format "
                                   "Pillow can read)") from e
    except MemoryError as e:
        raise ImageReadError(path, "not enough memory to decode this image") from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, zlib.error, ... for bad data
        raise ImageReadError(path, f"truncated or corrupt image data ({type(e).__name__}: {e})") from e
    if height == 0 or width == 0:
        raise ImageReadError(path, "image has no pixels")
    pixels, alpha = _split_alpha(apply_orientation(array, orientation), mode)
    return LoadedImage(pixels=pixels, alpha=alpha, format=fmt or "PNG", path=path, icc_profile=icc,
                       frames=frames)


def rgb_float(image, scale=1.0, dtype=np.float32):
    """The colour pixels of a :class:`LoadedImage` as float RGB with white = ``scale``
    (alpha dropped, grayscale repeated to 3 channels, 16-bit scaled like 8-bit)."""
    white = 65535.0 if image.bit_depth == 16 else 255.0
    rgb = image.pixels.astype(dtype) * dtype(scale / white)
    return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


def to_uint8(image, scale=1.0):
    """A float image as the 8-bit image users get: ``image * 255 / scale`` clipped to
    [0, 255] and rounded (the one float -> uint8 conversion of maxim_tf).

    Args:
        image: float array, in [0, 1] (``scale=1``) or on [0, 255] (``scale=255``).
        scale: the value of white in ``image``.
    """
    return np.rint(np.clip(np.asarray(image, np.float64) * (255.0 / scale), 0.0, 255.0)
                   ).astype(np.uint8)


def output_format(input_format, requested=None):
    """Choose the output format and file extension.

    Args:
        input_format: Pillow format name of the input ("PNG", "JPEG", ...).
        requested: None or "same" to follow the input, else "png", "jpeg", ...

    Returns:
        ``(format_name, extension)``, e.g. ``("JPEG", ".jpg")``. Inputs in
        formats without a writer here (GIF, ...) give PNG.
    """
    if requested not in (None, "same"):
        key = str(requested).lower()
        if key not in _FORMAT_ALIASES:
            raise ValueError(f"Unknown output format {requested!r}; choose one of "
                             f"{sorted(set(_FORMAT_ALIASES))} or 'same'")
        fmt = _FORMAT_ALIASES[key]
    else:
        fmt = input_format if input_format in _KEEP_FORMATS else "PNG"
    return fmt, _KEEP_FORMATS[fmt]


def _to_pillow(array):
    """An 8-bit [H, W, C] array (C = 1..4) as a Pillow image."""
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode=mode)


def _encode(array, fmt, quality, icc_profile):
    """Encode ``array`` ([H, W, C] uint8/uint16) as bytes in format ``fmt``."""
    import io

    if array.dtype == np.uint16 and fmt == "PNG":
        import tensorflow as tf

        return tf.io.encode_png(array).numpy()
    if array.dtype == np.uint16:  # formats without 16-bit colour here: keep 8 bits
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if fmt == "JPEG" and array.shape[-1] in (2, 4):
        raise ValueError("JPEG cannot store an alpha channel; write PNG instead (--image-format png)")
    options = {"quality": quality, "subsampling": 0} if fmt in ("JPEG", "WEBP") else {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    _to_pillow(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    Args:
        path: destination file.
        data: bytes to write.

    Raises:
        ImageWriteError: the folder is missing or not writable, or the write failed;
            no partial file is left behind.
    """
    try:
        fileio.atomic_write_bytes(path, data)
    except OSError as e:
        raise ImageWriteError(os.fspath(path), f"cannot write ({e.strerror or e})") from e


def encode_image(pixels, alpha=None, format="PNG", quality=JPEG_QUALITY, icc_profile=None,
                 path="<image>"):
    """Encode an image as the bytes of a file in ``format`` (what :func:`write_image` writes).

    Args:
        pixels: ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` uint8 or uint16 array.
        alpha: optional ``[H, W]``/``[H, W, 1]`` alpha of the same dtype, attached as is.
        format: Pillow format name ("PNG", "JPEG", ...).
        quality: JPEG/WebP quality (4:4:4 chroma, no subsampling).
        icc_profile: ICC profile bytes to embed, or None.
        path: the destination, named in error messages only.

    Returns:
        The encoded file as ``bytes``.

    Raises:
        ImageWriteError: naming ``path`` and the problem.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if alpha is not None:
        alpha = np.asarray(alpha).reshape(pixels.shape[:2] + (1,)).astype(pixels.dtype)
        pixels = np.concatenate([pixels, alpha], axis=-1)
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim != 3 or pixels.shape[-1] > 4:
        raise ImageWriteError(path, f"cannot encode an array of dtype {pixels.dtype} and shape "
                                    f"{pixels.shape}; expected uint8/uint16 [H, W, 1..4]")
    try:
        return bytes(_encode(pixels, format, quality, icc_profile))
    except (ValueError, OSError, KeyError) as e:
        raise ImageWriteError(path, f"cannot encode as {format} ({e})") from e


def write_image(path, pixels, alpha=None, format=None, quality=JPEG_QUALITY, icc_profile=None):
    """Encode and atomically write an image.

    Args:
        path: destination file.
        pixels: ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` uint8 or uint16 array.
        alpha: optional ``[H, W]``/``[H, W, 1]`` alpha of the same dtype, attached as is.
        format: Pillow format name; default from the extension of ``path`` (PNG if unknown).
        quality: JPEG/WebP quality (4:4:4 chroma, no subsampling).
        icc_profile: ICC profile bytes to embed, or None.

    Raises:
        ImageWriteError: naming the file and the problem.
    """
    path = os.fspath(path)
    if format is None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        format = _FORMAT_ALIASES.get(ext, "PNG")
    atomic_write_bytes(path, encode_image(pixels, alpha, format, quality, icc_profile, path=path))
