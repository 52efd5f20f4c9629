"""``maxim-tf restore-beam``: restore image globs with an Apache Beam RunInference pipeline."""

import argparse
import logging
import sys

from maxim_tf import image_io
from maxim_tf.commands._common import int_at_least
from maxim_tf.commands.restore import DEFAULT_MODEL, add_model_arguments

DESCRIPTION = """\
Restore every image matched by INPUT_GLOB (local paths or any Beam filesystem:
gs://, s3://, hdfs://; ** descends into subfolders; a local folder means all
files below it) with an Apache Beam pipeline (RunInference), on the DirectRunner
here or on Dataflow, Flink or Spark. Outputs mirror the inputs' paths relative
to each glob's base under the output prefix, with the names, formats and pixels
of `maxim-tf restore`; each is written under a temporary name and renamed (safe
under Beam's bundle retries). PREFIX/manifest.jsonl lists every input once
(input, output, width, height, seconds, status, error), PREFIX/failed.jsonl the
failed ones; a bad file never stops the pipeline, and each failed input is also
reported on stderr, one line each, as `maxim-tf restore` does. Needs the beam
extra: pip install "maxim-tf[beam]". Exit status 1 if any input failed; 2 (nothing
done) for a malformed glob (a '[' without its ']'; write a literal '[' as '[[]') or
one that matches no file."""


def register(subparsers):
    """Add the ``restore-beam`` subcommand."""
    p = subparsers.add_parser("restore-beam", help="restore image globs with an Apache Beam pipeline",
                              description=DESCRIPTION)
    p.add_argument("inputs", nargs="+", metavar="INPUT_GLOB",
                   help="file globs (quote them), files or local folders")
    p.add_argument("-o", "--output-dir", required=True, metavar="PREFIX",
                   help="output folder or prefix (local, gs://bucket/path, ...)")
    p.add_argument("--format", choices=("same", "png", "jpeg"), default="same",
                   help="output format (default: same as the input)")
    p.add_argument("--jpeg-quality", type=int_at_least(1, 100), default=image_io.JPEG_QUALITY,
                   metavar="Q", help="JPEG quality, 1-100 (default: 95)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave inputs whose output exists alone (a re-run does only what is missing)")
    add_model_arguments(p, required=False, default=DEFAULT_MODEL,
                        help="a .keras file, a shipped name (denoise, the default; deblur) or a "
                             "preset of `maxim-tf models`; resolved on every worker")
    p.add_argument("--images-per-batch", type=int_at_least(1), default=1, metavar="N",
                   help="most images per RunInference call (default: 1)")
    p.add_argument("--stack-same-size", action="store_true",
                   help="run same-size images of a RunInference batch as one model call "
                        "(faster on GPUs; float results may differ in the last bit)")
    p.add_argument("--threads", type=int_at_least(0), default=0, metavar="N",
                   help="TensorFlow intra-op (or LiteRT) threads per worker (default: all cores)")
    p.add_argument("--inter-op-threads", type=int_at_least(0), default=0, metavar="N",
                   help="TensorFlow inter-op threads per worker (default: TensorFlow's)")
    p.add_argument("--share-model-across-processes", action="store_true",
                   help="one model per machine instead of one per worker process (large models)")
    p.add_argument("--runner", default="DirectRunner",
                   help="Beam runner: DirectRunner (default), PrismRunner, DataflowRunner, "
                        "FlinkRunner, SparkRunner, ...")
    p.add_argument("--direct-num-workers", type=int_at_least(1), default=1, metavar="N",
                   help="DirectRunner workers (default: 1)")
    p.add_argument("--direct-running-mode", default=None,
                   choices=("in_memory", "multi_threading", "multi_processing"),
                   help="DirectRunner mode (default: in_memory for 1 worker, else multi_threading)")
    p.add_argument("--pipeline-options", nargs=argparse.REMAINDER, default=[], metavar="OPTION",
                   help="must come last: every argument after it goes to Beam's PipelineOptions "
                        "unchanged (e.g. --project=P --region=R --temp_location=gs://b/tmp)")
    p.set_defaults(func=run)


def pipeline_options(args):
    """Beam ``PipelineOptions`` from the known flags and the ``--pipeline-options`` rest."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = [f"--runner={args.runner}"]
    if args.runner in ("DirectRunner", "direct"):
        mode = args.direct_running_mode or ("in_memory" if args.direct_num_workers <= 1
                                            else "multi_threading")
        flags += [f"--direct_num_workers={args.direct_num_workers}",
                  f"--direct_running_mode={mode}"]
        if not getattr(args, "verbose", False):  # worker processes log at INFO otherwise
            flags.append("--default_sdk_harness_log_level=ERROR")
    return PipelineOptions(flags + list(args.pipeline_options or []))


def run(args):
    """Entry point of ``maxim-tf restore-beam``; returns the exit status."""
    if not args.verbose:  # Beam's import and workers log warnings about optional GCP parts
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("maxim_tf.tools.beam").setLevel(logging.WARNING)
    try:
        from maxim_tf.tools import beam
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "apache_beam":
            raise
        print('maxim-tf restore-beam: this needs Apache Beam: pip install "maxim-tf[beam]"',
              file=sys.stderr)
        return 2
    handler = beam.MaximModelHandler(
        args.model, tile=args.tile, overlap=args.overlap, ensemble=args.ensemble,
        batch_size=args.tile_batch, backend=args.backend, precision=args.precision,
        threads=args.threads,
        inter_op_threads=args.inter_op_threads, images_per_batch=args.images_per_batch,
        stack_same_size=args.stack_same_size,
        share_across_processes=args.share_model_across_processes, max_pixels=args.max_pixels)
    _, metrics = beam.run(args.inputs, args.output_dir, handler, pipeline_options(args),
                          requested_format=args.format, jpeg_quality=args.jpeg_quality,
                          skip_existing=args.skip_existing, max_pixels=args.max_pixels)
    dead_letter = beam._join(args.output_dir, beam.DEAD_LETTER)
    failed = beam.failed_records(args.output_dir) if metrics["failures"] else []
    for record in sorted(failed, key=lambda r: str(r.get("input"))):  # as `restore` prints them
        print(_failure_line(record), file=sys.stderr)
    if metrics["failures"]:
        print(f"maxim-tf restore-beam: {metrics['failures']} input(s) failed; the list and "
              f"the reasons: {dead_letter}", file=sys.stderr)
    if not args.quiet:
        mp = metrics["pixels"] / 1e6
        speed = (f"{metrics['ms_per_megapixel'] / 1000:.2f} s/MP of compute"
                 if metrics["ms_per_megapixel"] is not None else "n/a s/MP")
        print(f"Restored {metrics['images']} image(s) into {args.output_dir}, "
              f"{metrics['failures']} failed, {metrics['skipped']} skipped; {mp:.2f} MP "
              f"({speed}). Manifest: {beam._join(args.output_dir, beam.MANIFEST)}")
    return 1 if metrics["failures"] else 0


def _failure_line(record):
    """One line naming the input and the problem (the error already starts with the input
    where the pipeline wrote it so)."""
    src, text = str(record.get("input")), str(record.get("error") or "failed")
    text = " ".join(text.split("\n")).strip()
    return text if text.startswith(src) else f"{src}: {text}"
