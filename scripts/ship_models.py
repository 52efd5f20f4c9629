"""Publish trained models to saved_models/ and measure them (how the shipped models were made).

After ``maxim-tf train`` has finished the two runs (see saved_models/*.md)::

    python scripts/ship_models.py --runs RUNS_DIR --data data/lomiri_x3

1. copies ``RUNS_DIR/<task>/model.keras`` to ``saved_models/<task>.keras``
   (after loading it back with Keras ``safe_mode``),
2. exports each to a dynamic-size fp32 TFLite and a full-int8 TFLite
   (``saved_models/<task>_fp32.tflite``, ``<task>_int8.tflite``), the int8 one
   calibrated on 32 *degraded* training crops (the activations the model sees),
3. runs the quality benchmark on the held-out photos (``maxim-tf benchmark
   --quality``) with both TFLite files scored next to the Keras model.
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

    from maxim_tf.quality import degrade_uint8
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
    p.add_argument("--crop", type=int, default=512, help="quality benchmark crop (default 512)")
    args = p.parse_args(argv)

    import keras

    import maxim_tf  # noqa: F401  (registers the layers)
    from maxim_tf import fileio
    from maxim_tf.export.tflite import export_tflite_set
    from maxim_tf.quality import run_quality

    out = pathlib.Path(args.out)
    extra = {}
    for task in TASKS:
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
    run_quality(pathlib.Path(args.data) / "val", args.quality_dir,
                denoise=out / "denoise.keras", deblur=out / "deblur.keras", extra=extra,
                crop=args.crop)
    print((pathlib.Path(args.quality_dir) / "quality.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
