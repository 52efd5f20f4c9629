"""Inference benchmark: latency, peak memory and efficiency of MAXIM per runtime.

Every (model, runtime, size) cell runs in its own subprocess so its peak RSS
is its own; artifacts (SavedModel, TFLite, ONNX) are exported first, in
another subprocess, so conversion memory is not counted. Each run also
measures this machine's fp32 matmul throughput (a 4096² matmul), and every
result is reported as a share of it — a ratio that survives noisy machines.

Example:
    >>> rows = run_benchmark(["S-3"], sizes=[256, 512], runtimes=["keras-xla"],
    ...                      out_dir="benchmarks/results")
"""

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from maxim_tf import fileio

RUNTIMES = ("keras-graph", "keras-bf16", "keras-xla", "savedmodel", "tflite-fp32", "tflite-fp16",
            "tflite-int8", "onnx")
EXPORTED = {"savedmodel": "savedmodel", "tflite-fp32": "tflite", "tflite-fp16": "tflite",
            "tflite-int8": "tflite", "onnx": "onnx"}
# FLOPs of the official model at 256x256 as published by the issue tracker /
# official code (scaled linearly in pixels); used so that "% of matmul peak"
# compares with the official JAX numbers on equal work.
OFFICIAL_GFLOP_256 = {"S-2": 217.5, "S-3": 341.0}


def matmul_gflops(n=4096, repeats=5):
    """Best fp32 GFLOP/s of an n x n matmul on this machine (TF, all cores)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)
    fn = tf.function(lambda x, y: tf.matmul(x, y))
    fn(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def compute_device():
    """Where TensorFlow runs the Keras/SavedModel rows: the first GPU's name, else "CPU"
    (TFLite and ONNX rows always run on the CPU)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU: {details.get('device_name', gpus[0].name)} ({len(gpus)} visible)"


def graph_gflops(model, size):
    """FLOPs of one forward pass at ``size`` counted by TF's profiler (conv and
    matmul FLOPs of the traced graph, 2 per multiply-add), in GFLOP."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    fn = tf.function(lambda t: model(t, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32)).graph
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return model_analyzer.profile(graph, options=opts).total_float_ops / 1e9


def check_model_spec(spec):
    """Raise ValueError unless ``spec`` names a variant, a .keras or a .json file, a saved
    model name or a preset."""
    from maxim_tf import hub
    from maxim_tf.presets import VARIANTS, get_preset

    path = pathlib.Path(spec)
    if spec in VARIANTS or (path.suffix in (".keras", ".json") and path.is_file()):
        return
    if spec in hub.available_models() or get_preset(spec) is not None:
        return
    raise ValueError(f"Unknown model {spec!r}: give a variant ({', '.join(VARIANTS)}), "
                     f"an existing .keras file, a JSON config file, a saved model name or a "
                     f"preset of `maxim-tf models`")


def load_model(spec):
    """A MAXIM to time: :func:`maxim_tf.hub.load_model` with ``allow_untrained`` (a
    variant name or JSON config is built with seeded random weights)."""
    from maxim_tf import hub

    check_model_spec(spec)
    return hub.load_model(spec, allow_untrained=True)


def _artifact(workdir, model_name, runtime):
    stem = pathlib.Path(workdir) / f"{_slug(model_name)}-{runtime}"
    return stem if runtime == "savedmodel" else stem.with_suffix(
        ".onnx" if runtime == "onnx" else ".tflite")


def display_name(spec):
    """Variant name, or the file stem of a .keras/.json model."""
    from maxim_tf.presets import VARIANTS

    return spec if spec in VARIANTS else pathlib.Path(spec).stem


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in pathlib.Path(name).stem)


def export_artifact(model, runtime, path):
    """Export ``model`` for an exported runtime; returns the path to load."""
    from maxim_tf.export import export_model

    if runtime == "savedmodel":
        out, _ = export_model(model, path, format="savedmodel", name="maxim", version=1,
                              warmup=False, max_pixels=4096 * 4096)
        return out
    if runtime == "onnx":
        return export_model(model, path, format="onnx")[0]
    quant = runtime.split("-")[1]
    return export_model(model, path, format="tflite", quantization=quant)[0]


def make_runner(runtime, model=None, artifact=None):
    """A function float32 [N, H, W, 3] -> restored image, for ``runtime``."""
    threads = os.cpu_count()
    if runtime in ("keras-graph", "keras-bf16", "keras-xla"):
        import tensorflow as tf

        if runtime == "keras-bf16":  # mixed_bfloat16: bf16 compute, float32 statistics and I/O
            model = model.with_precision("bfloat16")
        if runtime in ("keras-graph", "keras-bf16"):
            # As maxim_tf.Restorer runs it: one trace for every size (unknown
            # N, H, W), which is also what lets Grappler fuse the layer norms.
            fn = tf.function(lambda t: model(t, training=False), input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.float32)])
        else:  # XLA compiles per input shape
            fn = tf.function(lambda t: model(t, training=False), jit_compile=True)
        return lambda x: fn(tf.constant(x)).numpy()
    if runtime == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(os.fspath(artifact))
        sig = loaded.signatures["serving_default"]
        return lambda x: next(iter(sig(images=tf.constant(x)).values())).numpy()
    if runtime == "onnx":
        from maxim_tf.export.onnx import OnnxRunner

        return OnnxRunner(artifact, num_threads=threads)
    from maxim_tf.litert import TFLiteRunner

    return TFLiteRunner(artifact, num_threads=threads)


def time_runner(run, x, repeats=3, warmup=1):
    """(min, median) seconds of ``run(x)`` after ``warmup`` calls; also the
    first call's time (tracing/compilation included)."""
    t = time.perf_counter()
    run(x)
    first = time.perf_counter() - t
    for _ in range(warmup - 1):
        run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), first


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(task):
    """Subprocess body: export or measure one cell; returns a JSON-able dict."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    if task["action"] == "matmul":
        return {"matmul_gflops": matmul_gflops(task.get("n", 4096)), "device": compute_device()}
    model = None
    runtime = task.get("runtime")
    if task["action"] == "export":
        model = load_model(task["model"])
        export_artifact(model, runtime, task["artifact"])
        return {"exported": task["artifact"]}
    if task["action"] == "flops":
        model = load_model(task["model"])
        return {"gflop": graph_gflops(model, task["size"])}
    if runtime not in EXPORTED:
        model = load_model(task["model"])
    artifact = task.get("artifact")
    if runtime == "savedmodel":
        artifact = os.path.join(artifact, "maxim", "1")
    run = make_runner(runtime, model, artifact)
    size = task["size"]
    x = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    best, median, first = time_runner(run, x, task["repeats"])
    return {"min_s": best, "median_s": median, "first_s": first, "peak_rss_mb": _peak_rss_mb()}


def _spawn(task, timeout):
    cmd = [sys.executable, "-m", "maxim_tf.tools.benchmark", json.dumps(task)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark task {task} failed (exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1])


def run_benchmark(models, sizes, runtimes, out_dir, repeats=3, timeout=3600, progress=print):
    """Measure every (model, runtime, size); write results.json, results.md, latency.png.

    Args:
        models: variant names, ``.keras`` files or JSON config files.
        sizes: square image sizes (multiples of the models' size multiple).
        runtimes: subset of :data:`RUNTIMES`.
        out_dir: output folder (created).
        repeats: timed repeats per cell (after one warm-up call).
        timeout: seconds allowed per subprocess.

    Returns:
        list of result rows (dicts).
    """
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"Unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}")
    for name in models:
        check_model_spec(name)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    calibration = _spawn({"action": "matmul"}, timeout)
    peak, device = calibration["matmul_gflops"], calibration.get("device", "CPU")
    progress(f"matmul 4096^2 fp32 on {device}: {peak:.1f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="maxim-bench-") as work:
        for name in models:
            flops = {s: _spawn({"action": "flops", "model": name, "size": s}, timeout)["gflop"]
                     for s in sizes}
            for runtime in runtimes:
                artifact = None
                if runtime in EXPORTED:
                    artifact = os.fspath(_artifact(work, name, runtime))
                    _spawn({"action": "export", "model": name, "runtime": runtime,
                            "artifact": artifact}, timeout)
                for size in sizes:
                    r = _spawn({"action": "measure", "model": name, "runtime": runtime,
                                "size": size, "repeats": repeats, "artifact": artifact}, timeout)
                    work_gflop = (OFFICIAL_GFLOP_256[name] * (size / 256) ** 2
                                  if name in OFFICIAL_GFLOP_256 else flops[size])
                    row = dict(model=display_name(name), runtime=runtime, size=size, **r,
                               graph_gflop=flops[size], work_gflop=work_gflop,
                               gflops=work_gflop / r["min_s"], matmul_gflops=peak,
                               device="CPU" if runtime.startswith(("tflite", "onnx")) else device)
                    row["pct_peak"] = 100 * row["gflops"] / peak
                    rows.append(row)
                    progress(f"{name} {runtime} {size}^2: {r['min_s']:.3f} s (median "
                             f"{r['median_s']:.3f}), {row['pct_peak']:.0f}% of matmul peak, "
                             f"peak RSS {r['peak_rss_mb']:.0f} MB")
                    # Rows so far, so a long run that dies late keeps its results.
                    fileio.atomic_write_bytes(out / "results.json",
                                              json.dumps(rows, indent=1).encode())
    fileio.atomic_write_bytes(out / "results.md", markdown_table(rows).encode())
    plot(rows, out / "latency.png")
    return rows


def markdown_table(rows):
    """Markdown table of benchmark rows (one line per model/runtime/size)."""
    if not rows:
        return "(no results)\n"
    peak = rows[0]["matmul_gflops"]
    device = next((r["device"] for r in rows if r.get("device", "CPU") != "CPU"), "CPU")
    where = f"Keras/SavedModel rows on {device}, TFLite/ONNX rows on the CPU; " if device != "CPU" else ""
    lines = [
        f"Machine: {os.cpu_count()} CPU cores; {where}fp32 4096² matmul: {peak:.1f} GFLOP/s "
        f"(measured in the same run{', on the GPU' if where else ''}).",
        "",
        "| model | runtime | size | min s | median s | first call s | peak RSS MB | "
        "GFLOP (work) | GFLOP (graph) | GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['size']}² | {r['min_s']:.3f} | "
            f"{r['median_s']:.3f} | {r['first_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['work_gflop']:.1f} | {r['graph_gflop']:.1f} | {r['gflops']:.1f} | "
            f"{r['pct_peak']:.0f}% |")
    lines += ["", "GFLOP (work): the official model's FLOPs (341 for S-3 and 217.5 for S-2 at "
              "256², scaled with pixels) where known, else the graph count; GFLOP (graph): "
              "conv/matmul FLOPs of this port's graph counted by TF's profiler (lower: the 1x1 "
              "convs of upscaling paths run at the low resolution)."]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Latency vs megapixels, one line per model/runtime (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in sorted({(r["model"], r["runtime"]) for r in rows}):
        pts = sorted((r["size"] ** 2 / 1e6, r["min_s"]) for r in rows
                     if (r["model"], r["runtime"]) == key)
        ax.plot(*zip(*pts), marker="o", label=f"{key[0]} {key[1]}")
    ax.set_xlabel("megapixels")
    ax.set_ylabel("latency, s (min over repeats)")
    ax.set_title("MAXIM inference latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with fileio.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
