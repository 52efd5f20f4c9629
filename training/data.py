"""tf.data input pipelines for MAXIM training.

Three sources, picked by ``data["source"]`` in the training config:

* ``"paired_folder"``: ``root/input/*`` and ``root/target/*`` with matching
  file names (stems), read directly.
* ``"tfds"``: the :mod:`maxim_tf.training.tfds_paired` builder over the same
  layout (prepared once, offline, from a manual dir).
* ``"synthetic"``: any folder of clean photos; the input is made on the fly by
  :mod:`maxim_tf.training.degrade`.

Determinism and exact resume: the pipeline is a stream of examples numbered by
a global counter ``c = step * global_batch + position``. The example order of
each epoch is a stateless permutation of (seed, epoch); every random choice for
example ``c`` (crop, flips, rotation, degradation, MixUp) is seeded with
(seed, c). A run resumed at step ``k`` skips the first ``k * global_batch``
counters *before* any image is decoded and sees exactly the same batches.

Distribution: with ``tf.distribute`` the stream is split between input
pipelines (workers) by position in the global batch, so the set of examples
of a global batch is the same whatever the number of replicas and workers.

Bad input (checked before training starts): input/target name mismatches or
size mismatches raise ``DataError`` listing the first offenders; an empty
source raises ``DataError``; images the pipeline's own decoder cannot read,
or too small for the crop (see :func:`min_image_side`), are skipped and
counted in a warning. A file that becomes unreadable during training is
dropped (with a warning) instead of stopping the run, but
:data:`MAX_CONSECUTIVE_DROPS` dropped examples in a row stop it with a
``DataError`` instead of spinning forever.
"""

import concurrent.futures
import logging
import os
import pathlib

import numpy as np
import tensorflow as tf

from maxim_tf import image_io
from maxim_tf.errors import MaximError
from maxim_tf.training import degrade as degrade_lib

log = logging.getLogger("maxim_tf.training")

IMAGE_EXTENSIONS = image_io.IMAGE_EXTENSIONS
# tf.io.decode_image handles these; the others are read with Pillow.
_TF_DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_LISTED = 5
# Examples dropped in a row (undecodable files) after which training stops with a DataError.
MAX_CONSECUTIVE_DROPS = 64
_DROPS_MARKER = "maxim_tf: consecutive training examples failed"


class DataError(MaximError, ValueError):
    """Training data that cannot be used (mismatched pairs, empty folders...)."""


# ---------------------------------------------------------------- file scanning

def list_images(folder):
    """Sorted image files under ``folder`` (recursive)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DataError(f"Image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def min_image_side(crop_size):
    """Smallest image side the pipeline can pad up to a ``crop_size`` crop (see :func:`_pad_to`).

    Reflect padding adds at most ``side - 1`` pixels, the symmetric padding after it at
    most the reflected size, so a side below ``(crop_size + 2) / 4`` cannot be padded.
    """
    return max(1, -(-(int(crop_size) + 2) // 4))


def _probe(path, tf_decodable=None):
    """(width, height) of an image as the pipeline decodes it, or None if it cannot.

    Uses the decoder training will use (:func:`_loader`): ``tf.io.decode_image`` for
    PNG/JPEG/BMP/GIF sources, Pillow otherwise, so a file Pillow reads but TensorFlow
    cannot (TIFF data named ``.png``) is caught here, not by an endless training loop.
    """
    path = pathlib.Path(path)
    if tf_decodable is None:
        tf_decodable = path.suffix.lower() in _TF_DECODABLE
    try:
        if tf_decodable:
            h, w = _decode_uint8(tf.io.read_file(str(path))).shape[:2]
            return int(w), int(h)
        from PIL import Image
        with Image.open(path) as im:
            im.convert("RGB").load()  # full decode, as _read_pillow does
            return im.size
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None


def probe_images(paths, workers=None, tf_decodable=None):
    """Sizes of ``paths`` (None where unreadable), decoding in a thread pool.

    Args:
        paths: image files.
        workers: threads (default: 2 per core, at most 16).
        tf_decodable: decode all with TensorFlow (True), all with Pillow (False), or by
            extension (None); pass what :func:`_loader` picks for the same files.
    """
    workers = workers or min(16, (os.cpu_count() or 2) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: _probe(p, tf_decodable), paths))


def _warn_unreadable(bad, what):
    if bad:
        shown = ", ".join(str(p) for p in bad[:MAX_LISTED])
        log.warning("Skipped %d unreadable %s (first: %s)", len(bad), what, shown)


def _warn_small(small, min_side, crop_size, what):
    if small:
        shown = ", ".join(str(p) for p in small[:MAX_LISTED])
        log.warning("Skipped %d %s smaller than %dx%d, the least a %dx%d crop can be padded "
                    "from (first: %s)", len(small), what, min_side, min_side, crop_size,
                    crop_size, shown)


def _uses_tf_decoder(paths):
    return all(pathlib.Path(p).suffix.lower() in _TF_DECODABLE for p in paths)


def scan_clean_folder(folder, crop_size=None):
    """Usable clean photos under ``folder``: unreadable or too small ones are skipped with a warning.

    Args:
        folder: searched recursively.
        crop_size: training crop side; images below :func:`min_image_side` are skipped.

    Returns:
        ``(paths, sizes)``.

    Raises:
        DataError: none is left, naming why.
    """
    paths = list_images(folder)
    if not paths:
        raise DataError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}")
    sizes = probe_images(paths, tf_decodable=_uses_tf_decoder(paths))
    unreadable = [p for p, s in zip(paths, sizes) if s is None]
    _warn_unreadable(unreadable, "images")
    min_side = min_image_side(crop_size) if crop_size else 1
    small = [p for p, s in zip(paths, sizes) if s is not None and min(s) < min_side]
    _warn_small(small, min_side, crop_size, "images")
    good = [(p, s) for p, s in zip(paths, sizes) if s is not None and min(s) >= min_side]
    if not good:
        raise DataError(_none_usable(f"{len(paths)} images under {folder}", len(unreadable),
                                     len(small), min_side, crop_size))
    return [p for p, _ in good], [s for _, s in good]


def _none_usable(what, unreadable, small, min_side, crop_size):
    reasons = []
    if unreadable:
        reasons.append(f"{unreadable} could not be decoded by the training pipeline's decoder")
    if small:
        reasons.append(f"{small} are smaller than {min_side}x{min_side}, too small for "
                       f"crop_size={crop_size}")
    return f"None of the {what} could be read: " + "; ".join(reasons) + "."


def scan_pairs(root, crop_size=None):
    """Match ``root/input/*`` with ``root/target/*`` by file stem and check them.

    Returns:
        (input_paths, target_paths, sizes) for the readable pairs, sorted by name.

    Raises:
        DataError: missing folders, no images, names present on one side only,
            or pairs whose input and target sizes differ (the first offenders
            are listed). Unreadable pairs are skipped with a warning.
    """
    root = pathlib.Path(root)
    dirs = {side: root / side for side in ("input", "target")}
    for d in dirs.values():
        if not d.is_dir():
            raise DataError(
                f"Paired data needs {root}/input and {root}/target folders; {d} is missing.")
    files = {}
    for side, d in dirs.items():
        by_stem = {}
        for p in list_images(d):
            stem = str(p.relative_to(d).with_suffix(""))
            if stem in by_stem:
                raise DataError(f"Two {side} images share the name {stem!r}: "
                                f"{by_stem[stem].name} and {p.name}")
            by_stem[stem] = p
        files[side] = by_stem
    if not files["input"] and not files["target"]:
        raise DataError(f"No images found in {dirs['input']} or {dirs['target']}")
    only_in = set(files["input"]) - set(files["target"])
    only_tg = set(files["target"]) - set(files["input"])
    if only_in or only_tg:
        parts = []
        if only_in:
            parts.append(f"{len(only_in)} input image(s) without a target, first: "
                         f"{sorted(only_in)[:MAX_LISTED]}")
        if only_tg:
            parts.append(f"{len(only_tg)} target image(s) without an input, first: "
                         f"{sorted(only_tg)[:MAX_LISTED]}")
        raise DataError(f"Mismatched names in {root}: " + "; ".join(parts))
    stems = sorted(files["input"])
    inputs = [files["input"][s] for s in stems]
    targets = [files["target"][s] for s in stems]
    tf_decodable = _uses_tf_decoder(inputs + targets)
    in_sizes = probe_images(inputs, tf_decodable=tf_decodable)
    tg_sizes = probe_images(targets, tf_decodable=tf_decodable)
    unreadable = [s for s, a, b in zip(stems, in_sizes, tg_sizes) if a is None or b is None]
    _warn_unreadable(unreadable, f"input/target pairs in {root}")
    mismatched = [f"{s}: input {a[0]}x{a[1]} vs target {b[0]}x{b[1]}"
                  for s, a, b in zip(stems, in_sizes, tg_sizes)
                  if a is not None and b is not None and a != b]
    if mismatched:
        raise DataError(f"{len(mismatched)} pair(s) in {root} have different input and target "
                        f"sizes, first: " + "; ".join(mismatched[:MAX_LISTED]))
    min_side = min_image_side(crop_size) if crop_size else 1
    small = [s for s, a in zip(stems, in_sizes) if a is not None and min(a) < min_side]
    _warn_small(small, min_side, crop_size, f"pairs in {root}")
    keep = [i for i, (a, b) in enumerate(zip(in_sizes, tg_sizes))
            if a is not None and b is not None and min(a) >= min_side]
    if not keep:
        raise DataError(_none_usable(f"{len(stems)} pairs in {root}", len(unreadable),
                                     len(small), min_side, crop_size))
    return ([inputs[i] for i in keep], [targets[i] for i in keep], [in_sizes[i] for i in keep])


# ---------------------------------------------------------------- decoding

def _decode_uint8(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)


def _decode(data):
    """Encoded image bytes -> float32 [H, W, 3] in [0, 1]."""
    return tf.image.convert_image_dtype(_decode_uint8(data), tf.float32)


def _read_pillow(path):
    from PIL import Image
    with Image.open(path.decode() if isinstance(path, bytes) else path) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def _load(path, tf_decodable):
    if tf_decodable:
        return _decode(tf.io.read_file(path))
    image = tf.numpy_function(_read_pillow, [path], tf.float32, stateful=False)
    return tf.ensure_shape(image, [None, None, 3])


# ---------------------------------------------------------------- augmentation

def _pad_to(image, size):
    """Reflect-pad (then edge-pad) an HWC image up to at least ``size`` x ``size``."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ph, pw = tf.maximum(size - h, 0), tf.maximum(size - w, 0)
    rh, rw = tf.minimum(ph, h - 1), tf.minimum(pw, w - 1)
    image = tf.pad(image, [[0, rh], [0, rw], [0, 0]], mode="REFLECT")
    return tf.pad(image, [[0, ph - rh], [0, pw - rw], [0, 0]], mode="SYMMETRIC")


def random_crop_pair(images, size, seed):
    """Same random ``size`` x ``size`` crop of a list of aligned HWC images."""
    stacked = _pad_to(tf.concat(images, axis=-1), size)
    crop = tf.image.stateless_random_crop(stacked, [size, size, 3 * len(images)], seed)
    return [crop[..., 3 * i:3 * i + 3] for i in range(len(images))]


def center_crop_pair(images, size):
    stacked = _pad_to(tf.concat(images, axis=-1), size)
    h, w = tf.shape(stacked)[0], tf.shape(stacked)[1]
    top, left = (h - size) // 2, (w - size) // 2
    crop = stacked[top:top + size, left:left + size]
    crop = tf.ensure_shape(crop, [size, size, 3 * len(images)])
    return [crop[..., 3 * i:3 * i + 3] for i in range(len(images))]


def flip_rotate_pair(images, seed, flips=True, rot90=True):
    """The same random horizontal/vertical flip and 90-degree rotation of aligned images."""
    x = tf.concat(images, axis=-1)
    u = tf.random.stateless_uniform([3], seed)
    if flips:
        x = tf.cond(u[0] < 0.5, lambda: tf.reverse(x, [1]), lambda: x)
        x = tf.cond(u[1] < 0.5, lambda: tf.reverse(x, [0]), lambda: x)
    if rot90:
        x = tf.image.rot90(x, tf.cast(tf.floor(u[2] * 4.0), tf.int32) % 4)
    return [x[..., 3 * i:3 * i + 3] for i in range(len(images))]


def _beta(seed, alpha):
    s = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma([], s[0], alpha)
    b = tf.random.stateless_gamma([], s[1], alpha)
    return a / (a + b)


# ---------------------------------------------------------------- the pipeline

class Source:
    """Examples of a training source: a deterministic record stream + a decoder.

    Args:
        records: tuple of 1-D tensors (paths or encoded files) indexed by example,
            or None when ``dataset`` is given.
        load_fn: ``(record, seed) -> (input, target)`` float32 HWC images in [0, 1].
        num_examples: examples per epoch.
        description: one line for logs.
        dataset: a finite ``tf.data`` dataset of records (TFDS), read in order and
            shuffled with a seeded buffer instead of indexed.
        degradations: validated specs applied to the target crop to make the input
            (synthetic sources).
    """

    def __init__(self, records, load_fn, num_examples, description, dataset=None,
                 degradations=None):
        self._records = records
        self._load = load_fn
        self._dataset = dataset
        self.num_examples = num_examples
        self.description = description
        self.degradations = degradations

    def stream(self, seed, start):
        """(record, counter) stream from counter ``start``, epochs in seeded order."""
        n = self.num_examples
        if self._dataset is not None:
            ds = self._dataset.repeat().shuffle(
                min(n, 10_000), seed=seed, reshuffle_each_iteration=True)
            return tf.data.Dataset.zip(ds, tf.data.Dataset.counter()).skip(start)
        records = self._records
        first_epoch = start // n

        def epoch(e):
            order = tf.argsort(tf.random.stateless_uniform(
                [n], tf.stack([tf.constant(seed, tf.int64), e])))
            picked = tuple(tf.gather(r, order) for r in records)
            return tf.data.Dataset.from_tensor_slices(
                (picked, e * n + tf.range(n, dtype=tf.int64)))

        ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch)
        return ds.skip(start - first_epoch * n)

    def load(self, record, seed):
        return self._load(record, seed)


def _records(paths, cache):
    """File paths, or (cache=True) the encoded files themselves, held in memory."""
    if cache:
        return tf.constant([p.read_bytes() for p in paths])
    return tf.constant([str(p) for p in paths])


def _load_tf(path):
    return _load(path, True)


def _load_pillow(path):
    return _load(path, False)


def _loader(paths, cache):
    if all(p.suffix.lower() in _TF_DECODABLE for p in paths):
        return _decode if cache else _load_tf
    if cache:
        raise DataError("data.cache needs PNG/JPEG/BMP/GIF files (TIFF/WebP are read "
                        "with Pillow from their paths).")
    return _load_pillow


def paired_folder_source(root, cache=False, crop_size=None):
    inputs, targets, _ = scan_pairs(root, crop_size)
    load_one = _loader(inputs + targets, cache)

    def load(record, seed):
        return load_one(record[0]), load_one(record[1])

    records = (_records(inputs, cache), _records(targets, cache))
    return Source(records, load, len(inputs), f"{len(inputs)} pairs from {root}")


def detail(path):
    """Mean absolute gradient of an image's gray levels (0-255): how much texture it has."""
    from PIL import Image

    with Image.open(path) as im:
        g = np.asarray(im.convert("L"), dtype=np.float32)
    return float((np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()) / 2)


def detail_repeats(paths, max_repeat):
    """Draws per epoch of each image: ``round(detail / max(median detail, 1))`` in [1, max_repeat].

    Photo collections are mostly smooth (sky, bokeh): drawn uniformly, a denoiser
    learns to smooth; drawing textured images more often keeps it sharp.
    """
    d = np.array([detail(p) for p in paths])
    return np.clip(np.round(d / max(np.median(d), 1.0)), 1, max_repeat).astype(int).tolist()


def synthetic_source(folder, degradations, cache=False, detail_weighting=None, crop_size=None):
    try:
        specs = degrade_lib.validate(degradations)
    except ValueError as e:
        raise DataError(f"data.{e}") from e
    paths, _ = scan_clean_folder(folder, crop_size)
    if detail_weighting:
        if not isinstance(detail_weighting, int) or detail_weighting < 1:
            raise DataError(f"data.detail_weighting must be a positive integer (the largest "
                            f"repeat). Received: {detail_weighting!r}")
        repeats = detail_repeats(paths, detail_weighting)
        log.info("Detail weighting: %d photos drawn %d times per epoch in all (max %d each)",
                 len(paths), sum(repeats), max(repeats))
        paths = [p for p, r in zip(paths, repeats) for _ in range(r)]
    load_one = _loader(paths, cache)

    def load(record, seed):
        clean = load_one(record[0])
        return clean, clean  # degraded after cropping (cheaper); see make_example

    src = Source((_records(paths, cache),), load, len(paths),
                 f"{len(paths)} clean photos from {folder} + {len(specs)} degradation(s)",
                 degradations=specs)
    return src


def tfds_source(data_dir, manual_dir=None, split="train", name=None):
    from maxim_tf.training import tfds_paired
    builder = tfds_paired.prepare(data_dir=data_dir, manual_dir=manual_dir, name=name)
    if split not in builder.info.splits:
        raise DataError(f"Split {split!r} not in the prepared data set "
                        f"(have {sorted(builder.info.splits)}) at {builder.data_dir}")
    n = builder.info.splits[split].num_examples
    if n == 0:
        raise DataError(f"The prepared data set at {builder.data_dir} has no {split!r} examples.")
    import tensorflow_datasets as tfds
    ds = builder.as_dataset(
        split=split, shuffle_files=False,
        decoders={"input": tfds.decode.SkipDecoding(), "target": tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: (ex["input"], ex["target"]))

    def load(record, seed):
        return _decode(record[0]), _decode(record[1])

    src = Source(None, load, n, f"{n} pairs from TFDS {builder.name} [{split}]", dataset=ds)
    return src


DATA_KEYS = {
    "paired_folder": {"root", "val_root", "cache"},
    "synthetic": {"folder", "val_folder", "degradations", "cache", "detail_weighting"},
    "tfds": {"name", "data_dir", "manual_dir", "train_split", "val_split"},
}


def make_source(data, split="train", crop_size=None):
    """Build the :class:`Source` described by a config's ``data`` section.

    Keys by ``data["source"]``: paired_folder: root, val_root, cache;
    synthetic: folder, val_folder, degradations, cache; tfds: name, data_dir,
    manual_dir, train_split, val_split. ``cache`` keeps the encoded files in memory.
    ``crop_size``: folder images too small for it are skipped (see :func:`min_image_side`).
    """
    kind = data.get("source")
    if kind in DATA_KEYS:
        unknown = set(data) - DATA_KEYS[kind] - {"source"}
        if unknown:
            raise DataError(f"Unknown data keys for source {kind!r}: {sorted(unknown)}. "
                            f"Known: {sorted(DATA_KEYS[kind])}")
    cache = bool(data.get("cache", False))
    if kind == "paired_folder":
        key = "val_root" if split != "train" else "root"
        return paired_folder_source(_required(data, key), cache=cache, crop_size=crop_size)
    if kind == "synthetic":
        key = "val_folder" if split != "train" else "folder"
        if not data.get("degradations"):
            raise DataError("data.degradations (a list of specs) is required for "
                            "data.source='synthetic'")
        weighting = data.get("detail_weighting") if split == "train" else None
        return synthetic_source(_required(data, key), data["degradations"], cache=cache,
                                detail_weighting=weighting, crop_size=crop_size)
    if kind == "tfds":
        return tfds_source(_required(data, "data_dir"), data.get("manual_dir"),
                           data.get(f"{split}_split", split), data.get("name"))
    raise DataError(f"data.source must be 'paired_folder', 'synthetic' or 'tfds'. "
                    f"Received: {kind!r}")


def _required(data, key):
    if not data.get(key):
        raise DataError(f"data.{key} is required for data.source={data.get('source')!r}")
    return os.path.expanduser(str(data[key]))


def make_example(source, record, counter, seed, crop_size, augment):
    """One training pair: load, crop, flip/rotate, degrade (synthetic)."""
    s = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), counter]), 4)
    inp, tgt = source.load(record, s[0])
    inp, tgt = random_crop_pair([inp, tgt], crop_size, s[1])
    if augment.get("flips", True) or augment.get("rot90", True):
        inp, tgt = flip_rotate_pair([inp, tgt], s[2], augment.get("flips", True),
                                    augment.get("rot90", True))
    if source.degradations:
        inp = degrade_lib.degrade(tgt, source.degradations, s[3])
    return inp, tgt, counter


def _mixup_pair(inputs, targets, counters, seed, prob, alpha):
    """MixUp of two consecutive examples with a Beta(alpha, alpha) weight."""
    s = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64) + 7919, counters[0]]), 2)
    lam = _beta(s[0], alpha)
    lam = tf.where(tf.random.stateless_uniform([], s[1]) < prob, lam, 1.0)

    def mix(x):
        return tf.stack([lam * x[0] + (1 - lam) * x[1], lam * x[1] + (1 - lam) * x[0]])

    return mix(inputs), mix(targets), counters


def _map_dropping_failures(ds, fn, crop_size, parallel_calls, limit=None):
    """``ds.map(fn)`` where a failing example is dropped, but not endlessly.

    Each example is made in a one-element dataset with ``ignore_errors`` and a
    placeholder behind it, so a failure yields the placeholder (flagged) instead of
    silently pulling the next record from the endless stream; a scan counts failures
    in a row and raises (InvalidArgumentError carrying ``_DROPS_MARKER``) at ``limit``.
    """
    limit = int(limit or MAX_CONSECUTIVE_DROPS)

    def made_ok(rec, c):
        return (*fn(rec, c), tf.constant(True))

    def one(rec, c):
        made = tf.data.Dataset.from_tensors((rec, c)).map(made_ok).ignore_errors(log_warning=True)
        zero = tf.zeros([crop_size, crop_size, 3], tf.float32)
        failed = tf.data.Dataset.from_tensors((zero, zero, c, tf.constant(False)))
        return made.concatenate(failed).take(1)

    def count(run, example):
        ok = example[-1]
        run = tf.where(ok, tf.constant(0, tf.int64), run + 1)
        check = tf.debugging.assert_less(
            run, tf.constant(limit, tf.int64),
            message=f"{_DROPS_MARKER}: {limit} in a row could not be decoded or cropped")
        with tf.control_dependencies([check]):
            run = tf.identity(run)
        return run, example

    ds = ds.interleave(one, cycle_length=4, block_length=1, num_parallel_calls=parallel_calls,
                       deterministic=True)
    def succeeded(x, y, c, ok):
        return ok

    def without_flag(x, y, c, ok):
        return x, y, c

    ds = ds.scan(tf.constant(0, tf.int64), count)
    return ds.filter(succeeded).map(without_flag)


def is_drop_limit_error(error):
    """Whether a TensorFlow error is the pipeline's "too many failed examples in a row" stop."""
    return _DROPS_MARKER in str(getattr(error, "message", error))


def train_dataset(source, *, global_batch_size, crop_size, seed, start_step=0,
                  augment=None, input_context=None, parallel_calls=None, prefetch=None):
    """The batched training dataset for one input pipeline.

    Args:
        source: a :class:`Source`.
        global_batch_size: examples per optimizer step over all replicas.
        crop_size: square crop side (static: XLA/TPU friendly).
        seed: run seed.
        start_step: first step (resume); the data position is ``start_step * global_batch_size``.
        augment: ``{"flips": bool, "rot90": bool, "mixup": prob, "mixup_alpha": a}``.
        input_context: ``tf.distribute.InputContext`` (None = one pipeline, one replica).

    Returns:
        A dataset of ``(input, target)`` float32 batches of the per-replica batch size.
    """
    augment = dict(augment or {})
    pipes = input_context.num_input_pipelines if input_context else 1
    pipe_id = input_context.input_pipeline_id if input_context else 0
    per_replica = (input_context.get_per_replica_batch_size(global_batch_size)
                   if input_context else global_batch_size)
    if global_batch_size % pipes:
        raise ValueError(f"global_batch_size={global_batch_size} is not divisible by the "
                         f"{pipes} input pipelines (workers).")
    per_pipe = global_batch_size // pipes
    mixup = float(augment.get("mixup", 0.0) or 0.0)
    if mixup and per_pipe % 2:
        raise ValueError(f"MixUp mixes consecutive pairs: the batch per worker must be even. "
                         f"Received: global_batch_size={global_batch_size} over {pipes} worker(s)")
    autotune = tf.data.AUTOTUNE
    ds = source.stream(seed, start_step * global_batch_size)
    if pipes > 1:
        # Keep this pipeline's slice of every global batch (before any decoding).
        ds = ds.filter(lambda rec, c: (c % global_batch_size) // per_pipe == pipe_id)
    ds = _map_dropping_failures(
        ds, lambda rec, c: make_example(source, rec, c, seed, crop_size, augment),
        crop_size, parallel_calls or autotune)
    if mixup:
        ds = ds.batch(2, drop_remainder=True).map(
            lambda x, y, c: _mixup_pair(x, y, c, seed, mixup,
                                        float(augment.get("mixup_alpha", 1.2))),
            num_parallel_calls=autotune, deterministic=True).unbatch()
    ds = ds.map(lambda x, y, c: (x, y))
    ds = ds.batch(per_replica, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(prefetch or autotune)


def eval_dataset(source, *, crop_size, seed, count, batch_size=1, cache=True):
    """A fixed validation set: ``count`` centre crops (degraded with fixed seeds)."""
    ds = source.stream(seed, 0).take(min(count, source.num_examples))

    def example(rec, c):
        s = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), c]), 2)
        inp, tgt = source.load(rec, s[0])
        inp, tgt = center_crop_pair([inp, tgt], crop_size)
        if source.degradations:
            inp = degrade_lib.degrade(tgt, source.degradations, s[1])
        return inp, tgt

    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).batch(batch_size)
    return ds.cache() if cache else ds
