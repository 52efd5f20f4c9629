"""Paired A/B speed check of two code trees: S-3 keras-graph and SavedModel at 256² and 512².

    python benchmarks/compare_trees.py TREE_A TREE_B ROUNDS OUT.json

(e.g. a worktree of the commit before a change and the working tree; each tree needs its
own ``.venv`` with the package installed.)
Each tree runs in its own worker process (its own venv); the driver alternates single timed calls
between the two workers (ABBA order per round), so both see the same machine load. Each worker
also times a 4096² fp32 matmul in every round: speeds are reported as ratios to it.
"""
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = (256, 512)
RUNTIMES = ("keras-graph", "savedmodel")


def worker():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tempfile

    import keras
    import numpy as np

    from maxim_tf.model import MAXIM
    try:
        from maxim_tf.tools.benchmark import export_artifact, make_runner, matmul_gflops
    except ImportError:  # trees before the tools moved out of the core
        from maxim_tf.benchmark import export_artifact, make_runner, matmul_gflops
    keras.utils.set_random_seed(0)
    model = MAXIM.from_variant("S-3")
    tmp = tempfile.mkdtemp()
    runners = {"keras-graph": make_runner("keras-graph", model),
               "savedmodel": make_runner("savedmodel", artifact=export_artifact(model, "savedmodel", tmp + "/sm"))}
    xs = {s: np.random.default_rng(1).random((1, s, s, 3), dtype=np.float32) for s in SIZES}
    for r in RUNTIMES:
        for s in SIZES:
            runners[r](xs[s])
            runners[r](xs[s])
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "matmul":
            print(matmul_gflops(), flush=True)
            continue
        r, s = cmd[0], int(cmd[1])
        t = time.perf_counter()
        runners[r](xs[s])
        print(time.perf_counter() - t, flush=True)


def driver(tree_a, tree_b, rounds, out):
    procs = {}
    for name, tree in (("A", tree_a), ("B", tree_b)):
        p = subprocess.Popen([f"{tree}/.venv/bin/python", __file__, "worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd="/tmp")
        while p.stdout.readline().strip() != "ready":
            pass
        procs[name] = p
        print(name, "ready", time.strftime("%H:%M:%S"), flush=True)

    def ask(name, cmd):
        procs[name].stdin.write(cmd + "\n")
        procs[name].stdin.flush()
        return float(procs[name].stdout.readline())

    res = {n: {"matmul": []} | {f"{r} {s}": [] for r in RUNTIMES for s in SIZES} for n in "AB"}
    for i in range(rounds):
        order = "AB" if i % 2 == 0 else "BA"
        for n in order:
            res[n]["matmul"].append(ask(n, "matmul"))
        for r in RUNTIMES:
            for s in SIZES:
                for n in order + order[::-1]:
                    res[n][f"{r} {s}"].append(ask(n, f"{r} {s}"))
        print("round", i, time.strftime("%H:%M:%S"), flush=True)
    summary = {}
    for key in res["A"]:
        if key == "matmul":
            continue
        a, b = res["A"][key], res["B"][key]
        summary[key] = {"A_median_s": statistics.median(a), "B_median_s": statistics.median(b),
                        "A_min_s": min(a), "B_min_s": min(b),
                        "B_over_A_median_of_pairs": statistics.median(
                            [y / x for x, y in zip(a[0::2] + a[1::2], b[0::2] + b[1::2])])}
    summary["matmul_gflops"] = {"A_median": statistics.median(res["A"]["matmul"]),
                                "B_median": statistics.median(res["B"]["matmul"])}
    json.dump({"trees": [tree_a, tree_b], "rounds": rounds, "summary": summary, "raw": res},
              open(out, "w"), indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker()
    else:
        driver(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
