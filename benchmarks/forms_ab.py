"""Before/after of the CPU graph forms (``graph_form``, :func:`maxim_tf.fused.active_graph_form`).

    python benchmarks/forms_ab.py [--models S-3 denoise] [--sizes 256 512]
        [--rounds 3] [--form avx2] [-o benchmarks/results]

In one process, for each model (a variant with random weights, or a shipped model
name) and size: the Restorer's graph (one trace for every size) traced twice, once
with TensorFlow's stock forms (``graph_form="stock"``) and once with this machine's
automatic choice (or ``--form``), called alternately ``--rounds`` times after
a warm-up; the table gives the min wall times, their ratio and the largest output
difference (random-weight variants have outputs in the thousands: compare the
difference with the output range printed beside it). Writes ``forms_ab.json`` and
``forms_ab.md``.
"""

import argparse
import json
import os
import pathlib
import time

import numpy as np
from speed_report import _cpu_name  # benchmarks/ is sys.path[0]

REPO = pathlib.Path(__file__).resolve().parents[1]


def _traced(model, form):
    import tensorflow as tf

    from maxim_tf import fused

    with fused.graph_form_scope(form):
        fn = tf.function(lambda t: model(t, training=False),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        fn.get_concrete_function()  # the form is chosen at trace time
    return fn, fused.resolve_graph_form(form)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["S-3", "denoise"])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--form", default="auto", choices=("auto", "stock", "avx2"),
                   help="compare the stock form with this one (e.g. avx2, to measure it on "
                        "another CPU) instead of this machine's automatic choice")
    p.add_argument("-o", "--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)

    import maxim_tf

    maxim_tf.prefer_onednn()  # before TensorFlow loads, as the maxim-tf command does
    import tensorflow as tf

    from maxim_tf.tools.benchmark import load_model

    rows = []
    for name in args.models:
        model = load_model(name)
        stock, stock_forms = _traced(model, "stock")
        default, default_forms = _traced(model, args.form)
        for size in args.sizes:
            x = tf.constant(np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32))
            out = {}
            for tag, fn in (("stock", stock), ("default", default)):
                out[tag] = tf.nest.flatten(fn(x))[-1].numpy()  # warm-up
            times = {"stock": [], "default": []}
            for _ in range(args.rounds):
                for tag, fn in (("stock", stock), ("default", default)):
                    start = time.perf_counter()
                    tf.nest.flatten(fn(x))[-1].numpy()
                    times[tag].append(time.perf_counter() - start)
            row = {"model": name, "size": size, "stock_s": min(times["stock"]),
                   "default_s": min(times["default"]),
                   "max_abs_diff": float(np.abs(out["stock"] - out["default"]).max()),
                   "output_range": [float(out["stock"].min()), float(out["stock"].max())],
                   "stock_forms": stock_forms, "default_forms": default_forms}
            row["speedup"] = row["stock_s"] / row["default_s"]
            rows.append(row)
            print(f"{name} {size}²: stock {row['stock_s']:.3f} s, default {row['default_s']:.3f} s, "
                  f"{row['speedup']:.3f}x, max|diff| {row['max_abs_diff']:.2e}", flush=True)

    out_dir = pathlib.Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"cpu": _cpu_name(), "rounds": args.rounds,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "form": args.form}
    (out_dir / "forms_ab.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["Graph forms before/after, one run (`python benchmarks/forms_ab.py`): stock = "
             "`graph_form=\"stock\"`, default = "
             + (f"`--form {args.form}`" if args.form != "auto" else "this machine's choice") + "; "
             f"min of {args.rounds} alternated calls, batch 1, fp32.", "",
             "| model | size | stock forms | default forms | stock s | default s | speed-up | max abs diff (output range) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size']}² | {r['stock_forms']} | {r['default_forms']} | "
                     f"{r['stock_s']:.3f} | {r['default_s']:.3f} | {r['speedup']:.2f}× | "
                     f"{r['max_abs_diff']:.1e} ({r['output_range'][0]:.3g} … {r['output_range'][1]:.3g}) |")
    (out_dir / "forms_ab.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
