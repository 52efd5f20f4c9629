"""``maxim-tf eval``: PSNR / SSIM of restored images against targets, as the official code.

Parses the flags and calls :func:`maxim_tf.evaluate.evaluate_folder` (the scoring)."""

import os
import sys

from maxim_tf import errors, fileio, image_io
from maxim_tf.commands._common import int_at_least, usage_error
from maxim_tf.commands.restore import add_model_arguments
from maxim_tf.restore_files import check_output_dir, describe_error

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
    p.add_argument("--crop-border", type=int_at_least(0), default=0, metavar="N",
                   help="pixels ignored on each side (default: 0)")
    p.add_argument("--csv", metavar="FILE", help="write the per-image CSV here (default: stdout)")
    p.add_argument("--save-dir", metavar="D", help="also save the restored images here (8-bit PNG)")
    p.add_argument("--side-by-side", metavar="D",
                   help="save an 'input | output | target' PNG per image here")
    add_model_arguments(p, required=False,
                        help="restore the inputs with this model first (.keras path, saved name or "
                             "preset of `maxim-tf models`); without it the inputs are scored as "
                             "they are")
    p.set_defaults(func=run)


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

    from maxim_tf import evaluate

    problem = _prepare_dirs(args, created)
    if problem:
        raise errors.UsageError(problem)
    restorer = None
    if args.model:
        from maxim_tf.commands.restore import make_restorer

        try:
            restorer = make_restorer(args)
        except (OSError, ValueError, TypeError) as e:
            raise usage_error(e) from e
    if not evaluate.input_images(args.input_dir):
        raise errors.NoInputsError(f"no image files in {args.input_dir}")

    def on_failure(src, error):
        tqdm.write(describe_error(src, error), file=sys.stderr)

    rows, failures = evaluate.evaluate_folder(
        args.input_dir, args.target_dir, restorer, y_channel=args.y_channel,
        crop_border=args.crop_border, max_pixels=args.max_pixels, save_dir=args.save_dir,
        side_by_side=args.side_by_side, progress=not args.quiet, on_failure=on_failure)
    return _report(rows, [describe_error(src, e) for src, e in failures], args)


def _report(rows, failures, args):
    from maxim_tf import evaluate

    text = evaluate.format_csv(rows)
    if args.csv:
        image_io.atomic_write_bytes(args.csv, text.encode())  # ImageIOError: exit 2
    else:
        sys.stdout.write(text)
    if rows:
        mean_psnr, mean_ssim = evaluate.mean_scores(rows)
        print(f"Mean over {len(rows)} image(s): PSNR {mean_psnr:.4f} dB, SSIM {mean_ssim:.4f}; "
              f"{len(failures)} failed.", file=sys.stderr if not args.csv else sys.stdout)
    for line in failures:
        print(f"Failed: {line}", file=sys.stderr)
    return 1 if failures or not rows else 0
