"""Restore image files and folders: the library side of ``maxim-tf restore``.

Expanding inputs into jobs, checking the output folder, refusing outputs that would
destroy an input (or skip existing ones), and restoring one file with its format,
bit depth, alpha and ICC profile kept. The command only parses flags, loops with a
progress bar and prints the summary.
"""

import os
import pathlib
import tempfile
import time

from maxim_tf import fileio, image_io


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
