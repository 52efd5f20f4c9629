"""Publish trained models to saved_models/ and measure them (how the shipped models were made).

After ``maxim-tf train`` has finished the two runs (see saved_models/*.md)::

    python scripts/ship_models.py --runs RUNS_DIR --data data/lomiri_x3

1. copies ``RUNS_DIR/<task>/model.keras`` to ``saved_models/<task>.keras``
   (after loading it back with Keras ``safe_mode``),
2. exports each to a dynamic-size fp32 TFLite and a full-int8 TFLite
   (``saved_models/<task>_fp32.tflite``, ``<task>_int8.tflite``), the int8 one
   calibrated on 32 *degraded* training crops (the activations the model sees),
3. runs the quality benchmark on the held-out photos (``maxim-tf benchmark
   --measure quality``) with both TFLite files scored next to the Keras model,
4. writes the model cards ``saved_models/<task>.md`` from the recipe
   (``training/configs/lomiri_<task>.json``), the data manifest, the measured
   tables and ``--notes <task>=FILE`` (training history, wall time; Markdown).
"""

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("denoise", "deblur")


def calibration_folder(task, data, out, count=32, size=128, seed=0):
    """Write ``count`` degraded ``size``-square training crops for ``task`` into ``out``."""
    from PIL import Image

    from maxim_tf.tools.quality import degrade_uint8
    from maxim_tf.training.config import CONFIG_DIR

    specs = json.loads((CONFIG_DIR / f"lomiri_{task}.json").read_text())["data"]["degradations"]
    tiles = sorted((pathlib.Path(data) / "train").glob("*.png"))
    if not tiles:
        raise FileNotFoundError(f"No training tiles in {data}/train (run "
                                f"python -m maxim_tf.training.photos first)")
    rng = np.random.default_rng(seed)
    for k in range(count):
        img = np.asarray(Image.open(tiles[rng.integers(len(tiles))]).convert("RGB"))
        y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        crop = np.ascontiguousarray(img[y:y + size, x:x + size])
        Image.fromarray(degrade_uint8(crop, specs, seed * 1000 + k)).save(out / f"{k:03d}.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="folder with denoise/ and deblur/ run dirs")
    p.add_argument("--data", required=True, help="prepared photos (train/ and val/)")
    p.add_argument("--out", default=str(REPO / "saved_models"))
    p.add_argument("--quality-dir", default=str(REPO / "benchmarks" / "quality"))
    p.add_argument("--skip-copy", action="store_true", help="reuse the models already in --out")
    p.add_argument("--center-crop", type=int, default=512, metavar="N",
                   help="quality benchmark centre crop (default 512), as benchmark --center-crop")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                   help="models to publish (default both); the others are left as they are")
    p.add_argument("--no-bm3d", action="store_true",
                   help="leave BM3D out of the quality benchmark (slow: ~16 s per 512² image)")
    p.add_argument("--no-cards", action="store_true",
                   help="do not rewrite the model cards (e.g. a card written by hand)")
    p.add_argument("--notes", nargs="*", default=[], metavar="TASK=FILE",
                   help="Markdown with the training history of each model, for its card")
    p.add_argument("--manifest-only", action="store_true",
                   help="only (re)write saved_models/manifest.json for the files in --out")
    args = p.parse_args(argv)
    if args.manifest_only:
        print(json.dumps(write_manifest(pathlib.Path(args.out)), indent=1))
        return 0

    import keras

    import maxim_tf.model  # noqa: F401  (registers MAXIM and its layers for deserialization)
    from maxim_tf import fileio
    from maxim_tf.export.tflite import export_tflite_set
    from maxim_tf.tools.quality import run_quality

    out = pathlib.Path(args.out)
    extra = {}
    for task in args.tasks:
        dest = out / f"{task}.keras"
        if not args.skip_copy:
            src = pathlib.Path(args.runs) / task / "model.keras"
            keras.saving.load_model(src, compile=False, safe_mode=True)
            with fileio.atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
        model = keras.saving.load_model(dest, compile=False, safe_mode=True)
        print(f"{task}: {dest} ({dest.stat().st_size / 2**20:.1f} MiB, "
              f"{model.count_params():,} parameters)", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            calibration_folder(task, args.data, pathlib.Path(tmp))
            paths = export_tflite_set(
                model, {"fp32": out / f"{task}_fp32.tflite", "int8": out / f"{task}_int8.tflite"},
                representative_data=tmp, num_calibration_images=32)
        for q, path in paths.items():
            print(f"  {q}: {path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
        extra[task] = [str(paths["fp32"]), str(paths["int8"])]
    results = run_quality(pathlib.Path(args.data) / "val", args.quality_dir,
                          denoise=out / "denoise.keras" if "denoise" in args.tasks else None,
                          deblur=out / "deblur.keras" if "deblur" in args.tasks else None,
                          extra=extra, crop=args.center_crop, use_bm3d=not args.no_bm3d)
    notes = dict(item.split("=", 1) for item in args.notes)
    manifest = json.loads((pathlib.Path(args.data) / "manifest.json").read_text())
    for task in ([] if args.no_cards else args.tasks):
        text = pathlib.Path(notes[task]).read_text() if task in notes else ""
        card = model_card(task, out / f"{task}.keras", results, manifest, text)
        fileio.atomic_write_bytes(out / f"{task}.md", card.encode())
    write_manifest(out)
    print((pathlib.Path(args.quality_dir) / "quality.md").read_text())
    return 0


def write_manifest(out):
    """Write ``<out>/manifest.json``: sha256 of each shipped file, and for each fp32
    ``.tflite`` the ``.keras`` it was exported from and their measured max-abs difference.

    ``maxim_tf.Restorer`` runs a shipped model on LiteRT only when this entry
    matches the files (see ``maxim_tf.litert.shipped_tflite``).
    """
    import keras

    import maxim_tf.model  # noqa: F401  (registers MAXIM and its layers for deserialization)
    from maxim_tf import fileio, litert
    from maxim_tf.image_io import read_image
    from maxim_tf.restore import Restorer

    sample = read_image(REPO / "examples" / "images" / "life_noisy_sigma25.png").pixels
    rng = np.random.default_rng(0)
    inputs = [sample[None].astype(np.float32) / 255.0,
              sample[None, 5:5 + 77, 9:9 + 131].astype(np.float32) / 255.0,
              rng.random((2, 40, 56, 3)).astype(np.float32)]
    manifest = {"files": {}, "tflite": {}}
    for path in sorted(out.glob("*.keras")) + sorted(out.glob("*.tflite")):
        manifest["files"][path.name] = {"sha256": fileio.sha256_file(path),
                                        "bytes": path.stat().st_size}
    for keras_path in sorted(out.glob("*.keras")):
        tflite = keras_path.with_name(f"{keras_path.stem}_fp32.tflite")
        if not tflite.is_file():
            continue
        model = keras.saving.load_model(keras_path, compile=False, safe_mode=True)
        reference = Restorer(model)
        runner = Restorer(litert.TFLiteRunner(tflite), size_multiple=model.size_multiple)
        diff = max(float(np.max(np.abs(reference.restore_float(x) - runner.restore_float(x))))
                   for x in inputs)
        manifest["tflite"][tflite.name] = {
            "source": keras_path.name, "source_sha256": fileio.sha256_file(keras_path),
            "sha256": fileio.sha256_file(tflite), "size_multiple": list(model.size_multiple),
            "max_abs_diff": diff, "checked_on": [list(x.shape) for x in inputs]}
    fileio.atomic_write_bytes(out / litert.MANIFEST,
                              (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


def model_card(task, path, results, manifest, notes):
    """The Markdown model card of a shipped model."""
    import keras

    from maxim_tf.tools.quality import markdown
    from maxim_tf.training.config import CONFIG_DIR

    recipe = json.loads((CONFIG_DIR / f"lomiri_{task}.json").read_text())
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    photos = manifest["photos"]
    train = [p for p in photos if p["split"] == "train"]
    val = [p for p in photos if p["split"] == "val"]
    own = dict(results, summary=[e for e in results["summary"] if e["task"] == task])
    what = {"denoise": "Blind colour Gaussian denoising (noise σ 0–50 on the 0–255 scale, "
                       "clipped and quantised to 8 bits, as noisy files are stored).",
            "deblur": "Defocus (disk) and Gaussian deblurring with mild noise (σ ≤ 5), "
                      "8-bit inputs."}[task]
    degr = json.dumps(recipe["data"]["degradations"])
    tflite = {q: out_size(path.with_name(f"{task}_{q}.tflite")) for q in ("fp32", "int8")}
    lines = [
        f"# `{task}` — a small MAXIM trained on CPU", "",
        what, "",
        "| | |", "|---|---|",
        f"| file | `saved_models/{task}.keras` ({out_size(path)}; loads in Keras safe mode) |",
        f"| TFLite | `{task}_fp32.tflite` ({tflite['fp32']}), `{task}_int8.tflite` "
        f"({tflite['int8']}, full int8, float I/O); any image size |",
        f"| parameters | {model.count_params():,} |",
        f"| input | float32 RGB in [0, 1], any H, W (padded to a multiple of "
        f"{model.size_multiple[0]} by `maxim-tf restore` / `Restorer`) |",
        f"| architecture | `MAXIM(**{json.dumps(recipe['model'])})` |",
        f"| recipe | `training/configs/lomiri_{task}.json` |", "",
        "## Use", "",
        "```bash",
        f"maxim-tf restore photo.jpg -o restored/{'' if task == 'denoise' else ' --model deblur'}",
        "```", "",
        "## Data", "",
        f"Only the photographs of Debian's `lomiri-wallpapers-16.04` package "
        f"(`apt-get download lomiri-wallpapers-16.04`, version 20.04.0-2; CC BY / CC BY-SA / CC0),"
        f" {len(photos)} photos of 1365–5312 px, box-downscaled ×{manifest['scale']} "
        f"(`python -m maxim_tf.training.photos`) to average away their JPEG artefacts and "
        f"noise, so they can serve as clean targets. Training: {len(train)} photos cut into "
        f"{sum(p['tiles'] for p in train)} tiles of {manifest['tile']}². **Validation "
        f"(held out, never trained on)**: every {manifest['val_every']}th photo in name order: "
        + ", ".join(f"`{p['file']}`" for p in val) + ". Degradations are synthesised on the "
        f"fly: `{degr}`.", "",
        "## Training", "",
        f"`maxim-tf train --config lomiri_{task}` on one core of a 2-core x86-64 CPU: "
        f"{recipe['steps']} steps of {recipe['global_batch_size']} random "
        f"{recipe['crop_size']}² crops (flips, 90° rotations), Adam, learning rate "
        f"{recipe['optimizer']['learning_rate']} with {recipe['optimizer']['warmup_steps']} "
        f"warm-up steps and cosine decay to {recipe['optimizer']['end_learning_rate']}, "
        f"gradient norm clipped at {recipe['optimizer']['clip_global_norm']}, Charbonnier loss "
        f"(ε = {recipe['loss']['charbonnier_epsilon']}) without the paper's frequency term, "
        "output convolution zero-initialised (the model starts as the identity).", "",
        notes.strip(), "",
        "## Validation", "",
        "Measured by `maxim-tf benchmark --measure quality` (`scripts/ship_models.py`) on the held-out "
        "photos; the `_fp32.tflite` / `_int8.tflite` columns are the TFLite files (LiteRT; "
        "the int8 one without XNNPACK, see the README).", "",
        markdown(own).replace("### ", "### Validation: "),
    ]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def out_size(path):
    return f"{pathlib.Path(path).stat().st_size / 2**20:.1f} MiB"


if __name__ == "__main__":
    sys.exit(main())
