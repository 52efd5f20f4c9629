"""Before/after of the CPU graph forms (:func:`maxim_tf.fused.gelu_form`, :func:`~maxim_tf.fused.conv_form`).

    python benchmarks/forms_ab.py [--models S-3 denoise] [--sizes 256 512]
        [--rounds 3] [--forms GELU,CONV] [-o benchmarks/results]

In one process, for each model (a variant with random weights, or a shipped model
name) and size: the Restorer's graph (one trace for every size) traced twice, once
with TensorFlow's stock forms (``MAXIM_TF_GELU=fused``, ``MAXIM_TF_CONV=native``)
and once with this machine's defaults, called alternately ``--rounds`` times after
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
STOCK = {"MAXIM_TF_GELU": "fused", "MAXIM_TF_CONV": "native"}


def _traced(model, env):
    import tensorflow as tf

    from maxim_tf import fused

    saved = {k: os.environ.get(k) for k in STOCK}
    os.environ.update(env)
    for k in STOCK:
        if k not in env:
            os.environ.pop(k, None)
    fused.gelu_form.cache_clear()
    fused.conv_form.cache_clear()
    try:
        forms = {"gelu": fused.gelu_form(), "conv": fused.conv_form()}
        fn = tf.function(lambda t: model(t, training=False),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        fn.get_concrete_function()  # the forms are chosen at trace time
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        fused.gelu_form.cache_clear()
        fused.conv_form.cache_clear()
    return fn, forms


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["S-3", "denoise"])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--forms", metavar="GELU,CONV",
                   help="compare the stock forms with these (e.g. sigmoid,rows: the AVX2 "
                        "forms, to measure them on another CPU) instead of this machine's choice")
    p.add_argument("-o", "--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)

    import maxim_tf  # noqa: F401, I001  (first: turns oneDNN on before TensorFlow loads)
    import tensorflow as tf

    from maxim_tf.tools.benchmark import load_model

    candidate = {}
    if args.forms:
        gelu, _, conv = args.forms.partition(",")
        candidate = {"MAXIM_TF_GELU": gelu, "MAXIM_TF_CONV": conv or "native"}
    rows = []
    for name in args.models:
        model = load_model(name)
        stock, stock_forms = _traced(model, STOCK)
        default, default_forms = _traced(model, candidate)
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
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "forms": args.forms}
    (out_dir / "forms_ab.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["Graph forms before/after, one run (`python benchmarks/forms_ab.py`): stock = "
             "`MAXIM_TF_GELU=fused MAXIM_TF_CONV=native`, default = "
             + (f"`--forms {args.forms}`" if args.forms else "this machine's choice") + "; "
             f"min of {args.rounds} alternated calls, batch 1, fp32.", "",
             "| model | size | stock forms | default forms | stock s | default s | speed-up | max abs diff (output range) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = lambda f: f"gelu {f['gelu']}, conv {f['conv']}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['size']}² | {fmt(r['stock_forms'])} | {fmt(r['default_forms'])} | "
                     f"{r['stock_s']:.3f} | {r['default_s']:.3f} | {r['speedup']:.2f}× | "
                     f"{r['max_abs_diff']:.1e} ({r['output_range'][0]:.3g} … {r['output_range'][1]:.3g}) |")
    (out_dir / "forms_ab.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
