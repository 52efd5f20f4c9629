"""The speed table of the README in one run: every ratio against figures of the same run.

    python benchmarks/speed_report.py --data data/debian_x3 [-o benchmarks/results]

Measures, in one process, on whatever CPU runs it:

1. the machine: a 4096² matmul in fp32 and in bf16 (GFLOP/s; a bf16 figure far
   above the fp32 one means the CPU has bf16 units), taken before and after the
   rest and averaged;
2. S-3 (random weights, batch 1) on the default fp32 path (the TensorFlow graph
   that ``maxim-tf restore`` / ``Restorer`` run) at ``--sizes``: min of
   ``--repeats`` calls after a warm-up call, and the share of the matmul peak on
   the official model's FLOPs (341 GFLOP at 256², scaled with the pixel count);
   the scaling ratio t(largest) / t(smallest) against the pixel ratio;
3. bf16 (``MAXIM.with_precision("bfloat16")``) against fp32 on S-3 at 512²,
   calls alternated; and the PSNR change of the shipped denoiser run in bf16, on
   the held-out photos of ``--data`` (``val/``, 512² centre crops, σ = 25, seed 0);
4. full-int8 TFLite against fp32 TFLite (XNNPACK, ``--threads``), both for the
   dynamic-size files shipped in ``saved_models/`` and for fixed-size exports
   of the same weights at 512² (made here, int8 calibrated on 8 degraded
   training crops, as ``scripts/ship_models.py`` does with 32), calls alternated, with the
   shipped denoiser's TF graph beside them;
5. with ``--official-python`` and ``--official-code``: the official JAX code on
   the same sizes or ``--official-sizes`` (``benchmarks/official_speed.py``, in a subprocess of this run,
   right after our fp32 measurement) and our speed-up over it per size.

Writes ``speed_report.json`` and ``speed_report.md`` into ``-o``.
"""

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def matmul(dtype, n=4096, repeats=5):
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n), seed=1), dtype)
    b = tf.cast(tf.random.normal((n, n), seed=2), dtype)
    fn = tf.function(lambda x, y: tf.matmul(x, y))
    fn(a, b).numpy()
    best = min(_timed(lambda: fn(a, b).numpy()) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def alternated(runners, x, rounds):
    """``{name: [seconds per call]}``, one call of each runner per round (after a warm-up)."""
    for run in runners.values():
        run(x)
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            times[name].append(_timed(run, x))
    return times


def fp32_scaling(sizes, repeats, log):
    from maxim_tf.tools.benchmark import OFFICIAL_GFLOP_256, load_model, make_runner

    run = make_runner("keras-graph", load_model("S-3"))
    rows = []
    for size in sizes:
        x = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
        times = alternated({"fp32": run}, x, repeats)["fp32"]
        gflop = OFFICIAL_GFLOP_256["S-3"] * (size / 256) ** 2
        rows.append({"size": size, "min_s": min(times), "median_s": statistics.median(times),
                     "work_gflop": gflop})
        log(f"S-3 fp32 graph {size}²: {min(times):.3f} s")
    return rows


def bf16_speed(rounds, log):
    from maxim_tf.tools.benchmark import load_model, make_runner

    model = load_model("S-3")
    runners = {"fp32": make_runner("keras-graph", model), "bf16": make_runner("keras-bf16", model)}
    x = np.random.default_rng(0).random((1, 512, 512, 3), dtype=np.float32)
    times = alternated(runners, x, rounds)
    log(f"S-3 512² fp32 {min(times['fp32']):.3f} s, bf16 {min(times['bf16']):.3f} s")
    return times


def bf16_psnr(images, log):
    from maxim_tf import hub, metrics
    from maxim_tf.restore import Restorer
    from maxim_tf.tools.quality import degradation_specs, degrade_uint8, load_clean_images

    clean = load_clean_images(images, crop=512)
    noisy = [degrade_uint8(img, degradation_specs("denoise", 25.0), seed=0) for _, img in clean]
    model = hub.load_model("denoise")
    out = {}
    for precision in ("float32", "bfloat16"):
        restorer = Restorer(model, backend="keras", precision=precision, progress=False)
        out[precision] = [metrics.psnr(c, restorer(n)) for (_, c), n in zip(clean, noisy)]
        log(f"denoise {precision}: {np.mean(out[precision]):.3f} dB")
    return out


def int8_speed(data, threads, rounds, log):
    sys.path.insert(0, str(REPO / "scripts"))
    import ship_models

    from maxim_tf import hub
    from maxim_tf.export.tflite import export_tflite_set
    from maxim_tf.litert import TFLiteRunner

    files = {"dynamic fp32": REPO / "saved_models" / "denoise_fp32.tflite",
             "dynamic int8": REPO / "saved_models" / "denoise_int8.tflite"}
    with tempfile.TemporaryDirectory(prefix="maxim-speed-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "calib").mkdir()
        # 8 calibration crops (the shipped files use 32): scales do not change the speed.
        ship_models.calibration_folder("denoise", data, tmp / "calib", count=8)
        fixed = {"fp32": tmp / "fixed_fp32.tflite", "int8": tmp / "fixed_int8.tflite"}
        start = time.perf_counter()
        export_tflite_set(hub.load_model("denoise"), fixed, input_size=(512, 512),
                          representative_data=str(tmp / "calib"), num_calibration_images=8)
        log(f"fixed-size 512² exports: {time.perf_counter() - start:.0f} s")
        files.update({f"fixed {q}": p for q, p in fixed.items()})
        runners = {name: TFLiteRunner(path, num_threads=threads) for name, path in files.items()}
        from maxim_tf.tools.benchmark import make_runner

        runners["keras graph"] = make_runner("keras-graph", hub.load_model("denoise"))
        x = np.random.default_rng(0).random((1, 512, 512, 3), dtype=np.float32)
        times = alternated(runners, x, rounds)
    for name, t in times.items():
        log(f"denoise TFLite {name} 512²: {min(t):.3f} s")
    return times


def official_speed(python, code, sizes, repeats, log):
    import subprocess

    cmd = [python, str(REPO / "benchmarks" / "official_speed.py"), code, "--sizes",
           *map(str, sizes), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"official_speed.py failed (exit {proc.returncode}): "
                         + " | ".join(proc.stderr.strip().splitlines()[-3:]))
    result = json.loads(lines[-1])
    for size, t in result["times"].items():
        log(f"official JAX {result['variant']} {size}²: {min(t):.3f} s")
    return result


def markdown(r):
    peak = r["matmul_gflops"]["float32"]
    lines = [f"CPU: {r['cpu']}, {r['cores']} cores. Same-run 4096² matmul: **{peak:.0f} GFLOP/s "
             f"fp32**, {r['matmul_gflops']['bfloat16']:.0f} GFLOP/s bf16 (mean of before and "
             f"after). Allocator: {r.get('malloc', 'glibc defaults')}. TensorFlow's oneDNN "
             f"kernels: {_onoff(r.get('onednn'))}.", "",
             "| measure | value |", "|---|---|"]
    for row in r["fp32"]:
        pct = 100 * row["work_gflop"] / row["min_s"] / peak
        lines.append(f"| S-3 fp32 graph {row['size']}²: s / % of matmul peak | "
                     f"{row['min_s']:.2f} s / **{pct:.0f} %** |")
    first, last = r["fp32"][0], r["fp32"][-1]
    if r.get("official"):
        o = r["official"]
        for row in r["fp32"]:
            if str(row["size"]) not in o["times"]:
                continue
            t = min(o["times"][str(row["size"])])
            lines.append(f"| speed-up over the official JAX code (jax {o['jax']}), S-3 "
                         f"{row['size']}² | **{t / row['min_s']:.2f}×** ({t:.2f} s) |")
    lines.append(f"| scaling t({last['size']}²) / t({first['size']}²) (linear = "
                 f"{(last['size'] / first['size']) ** 2:.0f}) | **{last['min_s'] / first['min_s']:.1f}** |")
    b = r["bf16"]
    lines.append(f"| bf16 / fp32 speed-up, S-3 512² | **{min(b['fp32']) / min(b['bf16']):.2f}×** "
                 f"({min(b['fp32']):.2f} s → {min(b['bf16']):.2f} s) |")
    if r.get("bf16_psnr"):
        p = r["bf16_psnr"]
        d = np.mean(p["bfloat16"]) - np.mean(p["float32"])
        lines.append(f"| bf16 PSNR change, shipped denoiser, σ = 25, {len(p['float32'])} held-out "
                     f"512² crops | **{d:+.3f} dB** ({np.mean(p['float32']):.3f} → "
                     f"{np.mean(p['bfloat16']):.3f}) |")
    t = r["tflite"]
    for kind in ("dynamic", "fixed"):
        f, i = min(t[f"{kind} fp32"]), min(t[f"{kind} int8"])
        lines.append(f"| int8 / fp32 TFLite speed-up, shipped denoiser 512², {kind}-size, XNNPACK "
                     f"{r['threads']} threads | **{f / i:.2f}×** ({f:.3f} s → {i:.3f} s) |")
    k, f = min(t["keras graph"]), min(t["dynamic fp32"])
    lines.append(f"| shipped denoiser 512², fp32: TF graph / LiteRT dynamic fp32 (the `restore` "
                 f"default) | {k:.3f} s / {f:.3f} s |")
    lines += ["", f"Times: min of {r['repeats']} calls after a warm-up call (alternated between "
              "the compared paths). Written by `python benchmarks/speed_report.py`."]
    return "\n".join(lines) + "\n"


def _onoff(flag):
    return {True: "on", False: "off (Eigen)"}.get(flag, "not recorded")


def _onednn_enabled():
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


# The units the speed targets depend on (matmul width, bf16, AMX), from /proc/cpuinfo.
_CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _cpu_name():
    """The model name, with the family/model numbers and the units above (VMs often
    report only "AMD EPYC"; family 25 is Zen 3/4, 26 is Zen 5)."""
    try:
        info = {}
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break
    except OSError:
        info = {}
    if "model name" not in info:
        import platform

        return platform.processor() or "unknown CPU"
    flags = set(info.get("flags", "").split())
    units = ", ".join(f for f in _CPU_FEATURES if f in flags) or "no AVX2"
    return (f"{info['model name']} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}; {units})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="prepared photos (train/ for int8 calibration, "
                   "val/ for the bf16 PSNR)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="TFLite threads (default 2)")
    p.add_argument("--official-python", help="an interpreter with jax, flax and einops")
    p.add_argument("--official-code", help="a checkout of google-research/maxim")
    p.add_argument("--official-sizes", type=int, nargs="+",
                   help="sizes for the official code (default: --sizes; on a slow CPU "
                   "leave out the largest: it takes minutes per call)")
    p.add_argument("-o", "--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    import maxim_tf

    maxim_tf.prefer_onednn()  # before TensorFlow loads, as the maxim-tf command does
    import os

    from maxim_tf import allocator, fileio

    # As the maxim-tf command does, before TensorFlow allocates (MAXIM_TF_MALLOC=default opts out).
    malloc = allocator.tune_malloc()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    before = {"float32": matmul("float32"), "bfloat16": matmul("bfloat16")}
    log(f"matmul fp32 {before['float32']:.0f}, bf16 {before['bfloat16']:.0f} GFLOP/s")
    report = {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
              "repeats": args.repeats, "malloc": malloc, "onednn": _onednn_enabled()}
    report["fp32"] = fp32_scaling(args.sizes, args.repeats, log)
    if args.official_python and args.official_code:
        report["official"] = official_speed(args.official_python, args.official_code,
                                            args.official_sizes or args.sizes, args.repeats, log)
    report["bf16"] = bf16_speed(args.repeats, log)
    report["bf16_psnr"] = bf16_psnr(pathlib.Path(args.data) / "val", log)
    report["tflite"] = int8_speed(args.data, args.threads, args.repeats, log)
    after = {"float32": matmul("float32"), "bfloat16": matmul("bfloat16")}
    report["matmul_gflops"] = {k: (before[k] + after[k]) / 2 for k in before}
    report["matmul_gflops_before_after"] = {"before": before, "after": after}
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_bytes(out / "speed_report.json", json.dumps(report, indent=1).encode())
    text = markdown(report)
    fileio.atomic_write_bytes(out / "speed_report.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
