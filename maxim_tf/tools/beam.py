"""Restore millions of images on Apache Beam: a RunInference pipeline (``maxim-tf restore-beam``).

Needs the ``beam`` extra (``pip install "maxim-tf[beam]"``); the rest of
``maxim_tf`` never imports this module. The pipeline::

    MatchFiles(glob) -> ReadMatches                       (per input glob, flattened)
      -> GroupByKey(output stem)                           (inputs that would share an output)
      -> decode    (maxim_tf.image_io.read_image: the hardened reader of `restore`)
      -> RunInference(MaximModelHandler)                   (maxim_tf.Restorer: padding,
                                                            tiling, blending, ensemble)
      -> encode + write                                    (temporary name, then rename)
      -> manifest.jsonl and failed.jsonl                   (Beam's WriteToText: one file each)

Outputs mirror the input paths relative to each glob's base (the part before the
first wildcard, up to its last ``/``) under the output prefix, with the output
names and formats of ``maxim-tf restore`` (:func:`maxim_tf.image_io.output_format`),
so a DirectRunner run writes the same files, pixel for pixel, as ``maxim-tf restore``
with the same model and options.

Exactly once: every output is written under a temporary name in its destination
folder and renamed into place (``os.replace`` locally, ``FileSystems.rename``
elsewhere), so a bundle that Beam retries rewrites the same name and never leaves
half a file; the manifest comes from Beam's file sinks, which commit only the
outputs of successful bundles. Bad input files (empty, truncated, not an image,
too many pixels) and images the model fails on are data errors: they go to the
manifest with ``status: "failed"`` and to the dead-letter file ``failed.jsonl``,
and the pipeline goes on. Failures of the storage itself raise, so Beam retries
the bundle.

The model is loaded once per worker process (RunInference's shared handle; with
``share_across_processes`` once per machine). Metrics (namespace ``maxim_tf``):
counters ``images``, ``pixels`` (Beam counters are integers: megapixels = pixels /
1e6), ``failures``, ``skipped``, and the distribution ``ms_per_megapixel``.
"""

import contextlib
import dataclasses
import json
import logging
import os
import posixpath
import sys
import tempfile
import threading
import time
import uuid

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio as beam_fileio
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from maxim_tf import fileio, image_io

NAMESPACE = "maxim_tf"
MANIFEST = "manifest.jsonl"
DEAD_LETTER = "failed.jsonl"
_GLOB_CHARS = "*?["

# Calls of MaximModelHandler.load_model in this process (tests read it on the DirectRunner).
LOAD_CALLS = 0
_LOAD_LOCK = threading.Lock()


def _before_rename(path):
    """Test hook, called after an output's temporary file is written and before its rename."""


# ----------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------

def _is_local(path):
    return FileSystems.get_scheme(path) in (None, "file")


def _join(prefix, relative):
    """``prefix`` joined with a ``/``-separated relative path (local or any Beam filesystem)."""
    if _is_local(prefix):
        return os.path.join(prefix, *relative.split("/"))
    return prefix.rstrip("/") + "/" + relative  # gs://, s3://, hdfs://, ... all use "/"


def glob_base(pattern):
    """``(pattern, base)``: the pattern to match and the folder the outputs are relative to.

    A local pattern is made absolute; a local folder becomes ``folder/**`` (every file
    below it). The base is the pattern up to its last ``/`` before the first wildcard
    (``in/**/*.png`` -> ``in/``; ``gs://b/x/a.png`` -> ``gs://b/x/``).
    """
    if _is_local(pattern):
        local = pattern[len("file://"):] if pattern.startswith("file://") else pattern
        pattern = os.path.abspath(os.path.expanduser(local))
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "**")
    cut = min([pattern.find(c) for c in _GLOB_CHARS if c in pattern] or [len(pattern)])
    base = pattern[:pattern.rfind("/", 0, cut) + 1]
    return pattern, base


def glob_problem(pattern):
    """Why ``pattern`` is not a usable glob (a string), or None.

    Refused: an empty pattern, and a ``[`` without its closing ``]`` (a malformed
    character class, which glob implementations read differently: as a literal, as
    nothing, or as an error). A literal ``[`` is written ``[[]``.
    """
    if not pattern.strip():
        return "an empty input glob"
    i = pattern.find("[")
    while i != -1:
        j = i + 1
        if j < len(pattern) and pattern[j] in "!^":
            j += 1
        if j < len(pattern) and pattern[j] == "]":  # ']' first in a class is a literal
            j += 1
        close = pattern.find("]", j)
        if close == -1:
            return (f"malformed glob {pattern!r}: '[' at position {i} has no closing ']' "
                    f"(write a literal '[' as '[[]')")
        i = pattern.find("[", close + 1)
    return None


def check_patterns(patterns):
    """Refuse, before a pipeline is built, globs that are malformed or match no file.

    Each pattern is matched once with a limit of one file (cheap on any filesystem).

    Raises:
        maxim_tf.errors.UsageError: one line naming the pattern (``maxim-tf
            restore-beam``: exit 2).
    """
    from maxim_tf.errors import UsageError

    for original in patterns:
        problem = glob_problem(original)
        if problem:
            raise UsageError(problem)
        pattern, _ = glob_base(original)
        try:
            found = FileSystems.match([pattern], limits=[1])[0].metadata_list
        except BeamIOError as e:
            detail = "; ".join(str(v) for v in (e.exception_details or {}).values()) or str(e)
            raise UsageError(f"cannot list the input glob {original!r}: {detail}") from e
        except (ValueError, OSError) as e:
            raise UsageError(f"cannot list the input glob {original!r}: {e}") from e
        if not found:
            raise UsageError(f"no files match the input glob {original!r}"
                             + (f" (searched {pattern})" if pattern != original else ""))


def failed_records(prefix):
    """The records of ``PREFIX/failed.jsonl`` (a list of dicts; empty if there is none)."""
    try:
        with FileSystems.open(_join(prefix, DEAD_LETTER)) as f:
            text = f.read().decode("utf-8")
    except (BeamIOError, OSError):
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def output_path(src, base, prefix, input_format, requested_format="same"):
    """``(path, format)`` of the output of ``src`` (matched under ``base``) under ``prefix``.

    Name and format follow ``maxim-tf restore``: the input's path relative to ``base``
    with the extension of :func:`maxim_tf.image_io.output_format`.
    """
    fmt, ext = image_io.output_format(input_format, requested_format)
    return _join(prefix, output_stem(src, base)) + ext, fmt


def output_stem(src, base):
    """The input's path relative to ``base`` without its extension (``/``-separated)."""
    relative = src[len(base):] if src.startswith(base) else posixpath.basename(src)
    return posixpath.splitext(relative.replace(os.sep, "/"))[0]


def _real(path):
    return os.path.realpath(path) if _is_local(path) else path


def _same_path(a, b):
    return _real(a) == _real(b)


def write_atomic(path, data):
    """Write ``data`` to ``path`` via a temporary name in the same folder and a rename.

    Local paths use :func:`maxim_tf.fileio.atomic_path` (fsync, ``os.replace``); other
    Beam filesystems write ``.<name>.<uuid>.tmp`` and ``FileSystems.rename`` it. On any
    exception the temporary file is removed and the exception re-raised.
    """
    if _is_local(path):
        fileio.make_dirs(os.path.dirname(os.path.abspath(path)))
        with fileio.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            _before_rename(path)
        return
    folder, name = posixpath.split(path)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with FileSystems.create(tmp) as f:
            f.write(data)
        _before_rename(path)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([tmp], [path])
    except BaseException:
        try:
            if FileSystems.exists(tmp):
                FileSystems.delete([tmp])
        except (BeamIOError, OSError):
            pass
        raise


# ----------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Item:
    """One decoded input on its way through the model."""

    src: str
    dst: str
    format: str  # the output's Pillow format name
    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None


@dataclasses.dataclass
class Restored:
    """What the model handler returns for an :class:`Item`: the pixels or the error."""

    item: Item
    pixels: np.ndarray | None
    seconds: float
    error: str | None = None


def record(src, status, output=None, size=None, seconds=None, error=None):
    """One manifest line (a dict): input, output, width, height, seconds, status, error."""
    width, height = (size[1], size[0]) if size is not None else (None, None)
    return {"input": src, "output": output, "width": width, "height": height,
            "seconds": None if seconds is None else round(seconds, 4), "status": status,
            "error": error}


def describe_error(src, error):
    """One line naming the file and the problem (as ``maxim-tf restore`` prints it)."""
    from maxim_tf.restore_files import describe_error as restore_describe

    return restore_describe(src, error)


# ----------------------------------------------------------------------------------------
# Decode
# ----------------------------------------------------------------------------------------

def _sniff_format(readable):
    """The Pillow format name from the file's header only, or None."""
    from PIL import Image

    try:
        with readable.open(mime_type="application/octet-stream") as f, Image.open(f) as im:
            return im.format
    except Exception:  # noqa: BLE001  (the full decode reports the problem)
        return None


def read_readable(readable, max_pixels=image_io.DEFAULT_MAX_PIXELS):
    """Decode a Beam ``ReadableFile`` with :func:`maxim_tf.image_io.read_image`.

    Local files are read in place; files of other Beam filesystems are copied to a
    local temporary file first (the hardened reader works on paths). Errors name the
    original path.
    """
    src = readable.metadata.path
    if _is_local(src):
        return image_io.read_image(src[len("file://"):] if src.startswith("file://") else src,
                                   max_pixels=max_pixels)
    suffix = posixpath.splitext(src)[1]
    with tempfile.TemporaryDirectory(prefix="maxim-tf-beam-") as tmp:
        local = os.path.join(tmp, "input" + suffix)
        with open(local, "wb") as f:
            f.write(readable.read())
        try:
            image = image_io.read_image(local, max_pixels=max_pixels)
        except image_io.ImageReadError as e:
            raise image_io.ImageReadError(src, e.problem) from e
    image.path = src
    return image


class ClaimOutputsFn(beam.DoFn):
    """``(stem, [(ReadableFile, base), ...])`` -> the inputs whose output name is theirs alone.

    Inputs sharing an output stem (``a.jpg`` and ``a.jpeg``; ``a.png`` and ``a.gif``; any two
    with ``--format png``) may share an output file: as in ``maxim-tf restore``, the first
    in path order keeps it and the others fail ("would overwrite the output of ...").
    Only such groups read the files' headers.
    """

    def __init__(self, prefix, requested_format="same"):
        self.prefix = prefix
        self.requested_format = requested_format

    def setup(self):
        self.failures = Metrics.counter(NAMESPACE, "failures")

    def process(self, element):
        _, inputs = element
        inputs = sorted(inputs, key=lambda e: e[0].metadata.path)
        if len(inputs) == 1:
            yield inputs[0]
            return
        claimed = {}
        sources = {_real(e[0].metadata.path): e[0].metadata.path for e in inputs}
        for readable, base in inputs:
            src = readable.metadata.path
            fmt = _sniff_format(readable)
            dst = None if fmt is None else output_path(src, base, self.prefix, fmt, self.requested_format)[0]
            problem = None
            if dst is not None and _real(dst) in sources and not _same_path(dst, src):
                problem = f"{src}: output {dst} would overwrite the input file {sources[_real(dst)]}; " \
                          f"choose another --output-dir"
            elif dst is not None and dst in claimed:
                problem = f"{src}: output {dst} would overwrite the output of {claimed[dst]}"
            if problem:
                self.failures.inc()
                yield beam.pvalue.TaggedOutput(DecodeFn.DONE, record(src, "failed", error=problem))
                continue
            if dst is not None:
                claimed[dst] = src
            yield readable, base


class DecodeFn(beam.DoFn):
    """``(ReadableFile, base)`` -> :class:`Item`; a skipped or bad input -> a manifest record
    on the ``done`` output."""

    DONE = "done"

    def __init__(self, prefix, requested_format="same", skip_existing=False,
                 max_pixels=image_io.DEFAULT_MAX_PIXELS):
        self.prefix = prefix
        self.requested_format = requested_format
        self.skip_existing = skip_existing
        self.max_pixels = max_pixels

    def setup(self):
        self.failures = Metrics.counter(NAMESPACE, "failures")
        self.skipped = Metrics.counter(NAMESPACE, "skipped")

    def process(self, element):
        readable, base = element
        src = readable.metadata.path
        if self.skip_existing:
            fmt = _sniff_format(readable)
            if fmt is not None:
                dst, _ = output_path(src, base, self.prefix, fmt, self.requested_format)
                if FileSystems.exists(dst):
                    self.skipped.inc()
                    yield beam.pvalue.TaggedOutput(self.DONE, record(src, "skipped", output=dst))
                    return
        try:
            image = read_readable(readable, self.max_pixels)
            dst, fmt = output_path(src, base, self.prefix, image.format, self.requested_format)
            if _same_path(dst, src):
                raise ValueError(f"{src}: the output path is the input file itself; choose "
                                 f"another --output-dir")
        except Exception as e:  # noqa: BLE001  (a bad file is a manifest line, not a crash)
            self.failures.inc()
            yield beam.pvalue.TaggedOutput(self.DONE, record(src, "failed", error=describe_error(src, e)))
            return
        if image.frames > 1:
            logging.getLogger(__name__).warning("%s: %d frames/pages; only the first is restored",
                                                src, image.frames)
        yield Item(src=src, dst=dst, format=fmt, pixels=image.pixels, alpha=image.alpha,
                   icc_profile=image.icc_profile)


# ----------------------------------------------------------------------------------------
# The model handler
# ----------------------------------------------------------------------------------------

class _Worker:
    """The model of one worker: a :class:`maxim_tf.Restorer`, locked where it is not
    thread-safe (a LiteRT interpreter runs one call at a time; TF functions need no lock)."""

    def __init__(self, restorer):
        self.restorer = restorer
        self.lock = threading.Lock() if restorer.backend == "litert" else None

    def restore(self, pixels):
        """``(restored, seconds)``; the seconds exclude waiting for the lock."""
        with self.lock or contextlib.nullcontext():
            start = time.perf_counter()
            out = self.restorer(pixels)
            return out, time.perf_counter() - start


def configure_tf_threads(intra_op=0, inter_op=0):
    """Set TensorFlow's intra-/inter-op thread pools (0 keeps TF's default); before TF starts."""
    if not (intra_op or inter_op):
        return
    import tensorflow as tf

    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:  # the runtime already started in this process: keep its pools
        logging.getLogger(__name__).warning("TensorFlow already initialised; thread options ignored")


class MaximModelHandler(ModelHandler):
    """RunInference model handler: :class:`Item` batches -> :class:`Restored` results.

    Args:
        model: what ``maxim-tf restore --model`` takes: a ``.keras`` path, a shipped
            name (``denoise``) or a preset (resolved, and downloaded, on each worker).
        tile, overlap, ensemble, batch_size, backend, precision, max_pixels: as
            :class:`maxim_tf.Restorer` (``max_pixels``: the working-size bound of one
            model call, counted after padding; ``restore-beam --max-pixels``).
        threads: TensorFlow intra-op threads (Keras backend) or LiteRT interpreter
            threads per worker (0: the defaults).
        inter_op_threads: TensorFlow inter-op threads (0: default).
        images_per_batch: most images per ``run_inference`` call (Beam's BatchElements).
        stack_same_size: run the images of a batch that share a shape as one model
            call (faster on accelerators; the float results may differ in the last bit,
            so off by default: then every image runs alone, as ``maxim-tf restore`` does).
        share_across_processes: one model per machine instead of per process
            (Beam's ``multi_process_shared``; for a large model on a GPU worker).
        model_copies: with ``share_across_processes``, the copies per machine.
    """

    def __init__(self, model="denoise", *, tile=None, overlap=64, ensemble=False, batch_size=4,
                 backend="auto", precision="float32", threads=0, inter_op_threads=0, images_per_batch=1,
                 stack_same_size=False, share_across_processes=False, model_copies=None,
                 max_pixels=image_io.DEFAULT_MAX_PIXELS):
        super().__init__(min_batch_size=1, max_batch_size=max(1, int(images_per_batch)),
                         large_model=share_across_processes, model_copies=model_copies)
        self.model = os.fspath(model)
        self.restorer_kwargs = dict(tile=tile or None, overlap=overlap, ensemble=ensemble,
                                    batch_size=batch_size, backend=backend, precision=precision,
                                    max_pixels=max_pixels, progress=False)
        self.threads = int(threads or 0)
        self.inter_op_threads = int(inter_op_threads or 0)
        self.stack_same_size = bool(stack_same_size)

    def load_model(self):
        global LOAD_CALLS
        with _LOAD_LOCK:
            LOAD_CALLS += 1
        from maxim_tf.restore import Restorer

        if self.restorer_kwargs["backend"] == "keras" or "tensorflow" in sys.modules:
            configure_tf_threads(self.threads, self.inter_op_threads)
        restorer = Restorer(self.model, **self.restorer_kwargs)
        if restorer.backend == "keras":
            configure_tf_threads(self.threads, self.inter_op_threads)
        elif self.threads:
            from maxim_tf.litert import TFLiteRunner

            # The Restorer built its interpreter with every core; rebuild it with `threads`.
            restorer._predict_fn = TFLiteRunner(restorer._predict_fn.path, num_threads=self.threads)
        restorer.warm_up()
        return _Worker(restorer)

    def run_inference(self, batch, model, inference_args=None):
        groups = {}
        for i, item in enumerate(batch):
            key = (item.pixels.shape, item.pixels.dtype.str) if self.stack_same_size else i
            groups.setdefault(key, []).append(i)
        results = [None] * len(batch)
        for indices in groups.values():
            items = [batch[i] for i in indices]
            try:
                if len(items) == 1:
                    out, seconds = model.restore(items[0].pixels)
                    outs = [out]
                else:
                    out, seconds = model.restore(np.stack([it.pixels for it in items]))
                    outs = list(out)
            except Exception as e:  # noqa: BLE001  (one image failing is that image's error)
                if len(items) > 1:  # find the culprit: each alone
                    for i in indices:
                        results[i] = self.run_inference([batch[i]], model)[0]
                    continue
                results[indices[0]] = Restored(items[0], None, 0.0, describe_error(items[0].src, e))
                continue
            for i, item, out in zip(indices, items, outs):
                results[i] = Restored(item, out, seconds / len(items))
        return results

    def get_num_bytes(self, batch):
        return sum(item.pixels.nbytes for item in batch)

    def get_metrics_namespace(self):
        return NAMESPACE


# ----------------------------------------------------------------------------------------
# Encode and write
# ----------------------------------------------------------------------------------------

class WriteFn(beam.DoFn):
    """:class:`Restored` -> the output file (atomic) and its manifest record.

    Encoding problems are data errors (a failed record); storage errors raise so that
    Beam retries the bundle.
    """

    def __init__(self, jpeg_quality=image_io.JPEG_QUALITY):
        self.jpeg_quality = jpeg_quality

    def setup(self):
        self.images = Metrics.counter(NAMESPACE, "images")
        self.pixels = Metrics.counter(NAMESPACE, "pixels")
        self.failures = Metrics.counter(NAMESPACE, "failures")
        self.ms_per_mp = Metrics.distribution(NAMESPACE, "ms_per_megapixel")

    def process(self, result):
        item = result.item
        size = item.pixels.shape[:2]
        if result.error is not None:
            self.failures.inc()
            yield record(item.src, "failed", size=size, error=result.error)
            return
        try:
            data = image_io.encode_image(result.pixels, alpha=item.alpha, format=item.format,
                                         quality=self.jpeg_quality, icc_profile=item.icc_profile,
                                         path=item.dst)
        except image_io.ImageWriteError as e:
            self.failures.inc()
            yield record(item.src, "failed", size=size, error=describe_error(item.src, e))
            return
        write_atomic(item.dst, data)
        pixels = int(size[0]) * int(size[1])
        self.images.inc()
        self.pixels.inc(pixels)
        self.ms_per_mp.update(int(round(1000.0 * result.seconds / (pixels / 1e6))))
        yield record(item.src, "restored", output=item.dst, size=size, seconds=result.seconds)


# ----------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------

class RestoreImages(beam.PTransform):
    """Glob patterns -> restored files under ``prefix``; returns the manifest records.

    Args:
        patterns: file globs (local or any Beam filesystem; ``**`` descends) or local folders.
        prefix: output folder / prefix.
        model_handler: a :class:`MaximModelHandler`.
        requested_format: "same" (default), "png" or "jpeg", as ``restore --format``.
        jpeg_quality: JPEG/WebP quality.
        skip_existing: leave inputs whose output exists alone (status "skipped").
        max_pixels: decompression-bomb guard, as ``restore --max-pixels``.
    """

    def __init__(self, patterns, prefix, model_handler, requested_format="same",
                 jpeg_quality=image_io.JPEG_QUALITY, skip_existing=False,
                 max_pixels=image_io.DEFAULT_MAX_PIXELS):
        super().__init__()
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self.prefix = os.path.abspath(prefix) if _is_local(prefix) else prefix
        self.model_handler = model_handler
        self.requested_format = requested_format
        self.jpeg_quality = jpeg_quality
        self.skip_existing = skip_existing
        self.max_pixels = max_pixels

    def expand(self, pbegin):
        matched = []
        for i, pattern in enumerate(self.patterns):
            pattern, base = glob_base(pattern)
            matched.append(
                pbegin
                | f"Match {i}" >> beam_fileio.MatchFiles(pattern)
                | f"Read {i}" >> beam_fileio.ReadMatches()
                | f"Base {i}" >> beam.Map(lambda readable, base=base: (readable, base)))
        # Grouping by output stem finds inputs that would share an output, and spreads
        # the files over the workers (it is the pipeline's one shuffle, of file names only).
        claimed = (
            matched | "Inputs" >> beam.Flatten()
            | "By output stem" >> beam.Map(lambda e: (output_stem(e[0].metadata.path, e[1]), e))
            | "Group" >> beam.GroupByKey()
            | "Claim outputs" >> beam.ParDo(ClaimOutputsFn(self.prefix, self.requested_format))
            .with_outputs(DecodeFn.DONE, main="files"))
        decoded = (
            claimed.files
            | "Decode" >> beam.ParDo(DecodeFn(self.prefix, self.requested_format, self.skip_existing,
                                              self.max_pixels)).with_outputs(DecodeFn.DONE, main="items"))
        written = (
            decoded.items
            | "Restore" >> RunInference(self.model_handler)
            | "Write" >> beam.ParDo(WriteFn(self.jpeg_quality)))
        return (claimed[DecodeFn.DONE], decoded[DecodeFn.DONE], written) | "Records" >> beam.Flatten()


def write_manifest(records, prefix):
    """Write ``records`` to ``PREFIX/manifest.jsonl`` and the failed ones to ``PREFIX/failed.jsonl``."""
    lines = records | "Manifest json" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
    lines | "Manifest" >> beam.io.WriteToText(_join(prefix, MANIFEST), num_shards=1,
                                              shard_name_template="")
    (records
     | "Failed" >> beam.Filter(lambda r: r["status"] == "failed")
     | "Failed json" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
     | "Dead letter" >> beam.io.WriteToText(_join(prefix, DEAD_LETTER), num_shards=1,
                                            shard_name_template=""))


def build_pipeline(pipeline, patterns, prefix, model_handler, **options):
    """Add the restore transforms and the manifest to ``pipeline``; returns the records."""
    records = pipeline | "Restore images" >> RestoreImages(patterns, prefix, model_handler, **options)
    write_manifest(records, prefix)
    return records


def query_metrics(result):
    """``{name: value}`` of this module's counters (and ``ms_per_megapixel`` mean) in ``result``."""
    from apache_beam.metrics.metric import MetricsFilter

    out = {"images": 0, "pixels": 0, "failures": 0, "skipped": 0, "ms_per_megapixel": None}
    try:
        metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except Exception:  # noqa: BLE001  (a runner without metrics: summary from the manifest)
        return out
    for counter in metrics.get("counters", []):
        if counter.key.metric.name in out:
            value = counter.committed if counter.committed is not None else counter.attempted
            out[counter.key.metric.name] += int(value or 0)
    for dist in metrics.get("distributions", []):
        if dist.key.metric.name == "ms_per_megapixel":
            value = dist.committed if dist.committed is not None else dist.attempted
            if value is not None and value.count:
                out["ms_per_megapixel"] = value.mean
    return out


def run(patterns, prefix, model_handler, pipeline_options=None, **options):
    """Build, run and wait for the pipeline; returns ``(PipelineResult, metrics dict)``.

    Raises:
        maxim_tf.errors.UsageError: a malformed glob, or one that matches no file
            (:func:`check_patterns`), before the pipeline is built.
    """
    check_patterns([patterns] if isinstance(patterns, str) else patterns)
    if _is_local(prefix):
        fileio.make_dirs(prefix)
    pipeline = beam.Pipeline(options=pipeline_options)
    build_pipeline(pipeline, patterns, prefix, model_handler, **options)
    result = pipeline.run()
    result.wait_until_finish()
    return result, query_metrics(result)


def read_manifest(prefix):
    """The records of ``PREFIX/manifest.jsonl`` (a list of dicts)."""
    with FileSystems.open(_join(prefix, MANIFEST)) as f:
        return [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]
