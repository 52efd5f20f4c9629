"""Cold start of a one-photo restore: where the wall time of ``maxim-tf restore`` goes.

    python benchmarks/cold_start.py [--repeats 3] [-o benchmarks/results] [--model M]

``--model`` (default ``denoise``) may be any name, preset or ``.keras`` path with a
verified LiteRT twin: a shipped model, or an official-size model after ``maxim-tf
convert`` / ``maxim-tf models --prepare`` (its fast-start twin; the keras column is
then what a restore cost before the twin existed). Results of another model than the
default go to ``cold_start_<name>.json/.md``.

Measures, each in fresh processes (min over ``--repeats``):

* ``maxim-tf --help`` and ``python -c pass`` (interpreter start);
* ``python -c "import tensorflow"``;
* for each backend (``keras``: the Keras graph; ``litert``: the shipped model's
  verified fp32 ``.tflite`` twin), one instrumented process that restores one
  0.31-MP photo (640x480) with the default model, broken into: imports, model load,
  graph preparation (the first call's tracing/optimisation), compute, write; and the
  same process's second restore of the photo, which is the forward pass alone;
* the end-to-end wall time of ``maxim-tf restore photo.png -o out --backend B``.

The figure of merit is ``wall - (import tensorflow + compute)``, with the compute time
of that same run (from its summary line): what a user waits for beyond TensorFlow's
own import and the network itself. Writes
``cold_start.json`` and ``cold_start.md``.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "images" / "life_noisy_sigma25.png"

# Run in a fresh interpreter: prints one JSON line of phase timings.
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
backend, photo, out, model = sys.argv[1:5]
import numpy as np
from maxim_tf import image_io
from maxim_tf.restore import Restorer
t1 = time.perf_counter()
if backend == "keras":
    import tensorflow  # noqa: F401  (timed apart: part of "imports")
t2 = time.perf_counter()
restorer = Restorer(model, backend=backend)
t3 = time.perf_counter()
prepare = restorer.warm_up()
image = image_io.read_image(photo)
t4 = time.perf_counter()
restored = restorer(image.pixels)
t5 = time.perf_counter()
image_io.write_image(out, restored)
t6 = time.perf_counter()
restorer(image.pixels)
t7 = time.perf_counter()
print(json.dumps({"imports": t2 - t0, "import_tensorflow_in_process": t2 - t1,
                  "load": t3 - t2, "prepare": prepare, "read": t4 - t3 - prepare,
                  "compute": t5 - t4, "write": t6 - t5, "forward": t7 - t6,
                  "backend": restorer.backend}))
"""


def _wall(cmd, cwd, repeats, with_output=False):
    """Min wall time of ``cmd`` (a list, or a function of the repeat index giving one);
    with ``with_output`` also the stdout of that fastest run."""
    best, best_out = None, ""
    for i in range(repeats):
        start = time.perf_counter()
        if callable(cmd):
            cmd_i = cmd(i)
        else:
            cmd_i = cmd
        proc = subprocess.run(cmd_i, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd_i} failed:\n{proc.stderr[-2000:]}")
        if best is None or elapsed < best:
            best, best_out = elapsed, proc.stdout
    return (best, best_out) if with_output else best


def _photo(path):
    """A 640x480 (0.31 MP) photo: the noisy sample mirrored out to that size."""
    import numpy as np

    from maxim_tf.image_io import read_image, write_image

    pixels = read_image(SAMPLE).pixels
    tiled = np.concatenate([pixels, pixels[::-1]], axis=0)
    tiled = np.concatenate([tiled, tiled[:, ::-1]], axis=1)[:480, :640]
    write_image(path, np.ascontiguousarray(tiled))
    return path


def run(repeats, outdir, model="denoise"):
    py = sys.executable
    mt = str(pathlib.Path(py).with_name("maxim-tf"))
    results = {"python": sys.version.split()[0], "model": model}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        photo = _photo(tmp / "photo.png")
        results["python_start"] = _wall([py, "-c", "pass"], tmp, repeats)
        results["help"] = _wall([mt, "--help"], tmp, repeats)
        results["import_tensorflow"] = _wall([py, "-c", "import tensorflow"], tmp, repeats)
        for backend in ("keras", "litert"):
            phases = None
            for _ in range(repeats):
                proc = subprocess.run([py, "-c", PROBE, backend, str(photo), str(tmp / "o.png"),
                                       model],
                                      cwd=tmp, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr[-2000:])
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                total = sum(v for k, v in got.items() if isinstance(v, float) and k not in
                            ("forward", "import_tensorflow_in_process"))
                if phases is None or total < phases["total"]:
                    phases = dict(got, total=total)
            wall, summary = _wall(
                lambda i, b=backend: [mt, "restore", str(photo), "-o", str(tmp / f"out_{b}_{i}"),
                                      "--backend", b, "--model", model, "-q"], tmp, repeats,
                with_output=True)
            # The same run's own compute time (its summary line), so the difference is
            # measured within one process: wall - compute - TensorFlow's import.
            compute = float(re.search(r"in ([0-9.]+) s of compute", summary).group(1))
            tf_import = phases["import_tensorflow_in_process"] if backend == "keras" else 0.0
            results[backend] = dict(phases, wall=wall, wall_compute=compute,
                                    overhead=wall - tf_import - compute)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = "cold_start" if model == "denoise" else f"cold_start_{pathlib.Path(model).stem}"
    (outdir / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (outdir / f"{stem}.md").write_text(markdown(results))
    return results


def markdown(r):
    rows = [("imports (Python + maxim_tf + numpy/Pillow; + TensorFlow for keras)", "imports"),
            ("model load", "load"), ("graph preparation (first call)", "prepare"),
            ("read photo", "read"), ("compute (first photo)", "compute"), ("write", "write"),
            ("forward pass alone (second call)", "forward")]
    lines = [f"One 0.31-MP photo (640x480), model `{r.get('model', 'denoise')}`, seconds "
             f"(min of runs; Python {r['python']}).", "",
             "| phase | keras backend | litert backend |", "|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {r['keras'][key]:.2f} | {r['litert'][key]:.2f} |")
    lines += [f"| **`maxim-tf restore` wall time** | **{r['keras']['wall']:.2f}** | "
              f"**{r['litert']['wall']:.2f}** |",
              f"| compute in that run (its summary) | {r['keras']['wall_compute']:.2f} | "
              f"{r['litert']['wall_compute']:.2f} |",
              f"| wall − (import tensorflow + compute) | {r['keras']['overhead']:.2f} | "
              f"{r['litert']['overhead']:.2f} (TensorFlow not imported) |", "",
              f"`import tensorflow` alone: {r['import_tensorflow']:.2f} s; "
              f"`maxim-tf --help`: {r['help']:.2f} s; `python -c pass`: "
              f"{r['python_start']:.2f} s.", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("-o", "--output-dir", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--model", default="denoise",
                   help="a name, preset or .keras path with a verified LiteRT twin")
    args = p.parse_args(argv)
    results = run(args.repeats, pathlib.Path(args.output_dir), args.model)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
