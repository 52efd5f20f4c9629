#!/usr/bin/env bash
# Set up ./.venv, restore a sample noisy photo with the default model
# (saved_models/denoise.keras) and write a before/after comparison to out/demo/.
EXTRAS=${EXTRAS:-cpu}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
MT=.venv/bin/maxim-tf
SAMPLE=examples/images/life_noisy_sigma25.png   # held-out photo + Gaussian noise sigma 25
CLEAN=examples/images/life_clean.png
OUT=out/demo
mkdir -p "$OUT"

echo "[maxim-tf] maxim-tf restore $SAMPLE -o $OUT   (default model: denoise)"
$MT restore "$SAMPLE" -o "$OUT" --overwrite
.venv/bin/python - "$SAMPLE" "$OUT/$(basename "$SAMPLE")" "$CLEAN" "$OUT/before_after.png" <<'PY'
import sys
import numpy as np
from maxim_tf import metrics
from maxim_tf.image_io import read_image, write_image
before, after, clean, dest = sys.argv[1:]
a, b, c = (read_image(p).pixels for p in (before, after, clean))
gap = np.full((a.shape[0], 8) + a.shape[2:], 255, a.dtype)
write_image(dest, np.concatenate([a, gap, b, gap, c], axis=1))
print(f"[maxim-tf] PSNR vs the clean photo: noisy {metrics.psnr(c, a):.2f} dB -> "
      f"restored {metrics.psnr(c, b):.2f} dB")
print(f"[maxim-tf] noisy | restored | clean: {dest}")
PY
