"""``maxim-tf restore``: restore image files and folders with a MAXIM model.

Parses the flags and calls :mod:`maxim_tf.restore_files` (the file-level work) with a
:class:`maxim_tf.Restorer`."""

import time

from maxim_tf import errors, fileio, image_io
from maxim_tf._utils import BACKENDS, PRECISIONS
from maxim_tf.commands._common import int_at_least, positive_number, renamed, usage_error
from maxim_tf.restore_files import check_output_dir, collect_inputs, restore_paths

DEFAULT_MODEL = "denoise"

DESCRIPTION = """\
Restore images of any size with a MAXIM model. Each image is padded as the
official evaluation does (odd sides made even, reflect padding to the model's
multiple), restored and cropped back to exactly its size. The output keeps the
input's format (PNG->PNG, JPEG->JPEG at quality 95, 4:4:4), bit depth (16-bit PNG
stays 16-bit), grayscale/colour and alpha channel (re-attached untouched); EXIF
orientation is applied. An output that already exists is skipped (and counted)
unless --overwrite is given; an input file is never overwritten, even with
--output-dir equal to an input folder. A failed file is reported and the batch
goes on; the exit status is 1 if any file failed, 2 on a usage error (a bad
option, an unusable model or output folder: nothing done)."""


def add_model_arguments(parser, required=True,
                        help="a .keras file, a name from saved_models/ (or $MAXIM_TF_MODEL_DIR), "
                             "or a preset of `maxim-tf models`",
                        default=None):
    """Add --model, --ensemble, --tile, --overlap, --tile-batch, --max-pixels, --backend,
    --precision."""
    parser.add_argument("--model", "-m", required=required, default=default, metavar="NAME|PATH",
                        help=help)
    parser.add_argument("--ensemble", action="store_true",
                        help="geometric self-ensemble x8 (flips x 90-degree rotations; 8x slower)")
    parser.add_argument("--tile", type=int_at_least(0), default=0, metavar="N",
                        help="restore by overlapping N x N tiles (multiple of the model's size "
                             "multiple, e.g. 512); memory then follows N, not the image (default: off)")
    parser.add_argument("--overlap", type=int_at_least(0), default=64, metavar="M",
                        help="tile overlap in pixels, blended smoothly (default: 64)")
    parser.add_argument("--tile-batch", type=int_at_least(1), default=4, metavar="B",
                        help="tiles / ensemble views per model call (default: 4)")
    renamed(parser, "--batch-size", new="--tile-batch")
    parser.add_argument("--max-pixels", type=positive_number, default=image_io.DEFAULT_MAX_PIXELS, metavar="P",
                        help="refuse images with more pixels than P (decompression-bomb guard), "
                             "and work over P pixels per model call counted after padding to the "
                             "model's multiple (with --tile: tile x tile x tile batch); an untiled "
                             "image that padding makes over 4x larger (and over 512x512) is refused: "
                             "tile it (default: 100e6)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (default): shipped models and models with a fast-start twin "
                             "(`maxim-tf models --prepare`) run on LiteRT through their verified "
                             "fp32 .tflite twin (same outputs to 1e-5 / 1e-4, starts in "
                             "milliseconds), other models on Keras; keras: always Keras")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="float32",
                        help="float32 (default) or bfloat16 compute on Keras (layer-norm "
                             "statistics in float32); faster only on CPUs with bfloat16 units "
                             "(AVX512-BF16, AMX) and recent GPUs")


def make_restorer(args):
    """Build a Restorer from the model arguments; raises on a bad model or option."""
    from maxim_tf.restore import Restorer

    return Restorer(args.model, tile=args.tile or None, overlap=args.overlap,
                    ensemble=args.ensemble, batch_size=args.tile_batch,
                    backend=getattr(args, "backend", "auto"),
                    precision=getattr(args, "precision", "float32"),
                    max_pixels=getattr(args, "max_pixels", image_io.DEFAULT_MAX_PIXELS),
                    progress=not getattr(args, "quiet", False))


def register(subparsers):
    """Add the ``restore`` subcommand."""
    p = subparsers.add_parser("restore", help="restore image files and folders",
                              description=DESCRIPTION)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also restore images in subfolders of folder inputs (mirrored in OUTDIR)")
    p.add_argument("--image-format", choices=("same", "png", "jpeg"), default="same",
                   help="format of the restored files (default: same as the input)")
    p.add_argument("--jpeg-quality", type=int_at_least(1, 100), default=image_io.JPEG_QUALITY, metavar="Q",
                   help="quality of JPEG (and WebP) outputs, 1-100 (default: 95)")
    renamed(p, "--format", new="--image-format")
    renamed(p, "--quality", new="--jpeg-quality")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (default: skip them)")
    add_model_arguments(
        p, required=False, default=DEFAULT_MODEL,
        help="a .keras file, a name from saved_models/ (or $MAXIM_TF_MODEL_DIR): "
             "denoise (default; blind colour denoising, noise sigma 0-50), deblur "
             "(defocus/Gaussian blur), or an official preset of `maxim-tf models` such as "
             "maxim-s3-denoising-sidd (downloaded and converted once, then cached)")
    p.set_defaults(func=run)


def run(args):
    """Entry point of ``maxim-tf restore``; returns the exit status."""
    jobs, missing = collect_inputs(args.inputs, args.recursive)
    if not jobs and not missing:
        raise errors.NoInputsError("no image files found in the inputs")
    created = []  # folders this run made: removed again if they stay empty
    try:
        problem = check_output_dir(args.output_dir, created)
        if problem:
            raise errors.UsageError(problem)
        start = time.perf_counter()
        try:
            restorer = make_restorer(args)
        except (OSError, ValueError, TypeError) as e:
            raise usage_error(e) from e
        load_seconds = time.perf_counter() - start
        startup = (restorer.backend, load_seconds, restorer.warm_up() if jobs else 0.0)
        return _restore_all(restorer, jobs, missing, args, created, startup)
    finally:
        fileio.remove_empty_dirs(created)


def _restore_all(restorer, jobs, missing, args, created, startup):
    result = restore_paths(
        restorer, jobs, args.output_dir, missing=missing, created=created,
        image_format=args.image_format, jpeg_quality=args.jpeg_quality,
        max_pixels=args.max_pixels, overwrite=args.overwrite, progress=not args.quiet)
    _print_summary(result.restored, result.failures, result.megapixels, result.seconds,
                   args.output_dir, startup, result.skipped)
    return 1 if result.failures else 0


def _print_summary(done, failures, megapixels, seconds, outdir, startup, skipped=0):
    speed = f"{seconds / megapixels:.2f} s/MP" if megapixels else "n/a s/MP"
    backend, load_seconds, prepare_seconds = startup
    print(f"Restored {done} image(s) into {outdir}, {len(failures)} failed; "
          f"{megapixels:.2f} MP in {seconds:.1f} s of compute ({speed}); once per run: "
          f"model load {load_seconds:.1f} s, graph preparation {prepare_seconds:.1f} s "
          f"({backend}).")
    if skipped:
        print(f"Skipped {skipped} image(s) whose output already exists (--overwrite replaces "
              f"them).")
    if failures:
        print("Failed:\n  " + "\n  ".join(failures))
