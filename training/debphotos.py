"""Build the training/validation photo set from Debian wallpaper packages, reproducibly.

A spec (``training/configs/photos_debian.json``) names the packages, the
photographs kept from each (paths inside the package, chosen from a contact
sheet with the help of :func:`photo_stats`), the held-out validation photos
and the excluded ones. One command then rebuilds the whole set::

    python -m maxim_tf.training.debphotos training/configs/photos_debian.json OUT \\
        [--pool DEB_FOLDER] [--scale 3] [--tile 256]

1. ``apt-get download PKG`` into the pool (skipped for a .deb already there;
   nothing is installed), ``dpkg-deb -x`` into ``POOL/extracted/PKG``;
2. for every kept file: its package and version, the licence and copyright of
   its ``Files:`` paragraph in the package's machine-readable copyright file
   (DEP-5; the last matching paragraph wins), the author where the package
   records one (KDE ``metadata.json``, ``..._by_Name`` file names), SHA-256 of
   the original file and :func:`photo_stats`;
3. box-downscale by ``scale`` (exact block means, as
   :mod:`maxim_tf.training.photos`), validation photos written whole to
   ``OUT/val``, training photos cut into ``tile``-square tiles in ``OUT/train``;
4. ``OUT/manifest.json`` with all of the above per photo.

:func:`photo_stats` is the filter's statistic: renders, gradients and vector
art have large areas where the image is locally affine (the Laplacian is ~0),
photographs hardly any (sensor noise, texture). Files above
``max_flat_fraction`` (spec; default 0.35) are rejected even when listed.
Detailed 3-D renders pass the statistic; telling those from photographs was
done by eye on a contact sheet (``--contact-sheet``) and is recorded in the
spec's ``rejected`` lists with a reason.
"""

import argparse
import fnmatch
import hashlib
import json
import pathlib
import re
import subprocess
import sys

import numpy as np

from maxim_tf import fileio
from maxim_tf.training.photos import _save_png

DEFAULT_MAX_FLAT = 0.35


# ---------------------------------------------------------------- statistics

def photo_stats(image, size=512):
    """Photo-vs-render statistics of a PIL image, measured at about ``size`` px (short side).

    Returns a dict:
        flat: fraction of pixels whose 4-neighbour Laplacian of the grey levels
            is below 0.5 (of 255): high for gradients and vector art;
        detail: mean absolute grey-level gradient (texture);
        entropy: bits of the 15-bit (5 per channel) colour histogram;
        saturation: mean HSV saturation.
    """
    rgb = image.convert("RGB")
    factor = max(1, min(rgb.size) // size)
    a = np.asarray(rgb.reduce(factor) if factor > 1 else rgb, np.float32)
    g = a.mean(-1)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    detail = (np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()) / 2
    q = a.astype(np.int32) // 8
    _, counts = np.unique(q[..., 0] * 1024 + q[..., 1] * 32 + q[..., 2], return_counts=True)
    p = counts / counts.sum()
    mx, mn = a.max(-1), a.min(-1)
    return {"flat": round(float((lap < 0.5).mean()), 4), "detail": round(float(detail), 3),
            "entropy": round(float(-(p * np.log2(p)).sum()) + 0.0, 3),
            "saturation": round(float(((mx - mn) / np.maximum(mx, 1)).mean()), 3)}


# ---------------------------------------------------------------- Debian metadata

def parse_dep5(text):
    """``[(patterns, license, copyright)]`` of the ``Files:`` paragraphs of a DEP-5 file."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields:
            lic = fields.get("license", "").split("\n")[0].strip()
            cop = " ".join(fields.get("copyright", "").split())
            out.append((fields["files"].split(), lic, cop))
    return out


def license_of(paragraphs, path):
    """(license, copyright) of ``path`` (a path inside the package, e.g. ``usr/share/..``).

    DEP-5 patterns are relative to the *source* tree, whose layout differs from the
    installed one, so a pattern matches when it matches a trailing part of the
    installed path (``nature/Aqua.jpg`` matches ``usr/share/backgrounds/mate/nature/Aqua.jpg``;
    ``*`` matches everything). The last matching paragraph wins, as in DEP-5.
    """
    parts = pathlib.PurePosixPath(path).parts
    found = ("unknown", "")
    for patterns, lic, cop in paragraphs:
        for pat in patterns:
            n = len(pathlib.PurePosixPath(pat).parts)
            tails = ["/".join(parts[-k:]) for k in range(max(1, n), len(parts) + 1)] \
                if pat != "*" else [path]
            base = pathlib.PurePosixPath(pat).name
            by_name = "/" in pat and base not in ("*", "") and fnmatch.fnmatchcase(parts[-1], base)
            if (any(fnmatch.fnmatchcase(t, pat) for t in tails) or by_name) \
                    and not pat.startswith("debian/"):
                found = (lic, cop)
                break
    return found


def _kde_metadata(root, path):
    """The KPlugin section of a KDE wallpaper's metadata.json ({} if none)."""
    p = pathlib.PurePosixPath(path)
    if "contents" not in p.parts:
        return {}
    meta = pathlib.Path(root, *p.parts[:p.parts.index("contents")], "metadata.json")
    return json.loads(meta.read_text()).get("KPlugin", {}) if meta.is_file() else {}


def author_of(root, path, copyright_text=""):
    """The photographer, where the package says: KDE metadata.json, ``X_by_Name`` files, DEP-5."""
    p = pathlib.PurePosixPath(path)
    authors = _kde_metadata(root, path).get("Authors", [])
    if authors:
        return ", ".join(a.get("Name", "") for a in authors)
    m = re.search(r"_by_+(.+)$", p.stem)
    if m:
        return m.group(1).replace("_", " ")
    m = re.match(r"\d{4}(?:-\d{4})?,\s*([^<,\d]+)", copyright_text)
    return m.group(1).strip() if m else "unknown"


def fetch_package(name, pool, download=True):
    """``(extracted_root, version)`` of package ``name``; downloads the .deb if missing."""
    pool = pathlib.Path(pool)
    pool.mkdir(parents=True, exist_ok=True)
    debs = sorted(pool.glob(f"{name}_*.deb"))
    if not debs:
        if not download:
            raise FileNotFoundError(f"No {name}_*.deb in {pool} (and --no-download)")
        subprocess.run(["apt-get", "download", name], cwd=pool, check=True)
        debs = sorted(pool.glob(f"{name}_*.deb"))
    deb = debs[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    root = pool / "extracted" / name
    if not (root / ".done").is_file():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (root / ".done").write_text(version + "\n")
    return root, version


# ---------------------------------------------------------------- the build

def select(spec, roots, versions):
    """Resolve the spec into one entry per kept photo (no image written yet).

    Args:
        spec: the spec dict (see ``training/configs/photos_debian.json``).
        roots: ``{package: extracted root folder}``.
        versions: ``{package: version}``.
    """
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None

    val = set(spec.get("validation", []))
    excluded = {e["file"]: e["reason"] for e in spec.get("excluded", [])}
    rejected = {e["file"]: e["reason"] for e in spec.get("rejected", [])}
    max_flat = spec.get("max_flat_fraction", DEFAULT_MAX_FLAT)
    entries, seen_ids = [], set()
    for pkg in spec["packages"]:
        name, root = pkg["name"], pathlib.Path(roots[pkg["name"]])
        copyrights = sorted(root.glob("usr/share/doc/*/copyright"))
        cr_text = copyrights[0].read_text(errors="replace") if copyrights else ""
        paragraphs = parse_dep5(cr_text)
        for rel in pkg["photos"]:
            path = root / rel
            if not path.is_file():
                raise FileNotFoundError(f"{name}: listed photo {rel} is not in the package")
            photo_id = f"{name}:{rel}"
            if photo_id in seen_ids:
                raise ValueError(f"Photo listed twice: {photo_id}")
            seen_ids.add(photo_id)
            with Image.open(path) as im:
                stats, size = photo_stats(im), list(im.size)
            lic, cop = license_of(paragraphs, rel)
            short = pathlib.PurePosixPath(rel)
            if "contents" in short.parts:  # KDE: Name/contents/images/WxH.ext
                stem = short.parts[short.parts.index("contents") - 1]
            else:
                stem = short.stem
            split = ("rejected" if photo_id in rejected else
                     "excluded" if photo_id in excluded else
                     "val" if photo_id in val else "train")
            entry = {"id": photo_id, "package": name, "version": versions[name], "path": rel,
                     "stem": f"{pkg.get('prefix', name)}_{stem}", "license": lic,
                     "copyright": cop, "author": author_of(root, rel, cop),
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": size,
                     "stats": stats, "split": split}
            meta_license = _kde_metadata(root, rel).get("License")
            if meta_license:
                entry["license_metadata"] = meta_license
            if split in ("excluded", "rejected"):
                entry["reason"] = (excluded if split == "excluded" else rejected)[photo_id]
            if stats["flat"] > max_flat:
                entry["split"], entry["reason"] = "rejected", (
                    f"flat fraction {stats['flat']} > {max_flat} (not a photograph)")
            entries.append(entry)
    unknown = (val | set(excluded) | set(rejected)) - seen_ids
    if unknown:
        raise ValueError(f"validation/excluded photos not listed under any package: "
                         f"{sorted(unknown)}")
    return entries


def check_holdout(entries):
    """Raise if a validation photo's author or package-photo also appears in training."""
    train_authors = {e["author"] for e in entries if e["split"] == "train"}
    clash = sorted({e["author"] for e in entries if e["split"] == "val"} & train_authors
                   - {"unknown"})
    if clash:
        raise ValueError(f"Validation photographers also in training: {clash}")


def _starts(length, tile):
    """Tile offsets covering ``length``: every ``tile``, plus one flush with the far edge."""
    if length < tile:
        return []
    starts = list(range(0, length - tile + 1, tile))
    return starts + [length - tile] if starts[-1] != length - tile else starts


def write_photos(entries, roots, dst, scale=3, tile=256, progress=True):
    """Downscale and write the photos of ``entries`` (train tiles / whole val photos)."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None

    dst = pathlib.Path(dst)
    (dst / "train").mkdir(parents=True, exist_ok=True)
    (dst / "val").mkdir(parents=True, exist_ok=True)
    for i, e in enumerate(entries):
        if e["split"] not in ("train", "val"):
            continue
        with Image.open(pathlib.Path(roots[e["package"]]) / e["path"]) as im:
            image = im.convert("RGB")
        small = image.reduce(scale) if scale > 1 else image
        e["reduced"] = list(small.size)
        if e["split"] == "val":
            _save_png(small, dst / "val" / f"{e['stem']}.png")
            e["tiles"] = 0
        else:
            w, h = small.size
            n = 0
            for y in _starts(h, tile):
                for x in _starts(w, tile):
                    _save_png(small.crop((x, y, x + tile, y + tile)),
                              dst / "train" / f"{e['stem']}_{y:05d}_{x:05d}.png")
                    n += 1
            e["tiles"] = n
        if progress:
            print(f"[{i + 1}/{len(entries)}] {e['id']}: {e['split']}, "
                  f"{small.size[0]}x{small.size[1]}"
                  + (f", {e['tiles']} tiles" if e["split"] == "train" else ""), file=sys.stderr)


def build(spec, dst, pool, *, scale=3, tile=256, download=True, progress=True):
    """Fetch the packages of ``spec``, select, write ``dst/{train,val}`` and the manifest."""
    roots, versions = {}, {}
    for pkg in spec["packages"]:
        roots[pkg["name"]], versions[pkg["name"]] = fetch_package(pkg["name"], pool, download)
    entries = select(spec, roots, versions)
    check_holdout(entries)
    write_photos(entries, roots, dst, scale=scale, tile=tile, progress=progress)
    manifest = {"spec": spec.get("_comment", ""), "scale": scale, "tile": tile,
                "packages": versions,
                "counts": {s: sum(e["split"] == s for e in entries)
                           for s in ("train", "val", "excluded", "rejected")},
                "train_tiles": sum(e.get("tiles", 0) for e in entries),
                "photos": entries}
    fileio.atomic_write_bytes(pathlib.Path(dst) / "manifest.json",
                              (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    return manifest


def contact_sheet(entries, roots, out, cols=6, cell=(240, 150)):
    """A PNG of thumbnails labelled with split and statistics (to check the selection)."""
    from PIL import Image, ImageDraw
    Image.MAX_IMAGE_PIXELS = None
    w, h = cell
    rows = (len(entries) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, e in enumerate(entries):
        with Image.open(pathlib.Path(roots[e["package"]]) / e["path"]) as im:
            im.draft("RGB", (2 * w, 2 * h))
            thumb = im.convert("RGB")
        thumb.thumbnail((w, h))
        x, y = (i % cols) * w, (i // cols) * (h + 24)
        sheet.paste(thumb, (x, y))
        draw.text((x + 2, y + h + 2), f"{e['split']} {e['stem'][:28]}", fill="black")
        draw.text((x + 2, y + h + 12), f"flat {e['stats']['flat']:.2f} detail "
                  f"{e['stats']['detail']:.1f}", fill="black")
    sheet.save(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m maxim_tf.training.debphotos", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="spec JSON (packages, photos, validation, excluded)")
    parser.add_argument("dst", help="output folder (train/, val/, manifest.json)")
    parser.add_argument("--pool", default=None,
                        help="folder for the .deb files and their extraction (default DST/debs)")
    parser.add_argument("--scale", type=int, default=3, help="box-downscale factor (default 3)")
    parser.add_argument("--tile", type=int, default=256, help="training tile side (default 256)")
    parser.add_argument("--no-download", action="store_true",
                        help="use only the .deb files already in the pool")
    parser.add_argument("--contact-sheet", default=None, metavar="PNG",
                        help="also write a contact sheet of every listed photo")
    args = parser.parse_args(argv)
    spec = json.loads(pathlib.Path(args.spec).read_text())
    pool = args.pool or str(pathlib.Path(args.dst) / "debs")
    try:
        m = build(spec, args.dst, pool, scale=args.scale, tile=args.tile,
                  download=not args.no_download)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.contact_sheet:
        roots = {p: pathlib.Path(pool) / "extracted" / p for p in m["packages"]}
        contact_sheet(m["photos"], roots, args.contact_sheet)
    c = m["counts"]
    print(f"{c['train']} training photos ({m['train_tiles']} tiles), {c['val']} validation "
          f"photos, {c['excluded']} excluded, {c['rejected']} rejected -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
