"""Restore images of any size with a MAXIM model: ``maxim_tf.Restorer``.

Padding rule (the official ``maxim/run_eval.py`` evaluation, exactly):

1. an odd height (width) is made even by reflect-padding one row (column) at
   the bottom (right);
2. each side is then reflect-padded symmetrically, ``p // 2`` before and
   ``p - p // 2`` after, where ``p = (-even_size) % multiple`` and ``multiple``
   is the model's size multiple (64 for the official variants; with
   self-ensemble the least common multiple of both axes, so that rotated
   images still fit);
3. the model runs on the padded image;
4. the output is cropped back to exactly the input size, starting at the
   first padded offset (``p // 2``) - the extra even-making row/column is
   dropped.

"Reflect" is numpy's ``mode="reflect"`` (the edge pixel is not repeated).

On top of that the :class:`Restorer` offers the official geometric
self-ensemble (x8: 4 rotations x horizontal flip, outputs un-transformed and
averaged) and tiling for large images: overlapping tiles of the padded image,
blended with a raised-cosine window, so peak memory follows the tile size.
"""

import math
import os
import pathlib

import numpy as np

from maxim_tf.errors import MaximError, ModelFileError

# Tolerance for float inputs slightly outside [0, 1] (e.g. a previous model output).
_FLOAT_RANGE_TOLERANCE = 1e-3
# ITU-R BT.601 luma, as Pillow's RGB -> L conversion: restored grayscale = luma of RGB output.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MODEL_DIR_ENV = "MAXIM_TF_MODEL_DIR"


class NonFiniteOutputError(MaximError, ValueError):
    """The model returned NaN or Inf values."""


# ----------------------------------------------------------------------------------------
# Model resolution
# ----------------------------------------------------------------------------------------

def model_dirs():
    """Folders searched for named models: ``$MAXIM_TF_MODEL_DIR`` (if set), then ``saved_models/``.

    Returns:
        List of ``pathlib.Path`` (existing or not), in search order.
    """
    dirs = []
    if os.environ.get(MODEL_DIR_ENV):
        dirs.append(pathlib.Path(os.environ[MODEL_DIR_ENV]))
    # A source checkout (or editable install) keeps them in <repo>/saved_models; a wheel
    # installs the same files as the maxim_tf.saved_models package.
    for d in (pathlib.Path(__file__).resolve().parents[1] / "saved_models",
              pathlib.Path(__file__).resolve().parent / "saved_models"):
        if d not in dirs:
            dirs.append(d)
    return dirs


def available_models():
    """Names of the ``<name>.keras`` files in :func:`model_dirs`, sorted."""
    names = set()
    for d in model_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.keras"))
    return sorted(names)


def resolve_model(name_or_path):
    """Find the ``.keras`` file for a model path or name.

    Args:
        name_or_path: a path to a ``.keras`` file, or a name looked up as
            ``<name>.keras`` in :func:`model_dirs` (e.g. ``"denoising_sidd"``).

    Returns:
        ``pathlib.Path`` of an existing ``.keras`` file.

    Raises:
        FileNotFoundError: listing the names that are available.
    """
    text = os.fspath(name_or_path)
    path = pathlib.Path(text).expanduser()
    if path.is_file():
        if path.suffix != ".keras":
            raise ModelFileError(f"Model file {path} is not a .keras file (save it with "
                                 f"model.save('x.keras'))")
        return path
    looks_like_path = path.suffix == ".keras" or os.sep in text
    if not looks_like_path:
        for d in model_dirs():
            candidate = d / f"{text}.keras"
            if candidate.is_file():
                return candidate
    names = available_models()
    listing = ", ".join(names) if names else "none"
    where = " or ".join(str(d) for d in model_dirs())
    raise FileNotFoundError(
        f"Model {text!r} not found: not an existing .keras file, and no {text}.keras in {where}. "
        f"Available names: {listing}.")


def load_model(name_or_path):
    """Load a MAXIM ``.keras`` model by path or name (see :func:`resolve_model`).

    Returns:
        The Keras model (``size_multiple`` attribute set by ``maxim_tf.MAXIM``).

    Raises:
        FileNotFoundError: no such file or name.
        maxim_tf.errors.ModelFileError: the file is not a usable model.
    """
    from maxim_tf.modelfile import load_keras_model

    return load_keras_model(resolve_model(name_or_path))


# ----------------------------------------------------------------------------------------
# Pure helpers: padding, cropping, ensemble transforms, tiling windows.
# All take arrays whose H and W are axes -3 and -2 ([H, W, C] or [N, H, W, C]).
# ----------------------------------------------------------------------------------------

def _pad(x, before_h, after_h, before_w, after_w):
    widths = [(0, 0)] * (x.ndim - 3) + [(before_h, after_h), (before_w, after_w), (0, 0)]
    return np.pad(x, widths, mode="reflect")


def pad_to_even(x):
    """Reflect-pad one row at the bottom / column at the right where H / W is odd.

    Args:
        x: ``[..., H, W, C]`` array.

    Returns:
        ``[..., H + H % 2, W + W % 2, C]`` array.
    """
    h, w = x.shape[-3], x.shape[-2]
    return _pad(x, 0, h % 2, 0, w % 2)


def symmetric_padding(size, multiple):
    """``(before, after)`` padding that makes ``size`` a multiple of ``multiple``.

    Args:
        size: length of the axis.
        multiple: required multiple.

    Returns:
        ``(p // 2, p - p // 2)`` with ``p = (-size) % multiple`` (0, 0 if it divides).
    """
    p = (-size) % multiple
    return p // 2, p - p // 2


def pad_for_model(x, multiple):
    """Apply the official padding rule (see module docstring) to ``x``.

    Args:
        x: ``[..., H, W, C]`` array.
        multiple: ``(mh, mw)`` or an int.

    Returns:
        ``(padded, offset)``: the padded array and ``(top, left)``, the position
        of the original pixel (0, 0) inside it (what :func:`crop_to` needs).
    """
    mh, mw = _pair(multiple)
    h, w = x.shape[-3], x.shape[-2]
    (top, bottom), (left, right) = (symmetric_padding(h + h % 2, mh), symmetric_padding(w + w % 2, mw))
    if h % 2 == w % 2 == top == bottom == left == right == 0:
        return x, (0, 0)  # already fits: no copy (matters for huge tiled images)
    x = pad_to_even(x)
    return _pad(x, top, bottom, left, right), (top, left)


def crop_to(y, offset, size):
    """Crop a padded output back: ``y[..., top:top + H, left:left + W, :]``.

    Args:
        y: ``[..., Hp, Wp, C]`` array.
        offset: ``(top, left)`` from :func:`pad_for_model`.
        size: ``(H, W)`` of the original image.

    Returns:
        ``[..., H, W, C]`` view.
    """
    (top, left), (h, w) = offset, size
    return y[..., top:top + h, left:left + w, :]


def ensemble_transform(x, k):
    """Geometric transform ``k`` (0..7) of NHWC ``x``: flip W if ``k >= 4``, then rotate ``k % 4`` x 90 deg.

    The same eight transforms, in the same order, as the official ``augment_image``.
    """
    if k >= 4:
        x = x[:, :, ::-1]
    return np.rot90(x, k=k % 4, axes=(1, 2))


def ensemble_inverse(y, k):
    """Undo :func:`ensemble_transform` ``k`` on NHWC ``y``."""
    y = np.rot90(y, k=-(k % 4), axes=(1, 2))
    return y[:, :, ::-1] if k >= 4 else y


def tile_starts(length, tile, overlap, align=1):
    """Start offsets of overlapping tiles covering ``[0, length)``.

    Starts are multiples of ``align`` (the model's size multiple: MAXIM's
    block/grid partition of a tile then coincides with that of the whole
    image; unaligned tiles change the model's output far more than tiling
    itself), spread evenly, with consecutive tiles overlapping by at least
    ``overlap``; the first starts at 0 and the last ends at ``length``.

    Args:
        length: axis length (a multiple of ``align``).
        tile: tile length (a multiple of ``align``); if >= ``length`` one tile covers the axis.
        overlap: minimum overlap, 0 <= overlap <= tile - align.
        align: granularity of the starts.

    Returns:
        List of int starts, increasing.
    """
    if tile >= length:
        return [0]
    stride_units = (tile - overlap) // align  # largest aligned stride keeping the overlap
    if stride_units < 1:
        raise ValueError(f"overlap must be <= tile - {align}. Received: tile={tile}, overlap={overlap}")
    span_units = (length - tile) // align
    gaps = math.ceil(span_units / stride_units)
    return [align * round(i * span_units / gaps) for i in range(gaps + 1)]


def blend_ramp(n):
    """Raised-cosine ramp of ``n`` strictly positive weights rising towards 1.

    A ramp and its mirror image sum to exactly 1 at every position, so two
    tiles overlapping by ``n`` pixels form a partition of unity (no seam).
    """
    i = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / n)).astype(np.float32)


def tile_window_1d(start, tile, length, overlap):
    """1-D blending weights of one tile: ramps on sides shared with a neighbour, 1 elsewhere.

    Args:
        start: tile start; the tile covers ``[start, start + tile)``.
        tile: tile length.
        length: axis length (sides at 0 and ``length`` are image borders, kept at 1).
        overlap: ramp length (0 gives a flat window: hard seams).

    Returns:
        float32 array of ``tile`` weights in (0, 1].
    """
    w = np.ones(tile, dtype=np.float32)
    n = min(overlap, tile)
    if n == 0:
        return w
    ramp = blend_ramp(n)
    if start > 0:
        w[:n] = np.minimum(w[:n], ramp)
    if start + tile < length:
        w[tile - n:] = np.minimum(w[tile - n:], ramp[::-1])
    return w


def _pair(v):
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


# ----------------------------------------------------------------------------------------
# Input / output conversion
# ----------------------------------------------------------------------------------------

def _to_float(images):
    """Validate and convert an NHWC batch (C = 1 or 3) to float32 in [0, 1]."""
    dtype = images.dtype
    if dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if dtype == np.uint16:
        return images.astype(np.float32) / 65535.0
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"Images must be uint8, uint16 or float in [0, 1]. Received: dtype={dtype}")
    x = images.astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(np.size(x) - np.count_nonzero(finite))
        raise ValueError(f"Image contains NaN or Inf values ({bad} of {x.size} values); "
                         f"replace them (e.g. numpy.nan_to_num) before restoring.")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_FLOAT_RANGE_TOLERANCE or hi > 1 + _FLOAT_RANGE_TOLERANCE:
        raise ValueError(f"Float images must be in [0, 1]. Received values in [{lo:g}, {hi:g}] "
                         f"(divide 8-bit data by 255, or clip).")
    return x


def _from_float(y, dtype):
    """Convert restored float32 in [0, 1] to ``dtype`` (integers are clipped and rounded).

    Works in place on ``y`` (a fresh array owned by the caller) to keep peak memory low.
    Float dtypes (float16, float32, float64) get the model's values unclipped.
    """
    if dtype not in (np.uint8, np.uint16):
        return y.astype(dtype, copy=False)
    np.clip(y, 0.0, 1.0, out=y)
    y *= 255.0 if dtype == np.uint8 else 65535.0
    np.rint(y, out=y)
    return y.astype(dtype)


def _nested_list_array(images):
    """A nested Python list of numbers as an array, or None if ``images`` is a list of images."""
    if any(isinstance(item, np.ndarray) or hasattr(item, "__array__") for item in images):
        return None  # a list of images, each restored on its own
    try:
        x = np.asarray(images)
    except ValueError:
        x = None  # ragged
    if x is None or x.dtype == object or x.ndim < 2:
        raise TypeError("Nested lists must hold numbers in the shape of one image [H, W], "
                        "[H, W, C] or a batch [N, H, W, C]; pass NumPy arrays for images of "
                        "different sizes.")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"A nested list of {x.dtype.name} values is ambiguous (8-bit or 16-bit?): "
                        f"pass np.asarray(images, dtype=np.uint8) (or uint16), or floats in "
                        f"[0, 1].")
    return x


def _as_batch(images):
    """Normalise an image or batch to NHWC; returns (batch, un-batching info)."""
    x = np.asarray(images)
    squeeze_channel = x.ndim == 2
    if squeeze_channel:
        x = x[..., None]
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"Expected an image [H, W], [H, W, C] or a batch [N, H, W, C] with C in "
                         f"1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA). Received: shape={np.shape(images)}")
    if 0 in x.shape:
        raise ValueError(f"Image has no pixels. Received: shape={np.shape(images)}")
    return x, (single, squeeze_channel)


# ----------------------------------------------------------------------------------------
# The Restorer
# ----------------------------------------------------------------------------------------

class Restorer:
    """Restore images of any size with a MAXIM model (official padding; ensemble; tiling).

    Args:
        model_or_path: a Keras model / any callable mapping float32 NHWC in
            [0, 1] to NHWC (or a list whose last element is the image) with a
            ``size_multiple`` attribute; or a ``.keras`` path or saved-model
            name (see :func:`resolve_model`).
        tile: tile size in pixels (multiple of the model's size multiple), or
            None to run whole images. Tiling applies when the padded image is
            larger than the tile; peak memory then follows ``tile`` and
            ``batch_size``, not the image.
        overlap: minimum overlap between tiles in pixels (0 <= overlap <=
            tile - size multiple); tiles start at multiples of the size
            multiple, and overlaps are blended with a raised-cosine window.
        ensemble: geometric self-ensemble x8 (flips x rotations; 8x the compute).
        batch_size: images, tiles or ensemble views per model call.
        size_multiple: override the model's ``size_multiple`` (int or (mh, mw)).

    Call it on an ``[H, W]``, ``[H, W, C]`` image or ``[N, H, W, C]`` batch,
    C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), of dtype uint8,
    uint16 or float in [0, 1]; or on a list of such images (of any sizes).
    The result has the input's shape and dtype (uint8, uint16, float16, float32
    or float64): integer outputs are clipped and rounded; float outputs are the
    model's raw values (not clipped, as the official evaluation scores them).
    A nested Python list of floats (``image.tolist()`` of a float image) is
    taken as one array; nested lists of integers are refused as ambiguous
    (8 or 16 bit?). A model output with NaN or Inf raises
    :class:`NonFiniteOutputError`. Gray images run as RGB and come back as
    BT.601 luma; an alpha channel is passed through untouched.

    Example:
        >>> restorer = maxim_tf.Restorer("denoising_sidd", tile=512, overlap=64)
        >>> clean = restorer(noisy_uint8_image)  # same size, uint8
    """

    def __init__(self, model_or_path, tile=None, overlap=64, ensemble=False, batch_size=4,
                 size_multiple=None):
        if isinstance(model_or_path, (str, os.PathLike)):
            model_or_path = load_model(model_or_path)
        self.model = model_or_path
        multiple = size_multiple
        if multiple is None:
            multiple = getattr(model_or_path, "size_multiple", None)
        if multiple is None:
            raise TypeError("The model has no size_multiple attribute; pass size_multiple=(mh, mw) "
                            "(64 for the official MAXIM variants).")
        mh, mw = _pair(multiple)
        if ensemble:  # rotations swap H and W: pad both to a common multiple
            mh = mw = math.lcm(mh, mw)
        self.multiple = (mh, mw)
        self.ensemble = bool(ensemble)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
        self.tile, self.overlap = self._check_tiling(tile, overlap)
        self._predict_fn = _make_predict_fn(model_or_path)

    def _check_tiling(self, tile, overlap):
        overlap = int(overlap or 0)
        if tile is None or tile == 0:
            return None, overlap
        tile = int(tile)
        mh, mw = self.multiple
        if tile <= 0 or tile % mh or tile % mw:
            raise ValueError(f"tile must be a positive multiple of the model's size multiple "
                             f"{self.multiple}. Received: tile={tile}")
        if not 0 <= overlap <= tile - max(mh, mw):
            raise ValueError(f"overlap must satisfy 0 <= overlap <= tile - {max(mh, mw)} (the size "
                             f"multiple). Received: overlap={overlap}, tile={tile}")
        return tile, overlap

    # -- public -------------------------------------------------------------------------

    def __call__(self, images):
        """Restore an image, a batch, or a list of images; see the class docstring."""
        if isinstance(images, (list, tuple)):
            array = _nested_list_array(images)
            if array is None:
                return [self(image) for image in images]
            images = array
        batch, (single, squeeze_channel) = _as_batch(images)
        channels = batch.shape[-1]
        has_alpha = channels in (2, 4)
        color = batch[..., :-1] if has_alpha else batch
        restored = self.restore_float(_to_float(color))
        if color.shape[-1] == 1:
            restored = (restored @ _LUMA)[..., None]
        out = _from_float(restored, batch.dtype)
        if has_alpha:
            out = np.concatenate([out, batch[..., -1:].astype(out.dtype)], axis=-1)
        if single:
            out = out[0]
        if squeeze_channel:
            out = out[..., 0]
        return out

    def restore_float(self, x):
        """Restore a float32 NHWC batch in [0, 1] (C = 1 or 3).

        Args:
            x: ``[N, H, W, C]`` float32 array in [0, 1].

        Returns:
            A new ``[N, H, W, 3]`` float32 array: the model's output, not clipped.

        Raises:
            NonFiniteOutputError: the model gave NaN or Inf (corrupt weights, or an
                overflow in reduced precision): never returned as an image.
        """
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        h, w = x.shape[1], x.shape[2]
        padded, offset = pad_for_model(x, self.multiple)
        if self.tile and (padded.shape[1] > self.tile or padded.shape[2] > self.tile):
            tiled = [self._run_tiled(image)[None] for image in padded]
            y = tiled[0] if len(tiled) == 1 else np.concatenate(tiled)
        else:
            y = self._run(padded)
        y = np.ascontiguousarray(crop_to(y, offset, (h, w)))
        finite = np.isfinite(y)
        if not finite.all():
            bad = y.size - int(np.count_nonzero(finite))
            raise NonFiniteOutputError(
                f"the model output is not finite ({bad} of {y.size} values are NaN or Inf): its "
                f"weights may be corrupt (reconvert or retrain it)")
        return y

    # -- internals ----------------------------------------------------------------------

    def _predict(self, x):
        """Model on an NHWC batch of one shape, ``batch_size`` at a time."""
        outs = [self._predict_fn(np.ascontiguousarray(x[i:i + self.batch_size]))
                for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs, axis=0)

    def _run(self, x):
        """Model (with self-ensemble if enabled) on a padded NHWC batch."""
        if not self.ensemble:
            return self._predict(x)
        n = len(x)
        # Views with the same shape go through the model together: k even keep H x W, odd swap.
        acc = np.zeros(x.shape, dtype=np.float32)
        for ks in ((0, 2, 4, 6), (1, 3, 5, 7)):
            views = np.concatenate([ensemble_transform(x, k) for k in ks], axis=0)
            outs = self._predict(views)
            for j, k in enumerate(ks):
                acc += ensemble_inverse(outs[j * n:(j + 1) * n], k)
        return acc / 8.0

    def _run_tiled(self, image):
        """Restore one padded [Hp, Wp, 3] image by blended overlapping tiles."""
        hp, wp = image.shape[:2]
        th, tw = min(self.tile, hp), min(self.tile, wp)
        mh, mw = self.multiple
        boxes = [(t, l) for t in tile_starts(hp, th, self.overlap, mh)
                 for l in tile_starts(wp, tw, self.overlap, mw)]
        acc = np.zeros((hp, wp, 3), dtype=np.float32)
        weight = np.zeros((hp, wp, 1), dtype=np.float32)
        group = max(1, self.batch_size)
        for i in range(0, len(boxes), group):
            chunk = boxes[i:i + group]
            tiles = np.stack([image[t:t + th, l:l + tw] for t, l in chunk])
            outs = self._run(tiles)
            for (t, l), out in zip(chunk, outs):
                win = np.outer(tile_window_1d(t, th, hp, self.overlap),
                               tile_window_1d(l, tw, wp, self.overlap))[..., None]
                acc[t:t + th, l:l + tw] += out * win
                weight[t:t + th, l:l + tw] += win
        acc /= weight
        return acc


def _last_output(y):
    """The restored image from a model output (a tensor, or a list ending with it)."""
    while isinstance(y, (list, tuple)):
        y = y[-1]
    return y


def _make_predict_fn(model):
    """A function numpy NHWC float32 -> numpy NHWC float32 for ``model``."""
    import keras

    if isinstance(model, keras.Model):
        import tensorflow as tf

        # One traced function per model, shared by all its Restorers: tracing MAXIM takes
        # seconds, and with H, W, N dynamic one trace serves every shape. Stored with
        # object.__setattr__ so Keras does not track it as model state.
        cached = getattr(model, "_maxim_restore_predict", None)
        if cached is None:
            fn = tf.function(lambda x: _last_output(model(x, training=False)),
                             input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
            cached = lambda x: fn(tf.constant(x)).numpy()  # noqa: E731
            object.__setattr__(model, "_maxim_restore_predict", cached)
        return cached
    return lambda x: np.asarray(_last_output(model(x)), dtype=np.float32)
