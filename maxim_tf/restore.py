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

"Reflect" is numpy's ``mode="reflect"`` (the edge pixel is not repeated). The rule
has one implementation, :mod:`maxim_tf.padding`, shared with the any-size model
and the exported signatures.

On top of that the :class:`Restorer` offers the official geometric
self-ensemble (x8: 4 rotations x horizontal flip, outputs un-transformed and
averaged) and tiling for large images: overlapping tiles of the padded image,
blended with a raised-cosine window, so peak memory follows the tile size.

Working-size rule (what bounds memory): the model's memory follows the pixels of
one model call *after padding*, not the image: ``batch x Hp x Wp`` for whole
images, ``tile batch x tile x tile`` when tiling. The :class:`Restorer` refuses,
before any model work, a call larger than ``max_pixels`` (``--max-pixels``,
default 100 MP), and an untiled image whose padding inflates it more than
``max_padding_factor`` times (default 4) to over 512 x 512 - a 3 x 100 000 strip
pads to 32 x 100 000 for the shipped models, 11 times its pixels (17 GB of
memory with them, about 5 KB per working pixel): restore such an
image with ``tile`` (memory then follows the tile batch).
"""

import math
import os

import numpy as np

from maxim_tf._utils import BACKENDS, PRECISIONS, last_output, pair
from maxim_tf.errors import MaximError

# Tolerance for float inputs slightly outside [0, 1] (e.g. a previous model output).
_FLOAT_RANGE_TOLERANCE = 1e-3
# ITU-R BT.601 luma, as Pillow's RGB -> L conversion: restored grayscale = luma of RGB output.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# "auto": shipped models run on LiteRT when their verified fp32 .tflite twin exists
# (same outputs to float precision, no TensorFlow import, no tracing), except on a
# machine with an NVIDIA GPU and TensorFlow's CUDA libraries (the [gpu] extra), where
# Keras runs them on the GPU; "keras": always Keras.
BACKEND_ENV = "MAXIM_TF_BACKEND"


class NonFiniteOutputError(MaximError, ValueError):
    """The model returned NaN or Inf values."""


class WorkingSizeError(MaximError, ValueError):
    """The padded (or tiled) size the model would see breaks the working-size rule."""


# Working-size rule (module docstring): defaults of Restorer(max_pixels=, max_padding_factor=).
DEFAULT_MAX_PIXELS = 100_000_000  # = maxim_tf.image_io.DEFAULT_MAX_PIXELS (no PIL import here)
DEFAULT_MAX_PADDING_FACTOR = 4
# An untiled working image up to this size always runs, however much padding made it
# (the shipped models take about 5 KB of memory per working pixel: 1.3 GB here).
PADDING_FREE_PIXELS = 1 << 18  # 512 x 512


# ----------------------------------------------------------------------------------------
# Model resolution: one resolver for paths, saved names and presets (maxim_tf.hub).
# ----------------------------------------------------------------------------------------

from maxim_tf.hub import load_model, resolve_model  # noqa: E402

# ----------------------------------------------------------------------------------------
# Padding (the official rule of maxim_tf.padding, applied to numpy arrays), cropping,
# ensemble transforms, tiling windows.
# All take arrays whose H and W are axes -3 and -2 ([H, W, C] or [N, H, W, C]).
# ----------------------------------------------------------------------------------------

def pad_to_even(x):
    """Reflect-pad one row at the bottom / column at the right where H / W is odd.

    Args:
        x: ``[..., H, W, C]`` array.

    Returns:
        ``[..., H + H % 2, W + W % 2, C]`` array.
    """
    return pad_for_model(x, 2)[0]  # the official rule with multiple 2 only makes sides even


def symmetric_padding(size, multiple):
    """``(before, after)`` padding of an axis of length ``size`` under the official rule.

    Args:
        size: length of the axis (for an odd size, ``after`` includes the
            even-making pixel).
        multiple: required multiple.

    Returns:
        ``(p // 2, p - p // 2)`` with ``p = (-size) % multiple`` for an even size.
    """
    from maxim_tf.padding import padding_plan

    before, padded = padding_plan(int(size), int(multiple))
    return before, padded - int(size) - before


def pad_for_model(x, multiple):
    """Apply the official padding rule (:mod:`maxim_tf.padding`) to a numpy array.

    Args:
        x: ``[H, W, C]`` or ``[N, H, W, C]`` array.
        multiple: ``(mh, mw)`` or an int.

    Returns:
        ``(padded, offset)``: the padded array and ``(top, left)``, the position
        of the original pixel (0, 0) inside it (what :func:`crop_to` needs).
    """
    mh, mw = pair(multiple)
    h, w = x.shape[-3], x.shape[-2]
    if h % mh == 0 and w % mw == 0:
        return x, (0, 0)  # already fits: no copy (matters for huge tiled images)
    import tensorflow as tf

    from maxim_tf import padding

    batch = x if x.ndim == 4 else x[None]
    with tf.device("/CPU:0"):
        padded, offset = padding.pad_to_multiple(tf.constant(batch), (mh, mw))
        padded = padded.numpy()
    return (padded if x.ndim == 4 else padded[0]), offset


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
            ``size_multiple`` attribute; or a ``.keras`` path, a saved-model
            name or a preset name such as ``"maxim-s3-denoising-sidd"``
            (downloaded and cached on first use; see :func:`maxim_tf.hub.resolve_model`).
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
        backend: "auto" (default): a shipped model given by name or path runs on
            LiteRT when ``saved_models/manifest.json`` vouches for its fp32
            ``.tflite`` twin (exported from this very ``.keras`` file, outputs
            within 1e-5) and LiteRT is installed; anything else runs on Keras.
            "keras" always uses Keras (also ``MAXIM_TF_BACKEND=keras``);
            "litert" requires the twin.
        progress: show the download of a preset that is not cached yet (stderr).
        precision: "float32" (default) or "bfloat16": run a MAXIM in Keras'
            ``mixed_bfloat16`` policy (layer-norm statistics in float32; see
            :meth:`maxim_tf.MAXIM.with_precision`). Faster only where the
            hardware has bfloat16 units; implies the Keras backend.
        max_pixels: largest working size of one model call, counted after
            padding: ``images per call x padded H x padded W``, or with tiling
            ``tiles per call x tile x tile`` (None: no bound). Larger work raises
            :class:`WorkingSizeError` before the model runs.
        max_padding_factor: refuse (:class:`WorkingSizeError`) an untiled image
            whose padded size is more than this many times its own and over
            512 x 512 pixels (a degenerate aspect ratio such as 3 x 100 000, which
            pads to 32 x 100 000); pass ``tile`` for such images (None: no bound).
        graph_form: ``"auto"`` (default: the model's own ``graph_form``, see
            :class:`maxim_tf.MAXIM`), or ``"stock"``, ``"avx2"``, ``"portable"``:
            the graph form of this Restorer's trace (same numerics up to float
            rounding, speed depends on the machine; see
            :func:`maxim_tf.fused.active_graph_form`). Anything but ``"auto"``
            implies the Keras backend.

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
        >>> restorer = maxim_tf.Restorer("maxim-s3-denoising-sidd", tile=512, overlap=64)
        >>> clean = restorer(noisy_uint8_image)  # same size, uint8
    """

    def __init__(self, model_or_path, tile=None, overlap=64, ensemble=False, batch_size=4,
                 size_multiple=None, backend="auto", progress=True, precision="float32",
                 max_pixels=DEFAULT_MAX_PIXELS, max_padding_factor=DEFAULT_MAX_PADDING_FACTOR,
                 graph_form="auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}. "
                             f"Received: backend={backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. "
                             f"Received: precision={precision!r}")
        if graph_form != "auto":
            from maxim_tf.fused import check_graph_form  # imports TensorFlow: only when asked

            check_graph_form(graph_form)
        for option, value, default in (("precision", precision, "float32"),
                                       ("graph_form", graph_form, "auto")):
            if value != default:
                if backend == "litert":
                    raise ValueError(f"{option}={value!r} runs on Keras; backend='litert' runs "
                                     f"the float32 .tflite twin")
                backend = "keras"
        self.precision = precision
        self.graph_form = graph_form
        self._model = None
        self.model_path = None
        self.backend = "keras"
        predict_fn = None
        if isinstance(model_or_path, (str, os.PathLike)):
            self.model_path = resolve_model(model_or_path, progress=progress)
            twin = _litert_twin(self.model_path, backend)
            if twin is not None:
                from maxim_tf.litert import TFLiteRunner

                self.backend = "litert"
                predict_fn = TFLiteRunner(twin[0])
                if size_multiple is None:
                    size_multiple = twin[1]
            else:
                model_or_path = load_model(self.model_path)
        elif backend == "litert":
            raise ValueError("backend='litert' needs a shipped model name or path, not a model object")
        if self.backend == "keras":
            if precision != "float32":
                model_or_path = _with_precision(model_or_path, precision)
            self._model = model_or_path
        multiple = size_multiple
        if multiple is None:
            multiple = getattr(model_or_path, "size_multiple", None)
        if multiple is None:
            raise TypeError("The model has no size_multiple attribute; pass size_multiple=(mh, mw) "
                            "(64 for the official MAXIM variants).")
        mh, mw = pair(multiple)
        if ensemble:  # rotations swap H and W: pad both to a common multiple
            mh = mw = math.lcm(mh, mw)
        self.multiple = (mh, mw)
        self.ensemble = bool(ensemble)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
        self.tile, self.overlap = self._check_tiling(tile, overlap)
        self.max_pixels = _positive_or_none(max_pixels, "max_pixels")
        self.max_padding_factor = _positive_or_none(max_padding_factor, "max_padding_factor")
        self._predict_fn = predict_fn or _make_predict_fn(model_or_path, graph_form)

    @property
    def model(self):
        """The Keras model (loaded on first access when the LiteRT backend runs the images)."""
        if self._model is None:
            self._model = load_model(self.model_path)
        return self._model

    def warm_up(self):
        """Run the model once on a smallest image (tracing, graph optimisation); returns seconds.

        The first call of a Keras model traces and optimises its graph (seconds for
        MAXIM); with H, W dynamic that happens once, so calling this first separates
        the one-off cost from the per-image compute.
        """
        import time

        start = time.perf_counter()
        mh, mw = self.multiple
        self._predict_fn(np.zeros((1, mh, mw, 3), np.float32))
        return time.perf_counter() - start

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
        self.check_working_size(x.shape)
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

    def working_size(self, shape):
        """``(images per model call, Hp, Wp, tiled)`` for an ``[N, H, W, C]`` batch.

        ``Hp x Wp`` is the padded image, or the tile when the image is tiled.
        """
        n, h, w = (int(v) for v in shape[:3])
        mh, mw = self.multiple
        hp, wp = _padded_size(h, mh), _padded_size(w, mw)
        views = n * (4 if self.ensemble else 1)  # _run: 4 views of a shape at a time
        if self.tile and (hp > self.tile or wp > self.tile):
            th, tw = min(self.tile, hp), min(self.tile, wp)
            per_call = min(self.batch_size, views * math.prod(
                len(tile_starts(length, t, self.overlap, m))
                for length, t, m in ((hp, th, mh), (wp, tw, mw))))
            return per_call, th, tw, True
        return min(self.batch_size, views), hp, wp, False

    def check_working_size(self, shape):
        """Raise :class:`WorkingSizeError` if an ``[N, H, W, C]`` batch breaks the working-size
        rule (see ``max_pixels`` and ``max_padding_factor``); nothing is computed."""
        h, w = int(shape[1]), int(shape[2])
        per_call, hp, wp, tiled = self.working_size(shape)
        what = f"{per_call} tile(s) of {hp}x{wp}" if tiled else \
            (f"{per_call} image(s) of " if per_call > 1 else "") + f"{hp}x{wp}"
        if not tiled and self.max_padding_factor and hp * wp > PADDING_FREE_PIXELS \
                and hp * wp > self.max_padding_factor * h * w:
            raise WorkingSizeError(
                f"a {h}x{w} image pads to {hp}x{wp} for the model (size multiple "
                f"{self.multiple[0]}x{self.multiple[1]}), {hp * wp / (h * w):.0f} times its "
                f"pixels ({hp * wp / 1e6:.1f} MP in one call); restore it with tiling (tile=/--tile "
                f"{_suggested_tile(self.multiple)}), memory then follows the tile")
        pixels = per_call * hp * wp
        if self.max_pixels and pixels > self.max_pixels:
            hint = "a smaller --tile or --tile-batch" if tiled else \
                f"--tile {_suggested_tile(self.multiple)} (memory then follows the tile)"
            raise WorkingSizeError(
                f"the model would see {what} after padding, {pixels / 1e6:.1f} MP in one call, "
                f"more than the limit of {self.max_pixels / 1e6:g} MP (--max-pixels); use {hint}")

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
        boxes = [(top, left) for top in tile_starts(hp, th, self.overlap, mh)
                 for left in tile_starts(wp, tw, self.overlap, mw)]
        acc = np.zeros((hp, wp, 3), dtype=np.float32)
        weight = np.zeros((hp, wp, 1), dtype=np.float32)
        group = max(1, self.batch_size)
        for i in range(0, len(boxes), group):
            chunk = boxes[i:i + group]
            tiles = np.stack([image[top:top + th, left:left + tw] for top, left in chunk])
            outs = self._run(tiles)
            for (top, left), out in zip(chunk, outs):
                win = np.outer(tile_window_1d(top, th, hp, self.overlap),
                               tile_window_1d(left, tw, wp, self.overlap))[..., None]
                acc[top:top + th, left:left + tw] += out * win
                weight[top:top + th, left:left + tw] += win
        acc /= weight
        return acc


def _padded_size(size, multiple):
    """Padded length of an axis (:func:`maxim_tf.padding.padding_plan`, without TensorFlow)."""
    even = size + size % 2
    return even + (-even) % multiple


def _suggested_tile(multiple):
    m = math.lcm(*multiple)
    return max(m, 512 // m * m)


def _positive_or_none(value, name):
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0:
        raise ValueError(f"{name} must be positive (or None: no bound). Received: {name}={value!r}")
    return number


def _litert_twin(path, backend):
    """``(tflite path, size multiple)`` when the LiteRT backend should run ``path``, else None."""
    if backend == "keras":
        return None
    from maxim_tf import litert

    twin = litert.verified_tflite(path)
    if backend == "litert":
        if twin is None:
            raise ValueError(f"backend='litert': {path} has no verified fp32 .tflite twin "
                             f"(shipped models have one; build one for another .keras file with "
                             f"`maxim-tf models --prepare {path}`); use backend='keras'")
        litert._litert()  # a clear error naming the extra if LiteRT is missing
        return twin
    if twin is None or os.environ.get(BACKEND_ENV, "auto") == "keras" or not litert.litert_available():
        return None
    if cuda_gpu_present():
        return None
    return twin


def cuda_gpu_present():
    """True when an NVIDIA driver device and TensorFlow's pip CUDA libraries are both
    present, i.e. TensorFlow will most likely run on a GPU. Checked without importing
    TensorFlow (the LiteRT path exists to skip that import)."""
    import importlib.util

    return os.path.exists("/dev/nvidiactl") and importlib.util.find_spec("nvidia") is not None \
        and any(importlib.util.find_spec(f"nvidia.{lib}") is not None for lib in ("cudnn", "cublas"))


def _with_precision(model, precision):
    """``model`` computing in ``precision`` (a MAXIM; other models are refused)."""
    convert = getattr(model, "with_precision", None)
    if convert is None:
        raise ValueError(f"precision={precision!r} needs a MAXIM model (with_precision); "
                         f"got {type(model).__name__}")
    return convert(precision)


def _make_predict_fn(model, graph_form="auto"):
    """A function numpy NHWC float32 -> numpy NHWC float32 for ``model``."""
    import keras

    if isinstance(model, keras.Model):
        import tensorflow as tf

        # One traced function per model and graph form, shared by all its Restorers:
        # tracing MAXIM takes seconds, and with H, W, N dynamic one trace serves every
        # shape. Stored with object.__setattr__ so Keras does not track it as model
        # state (MAXIM's graph_form setter drops it).
        traced = getattr(model, "_maxim_restore_predict", None)
        if traced is None:
            traced = {}
            object.__setattr__(model, "_maxim_restore_predict", traced)
        if graph_form not in traced:
            from maxim_tf.fused import graph_form_scope
            from maxim_tf.model import padded_inputs

            def restore_padded(x):
                # The Restorer pads to the multiple itself; its graph_form (unless "auto")
                # wins over the model's.
                with padded_inputs(), graph_form_scope(graph_form):
                    return last_output(model(x, training=False))

            fn = tf.function(restore_padded,
                             input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
            traced[graph_form] = lambda x: fn(tf.constant(x)).numpy()
        return traced[graph_form]
    return lambda x: np.asarray(last_output(model(x)), dtype=np.float32)
