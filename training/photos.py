"""Turn a folder of large photos into a training/validation set of clean images.

Wallpaper-sized photos (3-5k pixels wide, JPEG) are downscaled by an integer
factor with a box filter (``PIL.Image.reduce``: the exact mean of each
``scale x scale`` block), which averages away sensor noise and JPEG artefacts,
so the results can serve as clean targets for synthetic degradations. Every
``val_every``-th photo (in sorted name order) is held out whole for
validation; the others are cut into non-overlapping square PNG tiles (cheap to
decode during training).

Command line::

    python -m maxim_tf.training.photos SRC_FOLDER OUT_FOLDER [--scale 3] [--tile 256]

writes ``OUT/train/*.png``, ``OUT/val/*.png`` and ``OUT/manifest.json``
(source files with their SHA-256, split, sizes).
"""

import argparse
import hashlib
import json
import pathlib
import sys

from maxim_tf import fileio

# Narrower than maxim_tf.image_io.IMAGE_EXTENSIONS on purpose: the sources are camera /
# wallpaper photos (JPEG, PNG), read with a plain PIL convert("RGB"), which is right for
# 8-bit RGB but not for 16-bit TIFFs, and a GIF's palette is no clean target.
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _save_png(image, path):
    with fileio.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def prepare_photos(src, dst, *, scale=3, tile=256, val_every=5, progress=True):
    """Prepare ``dst/train`` tiles and ``dst/val`` photos from the photos in ``src``.

    Returns:
        The manifest dict (also written to ``dst/manifest.json``).
    """
    from PIL import Image

    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"Photo folder not found: {src}")
    if scale < 1 or tile < 32 or val_every < 2:
        raise ValueError(f"Need scale >= 1, tile >= 32, val_every >= 2. Received: "
                         f"scale={scale}, tile={tile}, val_every={val_every}")
    paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS)
    if len(paths) < 2:
        raise ValueError(f"Need at least 2 photos under {src} (one is held out); "
                         f"found {len(paths)}.")
    (dst / "train").mkdir(parents=True, exist_ok=True)
    (dst / "val").mkdir(parents=True, exist_ok=True)
    manifest = {"source": str(src), "scale": scale, "tile": tile, "val_every": val_every,
                "photos": []}
    for i, path in enumerate(paths):
        split = "val" if i % val_every == 0 else "train"
        with Image.open(path) as im:
            image = im.convert("RGB")
        small = image.reduce(scale) if scale > 1 else image
        entry = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                 "split": split, "size": list(image.size), "reduced": list(small.size)}
        if split == "val":
            _save_png(small, dst / "val" / f"{path.stem}.png")
            entry["tiles"] = 0
        else:
            w, h = small.size
            n = 0
            for y in range(0, h - tile + 1, tile):
                for x in range(0, w - tile + 1, tile):
                    _save_png(small.crop((x, y, x + tile, y + tile)),
                              dst / "train" / f"{path.stem}_{y:05d}_{x:05d}.png")
                    n += 1
            entry["tiles"] = n
        manifest["photos"].append(entry)
        if progress:
            print(f"[{i + 1}/{len(paths)}] {path.name}: {split}, {small.size[0]}x{small.size[1]}"
                  + (f", {entry['tiles']} tiles" if split == "train" else ""), file=sys.stderr)
    fileio.atomic_write_bytes(dst / "manifest.json",
                              (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m maxim_tf.training.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="folder of clean photos (searched recursively)")
    parser.add_argument("dst", help="output folder (train/, val/, manifest.json)")
    parser.add_argument("--scale", type=int, default=3, help="box-downscale factor (default 3)")
    parser.add_argument("--tile", type=int, default=256, help="training tile side (default 256)")
    parser.add_argument("--val-every", type=int, default=5,
                        help="hold out every N-th photo for validation (default 5)")
    args = parser.parse_args(argv)
    try:
        m = prepare_photos(args.src, args.dst, scale=args.scale, tile=args.tile,
                           val_every=args.val_every)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_val = sum(p["split"] == "val" for p in m["photos"])
    print(f"{len(m['photos']) - n_val} training photos "
          f"({sum(p['tiles'] for p in m['photos'])} tiles), {n_val} validation photos "
          f"-> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
