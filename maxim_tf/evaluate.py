"""Score restored images against targets: PSNR / SSIM as the official MAXIM evaluation.

The library side of ``maxim-tf eval`` (the command only parses its flags and calls
:func:`evaluate_folder`). Scores are computed on RGB in [0, 255] from the model's
float output, not clipped or rounded (:mod:`maxim_tf.metrics`), optionally on the
BT.601 Y channel and with a border crop.
"""

import csv
import io
import math
import os
import pathlib

import numpy as np

from maxim_tf import image_io, metrics


def find_target(src, target_dir):
    """The target for ``src``: same file name in ``target_dir``, else same stem, any image extension."""
    exact = pathlib.Path(target_dir) / src.name
    if exact.is_file():
        return exact
    for ext in image_io.IMAGE_EXTENSIONS:
        for candidate in (exact.with_suffix(ext), exact.with_suffix(ext.upper())):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{src}: no target named {src.stem}.* in {target_dir}")


def to_rgb255(image):
    """A LoadedImage as float64 RGB on [0, 255] (alpha dropped, gray repeated, 16-bit scaled)."""
    return image_io.rgb_float(image, scale=255.0, dtype=np.float64)


def score_pair(src, target_dir, restorer=None, *, y_channel=False, crop_border=0,
               max_pixels=image_io.DEFAULT_MAX_PIXELS, warn=None):
    """Restore ``src`` (if ``restorer`` is given) and score it against its target.

    Returns:
        ``(row, panels)``: ``{"file", "psnr", "ssim", "height", "width"}`` and the
        ``(source, output, target)`` images as float64 RGB on [0, 255].
    """
    image = image_io.read_image(src, max_pixels=max_pixels)
    if image.frames > 1 and warn is not None:
        warn(f"{src}: warning: {image.frames} frames/pages; only the first is scored")
    target_path = find_target(src, target_dir)
    target = to_rgb255(image_io.read_image(target_path, max_pixels=max_pixels))
    source = to_rgb255(image)
    if restorer is None:
        output = source
    else:
        output = restorer.restore_float(source[None].astype(np.float32) / 255.0)[0].astype(np.float64) * 255.0
    if output.shape != target.shape:
        raise ValueError(f"{src}: size {output.shape[1]}x{output.shape[0]} differs from target "
                         f"{target_path} ({target.shape[1]}x{target.shape[0]})")
    kw = dict(crop_border=crop_border, y_channel=y_channel)
    row = {"file": src.name, "psnr": metrics.psnr(output, target, **kw),
           "ssim": metrics.ssim(output, target, **kw),
           "height": target.shape[0], "width": target.shape[1]}
    return row, (source, output, target)


def _protected(path, folders):
    """Raise ValueError if ``path`` is one of the images being scored (inputs or targets)."""
    real = os.path.realpath(path)
    for folder in folders:
        if os.path.dirname(real) == os.path.realpath(folder) and os.path.exists(real):
            raise ValueError(f"{path} is an image of {folder}, not overwritten; choose another "
                             f"--save-dir / --side-by-side folder")


def save_panels(src, panels, *, save_dir=None, side_by_side=None, restored=True, protect=()):
    """Save the output (8-bit PNG) to ``save_dir`` and an ``input | output | target`` strip
    (``output | target`` when nothing was restored) to ``side_by_side``; never over an
    image of the ``protect`` folders."""
    source, output, target = panels
    if save_dir:
        dst = pathlib.Path(save_dir) / f"{src.stem}.png"
        _protected(dst, protect)
        image_io.write_image(dst, image_io.to_uint8(output, scale=255.0))
    if side_by_side:
        shown = (source, output, target) if restored else (output, target)
        strip = np.concatenate([image_io.to_uint8(p, scale=255.0) for p in shown], axis=1)
        dst = pathlib.Path(side_by_side) / f"{src.stem}.png"
        _protected(dst, protect)
        image_io.write_image(dst, strip)


def input_images(input_dir):
    """The image files of ``input_dir`` (by extension), sorted."""
    return sorted(p for p in pathlib.Path(input_dir).iterdir()
                  if p.is_file() and p.suffix.lower() in image_io.IMAGE_EXTENSIONS)


def evaluate_folder(input_dir, target_dir, restorer=None, *, y_channel=False, crop_border=0,
                    max_pixels=image_io.DEFAULT_MAX_PIXELS, save_dir=None, side_by_side=None,
                    progress=True, on_failure=None, warn=None):
    """Score every image of ``input_dir`` against the same-named image of ``target_dir``.

    Args:
        input_dir: degraded images (restored with ``restorer`` first) or, without a
            restorer, already-restored outputs.
        target_dir: ground truth, same file names (or same stems).
        restorer: a :class:`maxim_tf.Restorer`, or None.
        y_channel, crop_border: see :func:`maxim_tf.metrics.psnr`.
        max_pixels: decompression-bomb guard of :func:`maxim_tf.image_io.read_image`.
        save_dir, side_by_side: folders for the outputs / comparison strips (optional).
        progress: a progress bar on stderr.
        on_failure: called with ``(path, exception)`` when an image fails (the others
            go on); ``warn`` with a warning line.

    Returns:
        ``(rows, failures)``: the per-image score dicts and ``[(path, exception)]``.
    """
    import sys

    from tqdm import tqdm

    def write(line):
        tqdm.write(line, file=sys.stderr)

    warn = warn or write
    rows, failures = [], []
    for src in tqdm(input_images(input_dir), unit="img", disable=not progress, file=sys.stderr,
                    dynamic_ncols=True):
        try:
            row, panels = score_pair(src, target_dir, restorer, y_channel=y_channel,
                                     crop_border=crop_border, max_pixels=max_pixels, warn=warn)
            save_panels(src, panels, save_dir=save_dir, side_by_side=side_by_side,
                        restored=restorer is not None, protect=(input_dir, target_dir))
        except Exception as e:  # report, keep going with the rest
            failures.append((src, e))
            if on_failure is not None:
                on_failure(src, e)
            continue
        rows.append(row)
    return rows, failures


def format_csv(rows):
    """Per-image rows plus a final ``mean`` row, as CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "psnr", "ssim", "height", "width"])
    for r in rows:
        writer.writerow([r["file"], f"{r['psnr']:.4f}", f"{r['ssim']:.4f}", r["height"], r["width"]])
    if rows:
        mean_psnr, mean_ssim = mean_scores(rows)
        writer.writerow(["mean", f"{mean_psnr:.4f}", f"{mean_ssim:.4f}", "", ""])
    return buffer.getvalue()


def mean_scores(rows):
    """Mean PSNR (over finite values, as inf would swamp it) and mean SSIM."""
    finite = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
    mean_psnr = float(np.mean(finite)) if finite else float("inf")
    return mean_psnr, float(np.mean([r["ssim"] for r in rows]))
