#!/usr/bin/env bash
# Set up ./.venv, restore a sample noisy photo with the default model and write
# a before/after comparison to out/demo/.
EXTRAS=${EXTRAS:-cpu}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
MT=.venv/bin/maxim-tf
SAMPLE=examples/images/sidd_noisy_0003_30.png
OUT=out/demo
mkdir -p "$OUT"

if [ -f saved_models/denoise.keras ]; then
  MODEL=denoise
  echo "[maxim-tf] model: saved_models/denoise.keras (trained denoiser, the default)"
else
  # No trained model is shipped yet: demonstrate the pipeline with the official
  # tiny *test* network converted from its fixture checkpoint. Its weights are
  # perturbed random values: the output is NOT a restoration.
  MODEL="$OUT/fixture-tiny2s.keras"
  echo "[maxim-tf] NOTE: no trained default model in saved_models/ yet."
  echo "[maxim-tf] Using the official tiny TEST network (random weights, NOT a denoiser):"
  $MT convert tests/fixtures/official/tiny2s/checkpoint.npz -o "$MODEL" \
    --reference tests/fixtures/official/tiny2s/case_real_32x96_b1.npz
fi

$MT restore "$SAMPLE" -o "$OUT" --model "$MODEL"
.venv/bin/python - "$SAMPLE" "$OUT/$(basename "$SAMPLE")" "$OUT/before_after.png" <<'PY'
import sys
import numpy as np
from maxim_tf.image_io import read_image, write_image
before, after, dest = sys.argv[1:]
a, b = read_image(before).pixels, read_image(after).pixels
gap = np.full((a.shape[0], 8) + a.shape[2:], a.max(), a.dtype)
write_image(dest, np.concatenate([a, gap, b], axis=1))
print(f"[maxim-tf] before | after: {dest}")
PY
