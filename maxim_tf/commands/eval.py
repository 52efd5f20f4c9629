"""``maxim-tf eval``: PSNR / SSIM of restored images against targets, as the official code."""

import csv
import io
import math
import os
import pathlib
import sys

import numpy as np

from maxim_tf import fileio, image_io, metrics
from maxim_tf.commands.restore import add_model_arguments, check_output_dir, describe_error

DESCRIPTION = """\
Score images against targets of the same name with PSNR and SSIM computed as the
official MAXIM evaluation does: RGB on the [0, 255] scale, the model's float output
not clipped or rounded (--y-channel: BT.601 Y only, as used for deraining;
--crop-border N: ignore N pixels on each side). With --model the images of
--input-dir are restored first (official padding, optional ensemble/tiling);
without it they are taken as already-restored outputs. Prints a per-image CSV
(or writes it to --csv) and the means; exit status 1 if any image failed."""


def register(subparsers):
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser("eval", help="PSNR/SSIM against target images",
                              description=DESCRIPTION)
    p.add_argument("--input-dir", required=True, metavar="I", help="degraded (or restored) images")
    p.add_argument("--target-dir", required=True, metavar="T", help="ground truth, same file names")
    p.add_argument("--y-channel", action="store_true", help="score the BT.601 Y channel only")
    p.add_argument("--crop-border", type=int, default=0, metavar="N",
                   help="pixels ignored on each side (default: 0)")
    p.add_argument("--csv", metavar="FILE", help="write the per-image CSV here (default: stdout)")
    p.add_argument("--save-dir", metavar="D", help="also save the restored images here (8-bit PNG)")
    p.add_argument("--side-by-side", metavar="D",
                   help="save an 'input | output | target' PNG per image here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_model_arguments(p, required=False,
                        help="restore the inputs with this model first (.keras path, saved name or "
                             "preset of `maxim-tf models`); without it the inputs are scored as "
                             "they are")
    p.set_defaults(func=run)


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
    scale = 255.0 / (65535.0 if image.bit_depth == 16 else 255.0)
    rgb = image.pixels.astype(np.float64) * scale
    return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


def _to_uint8(rgb255):
    return np.rint(np.clip(rgb255, 0, 255)).astype(np.uint8)


def score_pair(src, target_dir, restorer, args):
    """Restore (if a model is given) and score one input; returns (row dict, panels)."""
    image = image_io.read_image(src, max_pixels=args.max_pixels)
    if image.frames > 1:
        from tqdm import tqdm

        tqdm.write(f"{src}: warning: {image.frames} frames/pages; only the first is scored",
                   file=sys.stderr)
    target_path = find_target(src, target_dir)
    target = to_rgb255(image_io.read_image(target_path, max_pixels=args.max_pixels))
    source = to_rgb255(image)
    if restorer is None:
        output = source
    else:
        output = restorer.restore_float(source[None].astype(np.float32) / 255.0)[0].astype(np.float64) * 255.0
    if output.shape != target.shape:
        raise ValueError(f"{src}: size {output.shape[1]}x{output.shape[0]} differs from target "
                         f"{target_path} ({target.shape[1]}x{target.shape[0]})")
    kw = dict(crop_border=args.crop_border, y_channel=args.y_channel)
    row = {"file": src.name, "psnr": metrics.psnr(output, target, **kw),
           "ssim": metrics.ssim(output, target, **kw),
           "height": target.shape[0], "width": target.shape[1]}
    return row, (source, output, target)


def _protected(path, args):
    """Raise ValueError if ``path`` is one of the images being scored (inputs or targets)."""
    real = os.path.realpath(path)
    for folder in (args.input_dir, args.target_dir):
        if os.path.dirname(real) == os.path.realpath(folder) and os.path.exists(real):
            raise ValueError(f"{path} is an image of {folder}, not overwritten; choose another "
                             f"--save-dir / --side-by-side folder")


def _save_extras(src, panels, args):
    source, output, target = panels
    if args.save_dir:
        dst = pathlib.Path(args.save_dir) / f"{src.stem}.png"
        _protected(dst, args)
        image_io.write_image(dst, _to_uint8(output))
    if args.side_by_side:
        shown = (source, output, target) if args.model else (output, target)
        strip = np.concatenate([_to_uint8(p) for p in shown], axis=1)
        dst = pathlib.Path(args.side_by_side) / f"{src.stem}.png"
        _protected(dst, args)
        image_io.write_image(dst, strip)


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


def _prepare_dirs(args, created):
    for folder in (args.input_dir, args.target_dir):
        if not os.path.isdir(folder):
            return f"{folder} is not a directory"
    for folder in (args.save_dir, args.side_by_side):
        problem = folder and check_output_dir(folder, created)
        if problem:
            return problem
    return None


def run(args):
    """Entry point of ``maxim-tf eval``; returns the exit status."""
    created = []  # output folders this run made: removed again if they stay empty
    try:
        return _run(args, created)
    finally:
        fileio.remove_empty_dirs(created)


def _run(args, created):
    from tqdm import tqdm

    problem = _prepare_dirs(args, created)
    if problem:
        print(f"maxim-tf eval: {problem}", file=sys.stderr)
        return 2
    restorer = None
    if args.model:
        from maxim_tf.commands.restore import make_restorer

        try:
            restorer = make_restorer(args)
        except (OSError, ValueError, TypeError) as e:
            print(f"maxim-tf eval: {e}", file=sys.stderr)
            return 2
    sources = sorted(p for p in pathlib.Path(args.input_dir).iterdir()
                     if p.is_file() and p.suffix.lower() in image_io.IMAGE_EXTENSIONS)
    if not sources:
        print(f"maxim-tf eval: no image files in {args.input_dir}", file=sys.stderr)
        return 1
    rows, failures = [], []
    for src in tqdm(sources, unit="img", disable=args.quiet, file=sys.stderr, dynamic_ncols=True):
        try:
            row, panels = score_pair(src, args.target_dir, restorer, args)
            _save_extras(src, panels, args)
        except Exception as e:  # report, keep going with the rest
            failures.append(describe_error(src, e))
            tqdm.write(failures[-1], file=sys.stderr)
            continue
        rows.append(row)
    return _report(rows, failures, args)


def _report(rows, failures, args):
    text = format_csv(rows)
    if args.csv:
        try:
            image_io.atomic_write_bytes(args.csv, text.encode())
        except image_io.ImageIOError as e:
            print(f"maxim-tf eval: {e}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    if rows:
        mean_psnr, mean_ssim = mean_scores(rows)
        print(f"Mean over {len(rows)} image(s): PSNR {mean_psnr:.4f} dB, SSIM {mean_ssim:.4f}; "
              f"{len(failures)} failed.", file=sys.stderr if not args.csv else sys.stdout)
    for line in failures:
        print(f"Failed: {line}", file=sys.stderr)
    return 1 if failures or not rows else 0
