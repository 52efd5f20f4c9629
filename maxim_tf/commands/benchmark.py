"""``maxim-tf benchmark``: latency, memory and % of matmul peak per runtime
(``--measure speed``, the default); or restoration quality, PSNR/SSIM against the
input and BM3D (``--measure quality``). The benchmarks themselves are the tools
:mod:`maxim_tf.tools.benchmark` and :mod:`maxim_tf.tools.quality`."""

from maxim_tf import errors
from maxim_tf.commands._common import int_at_least, renamed, run_failed, usage_error


def register(subparsers):
    from maxim_tf.tools.benchmark import RUNTIMES

    p = subparsers.add_parser(
        "benchmark", help="measure inference speed and memory per runtime, or quality",
        description="--measure speed (default): benchmark MAXIM models (variant names with "
                    "random weights, .keras files or JSON configs) at square sizes in several "
                    "runtimes; writes results.json, results.md (Markdown table) and "
                    "latency.png. --measure quality: PSNR/SSIM of the trained denoise/deblur "
                    "models on clean photos degraded with fixed seeds, against the degraded "
                    "input and BM3D; writes quality.json, quality.md and quality.png.")
    p.add_argument("--measure", choices=("speed", "quality"), default="speed",
                   help="speed: latency/memory per runtime (default); quality: PSNR/SSIM")
    renamed(p, "--quality", new="--measure quality")
    p.add_argument("-o", "--output-dir",
                   help="default: benchmarks/results (speed) or benchmarks/quality (quality)")
    s = p.add_argument_group("speed (--measure speed)")
    s.add_argument("--models", nargs="+", default=["S-2", "S-3"])
    s.add_argument("--sizes", nargs="+", type=int_at_least(1), default=[256, 512, 1024])
    s.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                   metavar="RUNTIME", help=f"any of: {', '.join(RUNTIMES)} (default: all)")
    s.add_argument("--repeats", type=int_at_least(1), default=3, help="timed runs per cell (default 3)")
    q = p.add_argument_group("quality (--measure quality)")
    q.add_argument("--images", metavar="FOLDER",
                   help="clean photos to degrade and restore (required with --measure quality)")
    q.add_argument("--denoise-model", default="denoise", metavar="NAME|PATH",
                   help="denoiser (default: saved_models/denoise.keras); 'none' to skip")
    q.add_argument("--deblur-model", default="deblur", metavar="NAME|PATH",
                   help="deblurring model (default: saved_models/deblur.keras); 'none' to skip")
    q.add_argument("--denoise-tflite", nargs="*", default=[], metavar="PATH",
                   help="TFLite exports of the denoiser to score as well")
    q.add_argument("--deblur-tflite", nargs="*", default=[], metavar="PATH",
                   help="TFLite exports of the deblurring model to score as well")
    q.add_argument("--center-crop", type=int_at_least(0), default=512, metavar="N",
                   help="centre-crop each photo to N x N (0 = whole; default 512)")
    renamed(q, "--crop", new="--center-crop")
    q.add_argument("--no-bm3d", action="store_true",
                   help="leave BM3D out (it needs `pip install bm3d`)")
    q.add_argument("--seed", type=int, default=0, help="degradation seed (default 0)")
    p.set_defaults(func=run)


def run(args):
    if args.measure == "quality":
        return run_quality(args)
    from maxim_tf.tools.benchmark import run_benchmark

    out = args.output_dir or "benchmarks/results"
    try:
        rows = run_benchmark(args.models, args.sizes, args.runtimes, out, repeats=args.repeats)
    except ValueError as e:  # an unknown model: nothing measured
        raise usage_error(e) from e
    except RuntimeError as e:  # a benchmark task failed
        raise run_failed(e) from e
    print(f"{len(rows)} results written to {out}/results.md and latency.png")
    return 0


def run_quality(args):
    from maxim_tf.tools.quality import run_quality as run

    if not args.images:
        raise errors.UsageError("--measure quality needs --images FOLDER (clean photos)")
    if args.center_crop < 0:
        raise errors.UsageError(f"--center-crop must be >= 0. Received: {args.center_crop}")
    out = args.output_dir or "benchmarks/quality"

    def model(name):
        return None if str(name).lower() == "none" else name

    try:
        results = run(args.images, out, denoise=model(args.denoise_model),
                      deblur=model(args.deblur_model),
                      extra={"denoise": args.denoise_tflite, "deblur": args.deblur_tflite},
                      crop=args.center_crop, use_bm3d=not args.no_bm3d, seed=args.seed,
                      progress=not args.quiet)
    except (OSError, ValueError) as e:  # no photos, an unknown model: nothing scored
        raise usage_error(e) from e
    except RuntimeError as e:  # BM3D missing, a runtime failure
        raise run_failed(e) from e
    print(f"{len(results['rows'])} scores written to {out}/quality.md, quality.json and "
          f"quality.png")
    return 0
