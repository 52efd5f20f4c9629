"""Restore image files and folders: the library side of ``maxim-tf restore``.

Expanding inputs into jobs, checking the output folder, refusing outputs that would
destroy an input (or skip existing ones), and restoring one file with its format,
bit depth, alpha and ICC profile kept, and restoring a whole list of them
(:func:`restore_paths`, a bad file reported and the rest restored). The command only
parses flags and prints the summary; the Beam pipeline reports failures with the same
:func:`describe_error`.

Example:
    >>> jobs, missing = collect_inputs(["photos/"], recursive=True)
    >>> result = restore_paths(maxim_tf.Restorer("denoise"), jobs, "restored/")
    >>> result.restored, result.failures
"""

import dataclasses
import os
import pathlib
import sys
import tempfile
import time

from maxim_tf import errors, fileio, image_io


def collect_inputs(inputs, recursive=False):
    """Expand files and folders into ``(source, relative_output_stem)`` pairs.

    Args:
        inputs: file and folder paths. Files are taken whatever their extension;
            folders contribute files with an image extension.
        recursive: descend into subfolders of folder inputs.

    Returns:
        ``(jobs, missing)``: list of ``(Path, PurePath)`` and the inputs that do not exist.
    """
    jobs, missing = [], []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            for f in sorted(found):
                if f.is_file() and f.suffix.lower() in image_io.IMAGE_EXTENSIONS:
                    jobs.append((f, f.relative_to(path).with_suffix("")))
        elif path.exists():
            jobs.append((path, pathlib.PurePath(path.stem)))
        else:
            missing.append(item)
    return jobs, missing


def check_output_dir(outdir, created=None):
    """Create ``outdir`` and prove it is writable; returns an error message or None.

    Args:
        outdir: the folder.
        created: a list that receives the folders this call created (for
            :func:`maxim_tf.fileio.remove_empty_dirs` when the run writes nothing).
    """
    try:
        made = fileio.make_dirs(outdir)
        if created is not None:
            created.extend(made)
        with tempfile.TemporaryFile(dir=outdir):
            pass
    except OSError as e:
        return f"output directory {outdir} is not usable: {e.strerror or e}"
    return None


def _same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


class SkipExisting(Exception):
    """The output exists and --overwrite was not given (not a failure)."""


def guard_output(src, dst, inputs, claimed, overwrite):
    """Refuse an output path that would destroy an input or an earlier output of the run.

    Args:
        src: the input being restored.
        dst: its output path.
        inputs: ``{realpath: path}`` of every input of the run.
        claimed: ``{output path: input}`` of outputs already written by the run (updated).
        overwrite: replace an existing output that is not an input.

    Raises:
        ValueError: ``dst`` is an input file (whichever) or another input's output.
        SkipExisting: ``dst`` exists and ``overwrite`` is False.
    """
    real = os.path.realpath(dst)
    if real in inputs:
        if _same_file(src, dst):
            raise ValueError(f"{src}: the output path is the input file itself; choose another "
                             f"--output-dir")
        raise ValueError(f"{src}: output {dst} would overwrite the input file {inputs[real]}; "
                         f"choose another --output-dir")
    if real in claimed:
        raise ValueError(f"{src}: output {dst} would overwrite the output of {claimed[real]}")
    if os.path.lexists(dst) and not overwrite:
        raise SkipExisting(str(dst))
    claimed[real] = str(src)


def restore_file(restorer, src, dst_stem, output_dir, *, claimed, inputs=None, created=None,
                 image_format="same", jpeg_quality=image_io.JPEG_QUALITY,
                 max_pixels=image_io.DEFAULT_MAX_PIXELS, overwrite=False, warn=None):
    """Restore one file; returns (output path, megapixels, model seconds). Raises on failure.

    Args:
        restorer: a :class:`maxim_tf.Restorer` (any callable uint8/uint16 HWC -> same).
        src: the input file.
        dst_stem: its output path below ``output_dir``, without extension.
        output_dir: the output folder.
        claimed: ``{output realpath: input}`` of the run so far (updated).
        inputs: ``{realpath: path}`` of the run's inputs, never written over.
        created: receives the folders made for the output.
        image_format: "same" (the input's format), "png", "jpeg", ...
        jpeg_quality: quality of JPEG/WebP outputs.
        max_pixels: decompression-bomb guard of :func:`maxim_tf.image_io.read_image`.
        overwrite: replace an existing output (else :class:`SkipExisting` is raised).
        warn: called with a warning line (a multi-frame file).
    """
    image = image_io.read_image(src, max_pixels=max_pixels)
    fmt, ext = image_io.output_format(image.format, image_format)
    dst = pathlib.Path(output_dir) / dst_stem.parent / (dst_stem.name + ext)
    guard_output(src, dst, inputs if inputs is not None else {os.path.realpath(src): str(src)},
                 claimed, overwrite)
    if image.frames > 1 and warn is not None:
        warn(f"{src}: warning: {image.frames} frames/pages; only the first is restored")
    start = time.perf_counter()
    restored = restorer(image.pixels)
    seconds = time.perf_counter() - start
    made = fileio.make_dirs(dst.parent)
    if created is not None:
        created.extend(made)
    image_io.write_image(dst, restored, alpha=image.alpha, format=fmt, quality=jpeg_quality,
                         icc_profile=image.icc_profile)
    return dst, image.megapixels, seconds


def describe_error(src, error):
    """One line naming the file and the problem (``restore``, ``eval`` and the Beam
    pipeline print it so)."""
    text = str(error)
    if errors.is_out_of_memory(error):
        text = "out of memory while restoring; use --tile (e.g. --tile 512) or a smaller --tile-batch"
    return text if text.startswith(str(src)) else f"{src}: {text}"


@dataclasses.dataclass
class BatchResult:
    """What :func:`restore_paths` did: counts, the failure lines, megapixels and compute seconds."""

    restored: int = 0
    skipped: int = 0
    failures: list = dataclasses.field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0


def restore_paths(restorer, jobs, output_dir, *, missing=(), created=None, image_format="same",
                  jpeg_quality=image_io.JPEG_QUALITY, max_pixels=image_io.DEFAULT_MAX_PIXELS,
                  overwrite=False, progress=False, report=None):
    """Restore ``(source, output stem)`` jobs (from :func:`collect_inputs`) into ``output_dir``.

    A file that fails becomes one line of ``result.failures`` (see :func:`describe_error`)
    and the batch goes on; an existing output is skipped unless ``overwrite``.

    Args:
        restorer: a :class:`maxim_tf.Restorer` (any callable uint8/uint16 HWC -> same).
        jobs: ``(source path, output stem)`` pairs.
        output_dir: the output folder (see :func:`check_output_dir`).
        missing: inputs that did not exist (each becomes a failure line first).
        created: receives the folders made for the outputs.
        image_format, jpeg_quality, max_pixels, overwrite: as :func:`restore_file`.
        progress: show a progress bar on stderr.
        report: called with each failure or warning line as it happens (default: printed
            to stderr, above the progress bar).

    Returns:
        A :class:`BatchResult`.
    """
    from tqdm import tqdm

    if report is None:
        def report(line):
            tqdm.write(line, file=sys.stderr)
    result = BatchResult(failures=[f"{m}: no such file or directory" for m in missing])
    for line in result.failures:
        report(line)
    inputs = {os.path.realpath(src): str(src) for src, _ in jobs}
    claimed = {}
    bar = tqdm(jobs, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for src, stem in bar:
        bar.set_postfix_str(src.name, refresh=False)
        try:
            _, mp, sec = restore_file(
                restorer, src, stem, output_dir, claimed=claimed, inputs=inputs, created=created,
                image_format=image_format, jpeg_quality=jpeg_quality, max_pixels=max_pixels,
                overwrite=overwrite, warn=report)
        except SkipExisting:
            result.skipped += 1
            continue
        except Exception as e:  # noqa: BLE001 - report, keep going with the rest of the batch
            result.failures.append(describe_error(src, e))
            report(result.failures[-1])
            continue
        result.restored += 1
        result.megapixels += mp
        result.seconds += sec
    bar.close()
    return result
