"""Throughput of ``maxim-tf restore-beam`` (DirectRunner) against ``maxim-tf restore``.

    python benchmarks/beam_throughput.py [--images 16] [--size 256] [--model denoise]
                                         [--workers 2] [--repeats 3] [-o benchmarks/results]

Cuts ``--images`` crops of ``--size``² from the noisy sample photo (PNG), then, in one
run, restores that folder with the same model

* by ``maxim-tf restore FOLDER -o OUT -q`` (one process, one image at a time), and
* by ``maxim-tf restore-beam FOLDER -o OUT --direct-num-workers N`` (the Apache Beam
  pipeline on the DirectRunner, N worker threads sharing one model),

each in a fresh process, ``--repeats`` times alternately, and reports the smallest
end-to-end wall time of each (start-up included), the
compute time each prints, images/s and MP/s, and the overhead ratio (pipeline wall /
restore wall). Checks that both wrote the same bytes. Writes ``beam.json`` and
``beam.md``. Needs the beam extra.
"""

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "images" / "life_noisy_sigma25.png"


def _make_inputs(folder, count, size):
    import numpy as np
    from PIL import Image

    with Image.open(SAMPLE) as im:
        photo = np.asarray(im.convert("RGB"))
    h, w = photo.shape[:2]
    rng = np.random.default_rng(0)
    for i in range(count):
        top, left = int(rng.integers(0, max(1, h - size))), int(rng.integers(0, max(1, w - size)))
        crop = photo[top:top + size, left:left + size]
        if crop.shape[:2] != (size, size):  # sample smaller than the size: tile it
            crop = np.resize(crop, (size, size, 3))
        Image.fromarray(crop).save(folder / f"img{i:03d}.png")


def _timed(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, proc.stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default="denoise")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (min wall)")
    parser.add_argument("-o", "--output-dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    cli = [sys.executable, "-m", "maxim_tf"]
    with tempfile.TemporaryDirectory(prefix="maxim-beam-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        inputs = tmp / "in"
        inputs.mkdir()
        _make_inputs(inputs, args.images, args.size)
        mp = args.images * args.size * args.size / 1e6
        restore_runs, beam_runs = [], []
        for _ in range(args.repeats):  # alternated, min of each: robust to a busy machine
            restore_runs.append(_timed(cli + ["restore", str(inputs), "-o", str(tmp / "restore"),
                                              "--model", args.model, "-q", "--overwrite"]))
            beam_runs.append(_timed(cli + ["restore-beam", str(inputs), "-o", str(tmp / "beam"),
                                           "--model", args.model,
                                           "--direct-num-workers", str(args.workers)]))
        restore_wall, restore_out = min(restore_runs)
        beam_wall, beam_out = min(beam_runs)
        same = all((tmp / "beam" / p.name).read_bytes() == p.read_bytes()
                   for p in sorted((tmp / "restore").glob("*.png")))
        manifest = [json.loads(line) for line in (tmp / "beam" / "manifest.jsonl").read_text().splitlines()]
    beam_compute = sum(r["seconds"] or 0 for r in manifest)
    restore_out, beam_out = (text.replace(str(tmp), "<tmp>") for text in (restore_out, beam_out))
    result = {
        "images": args.images, "size": args.size, "megapixels": mp, "model": args.model,
        "workers": args.workers, "repeats": args.repeats, "machine": f"{platform.machine()}, {_cores()} cores",
        "restore": {"wall_s": restore_wall, "images_per_s": args.images / restore_wall,
                    "mp_per_s": mp / restore_wall, "summary": restore_out},
        "beam": {"wall_s": beam_wall, "images_per_s": args.images / beam_wall,
                 "mp_per_s": mp / beam_wall, "compute_s_sum_over_images": beam_compute,
                 "summary": beam_out},
        "overhead_ratio": beam_wall / restore_wall,
        "same_bytes": same,
    }
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "beam.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "beam.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0 if same else 1


def _cores():
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _markdown(r):
    rows = [("`maxim-tf restore`", r["restore"]),
            (f"`maxim-tf restore-beam` (DirectRunner, {r['workers']} workers)", r["beam"])]
    lines = [
        "# Apache Beam pipeline throughput",
        "",
        f"`python benchmarks/beam_throughput.py`: {r['images']} PNG images of {r['size']}² "
        f"({r['megapixels']:.2f} MP), model `{r['model']}`, {r['machine']}; wall time of each "
        f"command in a fresh process, start-up included, the smallest of {r.get('repeats', 1)} "
        f"alternated runs (the machine was shared with other jobs).",
        "",
        "| command | wall (s) | images/s | MP/s |",
        "|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m['wall_s']:.1f} | {m['images_per_s']:.2f} | {m['mp_per_s']:.3f} |")
    lines += [
        "",
        f"Overhead ratio (pipeline wall / restore wall): **{r['overhead_ratio']:.2f}**. "
        f"Outputs byte-identical: {'yes' if r['same_bytes'] else 'NO'}.",
        "",
        f"- restore: {r['restore']['summary'].splitlines()[0]}",
        f"- restore-beam: {r['beam']['summary'].splitlines()[0]}",
        "",
        "Both use the shipped model's LiteRT twin. A LiteRT interpreter is not thread-safe, so "
        "the DirectRunner's worker threads share the one model under a lock (the interpreter "
        "itself uses every core): on a small CPU machine the pipeline cannot beat one "
        "process, and the ratio measures what Beam adds (its start-up, the shuffle of file "
        "names, the manifest). Its gain is elsewhere: many machines, retries, a dead letter.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
