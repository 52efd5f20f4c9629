"""``maxim-tf benchmark``: latency, memory and % of matmul peak per runtime."""

import sys


def register(subparsers):
    from maxim_tf.benchmark import RUNTIMES

    p = subparsers.add_parser(
        "benchmark", help="measure inference speed and memory per runtime",
        description="Benchmark MAXIM models (variant names with random weights, .keras files "
                    "or JSON configs) at square sizes in several runtimes; writes "
                    "results.json, results.md (Markdown table) and latency.png.")
    p.add_argument("--models", nargs="+", default=["S-2", "S-3"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                   metavar="RUNTIME", help=f"any of: {', '.join(RUNTIMES)} (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (default 3)")
    p.add_argument("-o", "--output-dir", default="benchmarks/results")
    p.set_defaults(func=run)


def run(args):
    from maxim_tf.benchmark import run_benchmark

    try:
        rows = run_benchmark(args.models, args.sizes, args.runtimes, args.output_dir,
                             repeats=args.repeats)
    except (ValueError, RuntimeError) as e:
        print(f"maxim-tf benchmark: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(rows)} results written to {args.output_dir}/results.md and latency.png")
    return 0
