"""The Debian photo-set builder: statistic, DEP-5 licences, hold-out rules, manifest (offline)."""

import json

import numpy as np
import pytest
from PIL import Image

from maxim_tf.training import debphotos

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: nature/Aqua.jpg
       nature/Leaf.jpg
Copyright: 2008, Charles Barbin <c@example.org>
           2008, Other Person
License: CC-BY-SA-4.0

Files: 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2019 Sander Klootwijk
License: CC0-1.0

Files: debian/*
Copyright: 2021 Packager
License: Expat
"""


def _texture(rng, h, w):
    """A 'photograph': smooth shading plus fine grain everywhere."""
    y, x = np.mgrid[0:h, 0:w]
    base = 60 + 100 * (x / w)[..., None] + 30 * np.sin(y / 7.0)[..., None]
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _gradient(h, w):
    """A 'render': a linear colour gradient (locally affine: zero Laplacian)."""
    x = np.linspace(0, 255, w)
    return np.repeat(np.stack([x, x[::-1], np.full(w, 128.0)], -1)[None], h, 0).astype(np.uint8)


def test_photo_stats_separate_photographs_from_gradients(rng):
    photo = debphotos.photo_stats(Image.fromarray(_texture(rng, 300, 400)))
    render = debphotos.photo_stats(Image.fromarray(_gradient(300, 400)))
    assert photo["flat"] < 0.05 < 0.9 < render["flat"]
    assert photo["detail"] > render["detail"]
    assert set(photo) == {"flat", "detail", "entropy", "saturation"}


def test_dep5_licence_lookup_matches_installed_paths():
    paras = debphotos.parse_dep5(COPYRIGHT)
    assert [p[1] for p in paras] == ["GPL-2+", "CC-BY-SA-4.0", "CC0-1.0", "Expat"]
    assert paras[1][0] == ["nature/Aqua.jpg", "nature/Leaf.jpg"]
    lic = debphotos.license_of
    # source-tree pattern matched against the tail of the installed path
    assert lic(paras, "usr/share/backgrounds/mate/nature/Leaf.jpg")[0] == "CC-BY-SA-4.0"
    # different directory layout upstream: matched by file name
    assert lic(paras, "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg")[0] == "CC0-1.0"
    # everything else falls back to Files: *, never to debian/*
    assert lic(paras, "usr/share/other/x.png")[0] == "GPL-2+"
    assert "Charles Barbin" in lic(paras, "usr/share/backgrounds/mate/nature/Aqua.jpg")[1]


def _fake_package(root, rng):
    """An 'extracted' package: 4 photos (two photographers) + a gradient, DEP-5 copyright."""
    bg = root / "usr/share/backgrounds"
    (bg / "mate/nature").mkdir(parents=True)
    doc = root / "usr/share/doc/fake-backgrounds"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    for name in ("a_by_Ann_Smith", "b_by_Ann_Smith", "c_by_Bob_Jones", "d_by_Cy_Young"):
        Image.fromarray(_texture(rng, 140, 200)).save(bg / f"{name}.png")
    Image.fromarray(_gradient(140, 200)).save(bg / "mate/nature/Aqua.jpg", format="PNG")


def _spec(**kw):
    photos = [f"usr/share/backgrounds/{n}.png" for n in
              ("a_by_Ann_Smith", "b_by_Ann_Smith", "c_by_Bob_Jones", "d_by_Cy_Young")]
    spec = {"packages": [{"name": "fake-backgrounds", "prefix": "fk",
                          "photos": photos + ["usr/share/backgrounds/mate/nature/Aqua.jpg"]}],
            "validation": ["fake-backgrounds:usr/share/backgrounds/c_by_Bob_Jones.png"],
            "excluded": [{"file": "fake-backgrounds:usr/share/backgrounds/d_by_Cy_Young.png",
                          "reason": "test"}]}
    spec.update(kw)
    return spec


def test_select_and_write_build_a_reproducible_manifest(tmp_path, rng):
    root = tmp_path / "pkg"
    _fake_package(root, rng)
    roots, versions = {"fake-backgrounds": root}, {"fake-backgrounds": "1.0-1"}
    entries = debphotos.select(_spec(), roots, versions)
    by_split = {}
    for e in entries:
        by_split.setdefault(e["split"], []).append(e["stem"])
    assert by_split == {"train": ["fk_a_by_Ann_Smith", "fk_b_by_Ann_Smith"],
                        "val": ["fk_c_by_Bob_Jones"], "excluded": ["fk_d_by_Cy_Young"],
                        "rejected": ["fk_Aqua"]}  # the gradient fails the flat-fraction test
    first = entries[0]
    assert first["author"] == "Ann Smith" and first["version"] == "1.0-1"
    assert first["license"] == "GPL-2+" and len(first["sha256"]) == 64
    debphotos.check_holdout(entries)
    debphotos.write_photos(entries, roots, tmp_path / "out", scale=2, tile=64, progress=False)
    # 70x100 after x2: tiles at y in {0, 6}, x in {0, 36} (the last one flush with the edge)
    tiles = sorted(p.name for p in (tmp_path / "out/train").iterdir())
    assert len(tiles) == 2 * 4 and "fk_a_by_Ann_Smith_00006_00036.png" in tiles
    val = Image.open(tmp_path / "out/val/fk_c_by_Bob_Jones.png")
    assert val.size == (100, 70)
    again = debphotos.select(_spec(), roots, versions)
    assert [e["sha256"] for e in again] == [e["sha256"] for e in entries]


def test_holdout_rules_are_enforced(tmp_path, rng):
    root = tmp_path / "pkg"
    _fake_package(root, rng)
    roots, versions = {"fake-backgrounds": root}, {"fake-backgrounds": "1.0-1"}
    spec = _spec(validation=["fake-backgrounds:usr/share/backgrounds/a_by_Ann_Smith.png"])
    with pytest.raises(ValueError, match="Ann Smith"):  # b_by_Ann_Smith trains
        debphotos.check_holdout(debphotos.select(spec, roots, versions))
    with pytest.raises(ValueError, match="not listed"):
        debphotos.select(_spec(validation=["fake-backgrounds:nope.png"]), roots, versions)
    bad = _spec()
    bad["packages"][0]["photos"].append("usr/share/backgrounds/missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        debphotos.select(bad, roots, versions)


def test_cli_builds_from_a_pool_without_downloading(tmp_path, rng, monkeypatch):
    root = tmp_path / "pool" / "extracted" / "fake-backgrounds"
    _fake_package(root, rng)
    (root / ".done").write_text("1.0-1\n")
    (tmp_path / "pool" / "fake-backgrounds_1.0-1_all.deb").write_bytes(b"")

    def fake_run(cmd, **kw):  # dpkg-deb -f DEB Version
        assert cmd[:2] == ["dpkg-deb", "-f"]
        return type("R", (), {"stdout": "1.0-1\n"})()

    monkeypatch.setattr(debphotos.subprocess, "run", fake_run)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_spec()))
    out = tmp_path / "out"
    assert debphotos.main([str(spec_path), str(out), "--pool", str(tmp_path / "pool"),
                           "--no-download", "--scale", "2", "--tile", "64",
                           "--contact-sheet", str(tmp_path / "sheet.png")]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["packages"] == {"fake-backgrounds": "1.0-1"}
    assert m["counts"] == {"train": 2, "val": 1, "excluded": 1, "rejected": 1}
    assert m["train_tiles"] == 8 and (tmp_path / "sheet.png").is_file()
    assert debphotos.main([str(spec_path), str(tmp_path / "o2"), "--pool",
                           str(tmp_path / "empty"), "--no-download"]) == 2
