"""Where the time goes, by op class and image size: TensorFlow's profiler on the default path.

    python benchmarks/profile_ops.py [--models S-3 denoise] [--sizes 256 512 1024]
        [-o benchmarks/results]

For each model (a variant with random weights, or a shipped model name) and size:
the Restorer's graph (``maxim_tf.tools.benchmark.make_runner("keras-graph")``: one
trace for every size, Grappler's oneDNN fusions applied), two warm-up calls, the
min wall time of 2 more calls, then one call under ``tf.profiler`` whose trace is
summed by op type (time on all threads: the sum exceeds the wall time when ops run
in parallel). The table gives each class's share and its growth from the smallest
to the largest size against the pixel ratio (16 from 256² to 1024²): a class that
grows faster than the pixels is what makes the whole grow faster than linearly.
Writes ``profile_ops.json`` and ``profile_ops.md``.
"""

import argparse
import collections
import glob
import json
import pathlib
import shutil
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
# Profiler events that are not ops (the function call itself, executor bookkeeping).
_NOT_OPS = ("Executor", "Run", "Function", "Session")


def op_times(run, x):
    """``{op type: (seconds on all threads, count)}`` for one call of ``run(x)``."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="maxim-profile-")
    try:
        tf.profiler.experimental.start(logdir)
        run(x)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(pathlib.Path(
            glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    seconds, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or name.startswith(_NOT_OPS):
                    continue
                op = name.rsplit(":", 1)[-1]
                if op and op[0] != "/" and " " not in op and not op.startswith(_NOT_OPS):
                    seconds[op] += event.duration_ps * 1e-12
                    count[op] += 1
    return {op: (seconds[op], count[op]) for op in seconds}


def profile(spec, sizes, log):
    from maxim_tf import hub
    from maxim_tf.tools.benchmark import make_runner

    run = make_runner("keras-graph", hub.load_model(spec, allow_untrained=True))
    rows = []
    for size in sizes:
        x = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
        run(x)
        run(x)
        walls = []
        for _ in range(2):
            start = time.perf_counter()
            run(x)
            walls.append(time.perf_counter() - start)
        ops = op_times(run, x)
        rows.append({"size": size, "wall_s": min(walls), "ops": ops})
        log(f"{spec} {size}²: {min(walls):.3f} s, op time {sum(s for s, _ in ops.values()):.3f} s")
    return rows


def markdown(spec, rows, top=10):
    first, last = rows[0], rows[-1]
    pixels = (last["size"] / first["size"]) ** 2
    total = {r["size"]: sum(s for s, _ in r["ops"].values()) for r in rows}
    ranked = sorted(last["ops"], key=lambda op: -last["ops"][op][0])[:top]
    head = " | ".join(f"{r['size']}² s (share)" for r in rows)
    lines = [f"### {spec}", "",
             f"| op | count | {head} | growth {first['size']}²→{last['size']}² "
             f"(pixels ×{pixels:.0f}) |",
             "|---|---|" + "---|" * len(rows) + "---|"]
    for op in ranked:
        cells = []
        for r in rows:
            s = r["ops"].get(op, (0.0, 0))[0]
            cells.append(f"{s:.3f} ({100 * s / total[r['size']]:.0f} %)")
        growth = last["ops"][op][0] / max(first["ops"].get(op, (1e-12, 0))[0], 1e-12)
        lines.append(f"| `{op}` | {last['ops'][op][1]} | " + " | ".join(cells) + f" | ×{growth:.1f} |")
    lines.append("| **all ops** | | " + " | ".join(f"{total[r['size']]:.3f}" for r in rows)
                 + f" | ×{total[last['size']] / total[first['size']]:.1f} |")
    lines.append("| **wall** | | " + " | ".join(f"{r['wall_s']:.3f}" for r in rows)
                 + f" | ×{last['wall_s'] / first['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["S-3", "denoise"])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("-o", "--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    import os

    import maxim_tf
    from maxim_tf import fileio

    maxim_tf.prefer_onednn()  # before TensorFlow loads, as the maxim-tf command does

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {m: profile(m, args.sizes, lambda s: print(s, flush=True)) for m in args.models}
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_bytes(out / "profile_ops.json", json.dumps(results, indent=1).encode())
    text = ("Op time by class (TensorFlow profiler, default fp32 graph, batch 1; seconds summed "
            "over threads). Written by `python benchmarks/profile_ops.py`.\n\n"
            + "\n".join(markdown(m, rows) for m, rows in results.items()))
    fileio.atomic_write_bytes(out / "profile_ops.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
