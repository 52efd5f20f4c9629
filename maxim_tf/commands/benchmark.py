"""``maxim-tf benchmark``: latency, memory and % of matmul peak per runtime; or,
with ``--quality``, restoration quality (PSNR/SSIM) against the input and BM3D."""

import sys


def register(subparsers):
    from maxim_tf.tools.benchmark import RUNTIMES

    p = subparsers.add_parser(
        "benchmark", help="measure inference speed and memory per runtime, or quality",
        description="Benchmark MAXIM models (variant names with random weights, .keras files "
                    "or JSON configs) at square sizes in several runtimes; writes "
                    "results.json, results.md (Markdown table) and latency.png. With --quality: "
                    "PSNR/SSIM of the trained denoise/deblur models on clean photos degraded "
                    "with fixed seeds, against the degraded input and BM3D; writes "
                    "quality.json, quality.md and quality.png.")
    p.add_argument("--models", nargs="+", default=["S-2", "S-3"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                   metavar="RUNTIME", help=f"any of: {', '.join(RUNTIMES)} (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (default 3)")
    p.add_argument("-o", "--output-dir",
                   help="default: benchmarks/results (speed) or benchmarks/quality (--quality)")
    q = p.add_argument_group("quality (--quality)")
    q.add_argument("--quality", action="store_true",
                   help="run the restoration-quality benchmark instead of the speed one")
    q.add_argument("--images", metavar="FOLDER",
                   help="clean photos to degrade and restore (required with --quality)")
    q.add_argument("--denoise-model", default="denoise", metavar="NAME|PATH",
                   help="denoiser (default: saved_models/denoise.keras); 'none' to skip")
    q.add_argument("--deblur-model", default="deblur", metavar="NAME|PATH",
                   help="deblurring model (default: saved_models/deblur.keras); 'none' to skip")
    q.add_argument("--denoise-tflite", nargs="*", default=[], metavar="PATH",
                   help="TFLite exports of the denoiser to score as well")
    q.add_argument("--deblur-tflite", nargs="*", default=[], metavar="PATH",
                   help="TFLite exports of the deblurring model to score as well")
    q.add_argument("--crop", type=int, default=512,
                   help="centre-crop each photo to CROP x CROP (0 = whole; default 512)")
    q.add_argument("--no-bm3d", action="store_true",
                   help="leave BM3D out (it needs `pip install bm3d`)")
    q.add_argument("--seed", type=int, default=0, help="degradation seed (default 0)")
    p.set_defaults(func=run)


def run(args):
    if args.quality:
        return run_quality(args)
    from maxim_tf.tools.benchmark import run_benchmark

    out = args.output_dir or "benchmarks/results"
    try:
        rows = run_benchmark(args.models, args.sizes, args.runtimes, out, repeats=args.repeats)
    except (ValueError, RuntimeError) as e:
        print(f"maxim-tf benchmark: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(rows)} results written to {out}/results.md and latency.png")
    return 0


def run_quality(args):
    from maxim_tf.tools.quality import run_quality as run

    if not args.images:
        print("maxim-tf benchmark: error: --quality needs --images FOLDER (clean photos)",
              file=sys.stderr)
        return 2
    if args.crop < 0:
        print(f"maxim-tf benchmark: error: --crop must be >= 0. Received: {args.crop}",
              file=sys.stderr)
        return 2
    out = args.output_dir or "benchmarks/quality"

    def model(name):
        return None if str(name).lower() == "none" else name

    try:
        results = run(args.images, out, denoise=model(args.denoise_model),
                      deblur=model(args.deblur_model),
                      extra={"denoise": args.denoise_tflite, "deblur": args.deblur_tflite},
                      crop=args.crop, use_bm3d=not args.no_bm3d, seed=args.seed)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"maxim-tf benchmark: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(results['rows'])} scores written to {out}/quality.md, quality.json and "
          f"quality.png")
    return 0
