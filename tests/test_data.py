"""Training data: pair checks, degradations, deterministic/resumable/shardable pipelines, TFDS."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from maxim_tf.training import data as D
from maxim_tf.training import degrade


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_pairs(root, n=4, size=(24, 40), rng=None):
    """Pairs where input == 255 - target (alignment is checkable after any augmentation)."""
    rng = rng or np.random.default_rng(0)
    for i in range(n):
        t = (rng.random((*size, 3)) * 255).astype(np.uint8)
        _save(root / "target" / f"{i:03d}.png", t)
        _save(root / "input" / f"{i:03d}.png", 255 - t)
    return root


def test_scan_pairs_mismatched_names_lists_offenders(tmp_path):
    make_pairs(tmp_path, 3)
    (tmp_path / "input" / "001.png").rename(tmp_path / "input" / "zzz.png")
    with pytest.raises(D.DataError) as e:
        D.scan_pairs(tmp_path)
    msg = str(e.value)
    assert "Mismatched names" in msg and "'zzz'" in msg and "'001'" in msg


def test_scan_pairs_mismatched_sizes_lists_offenders(tmp_path):
    make_pairs(tmp_path, 3)
    _save(tmp_path / "target" / "002.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(D.DataError, match=r"002: input 40x24 vs target 12x10"):
        D.scan_pairs(tmp_path)


def test_scan_pairs_skips_unreadable_with_warning(tmp_path, caplog):
    make_pairs(tmp_path, 3)
    (tmp_path / "input" / "001.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING, logger="maxim_tf.training"):
        inputs, targets, _ = D.scan_pairs(tmp_path)
    assert [p.stem for p in inputs] == ["000", "002"] == [p.stem for p in targets]
    assert "Skipped 1 unreadable" in caplog.text


def test_empty_sources_raise_clear_errors(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(D.DataError, match="No images found"):
        D.scan_pairs(tmp_path)
    with pytest.raises(D.DataError, match="No images"):
        D.scan_clean_folder(tmp_path / "input")
    with pytest.raises(D.DataError, match="is missing"):
        D.scan_pairs(tmp_path / "input")
    (tmp_path / "input" / "a.png").write_bytes(b"junk")
    with pytest.raises(D.DataError, match="could be read"):
        D.scan_clean_folder(tmp_path / "input")


def test_degradations_are_seeded_and_change_the_image():
    specs = degrade.validate([
        {"type": "gaussian_blur", "sigma": [0.5, 2.0]},
        {"type": "defocus_blur", "radius": [1, 3], "p": 0.5},
        {"type": "motion_blur", "length": [3, 9]},
        {"type": "poisson_noise", "peak": [20, 200]},
        {"type": "gaussian_noise", "sigma": [5, 25]},
        {"type": "jpeg", "quality": [30, 90]},
    ])
    image = tf.random.stateless_uniform([40, 48, 3], [1, 2])
    a = degrade.degrade(image, specs, [3, 4])
    assert a.shape == image.shape
    np.testing.assert_array_equal(a, degrade.degrade(image, specs, [3, 4]))
    assert float(tf.reduce_mean(tf.abs(a - degrade.degrade(image, specs, [3, 5])))) > 1e-3
    assert float(tf.reduce_mean(tf.abs(a - image))) > 0.02
    assert 0.0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 1.0


def test_blur_kernels_are_normalised_and_shaped():
    for k in (degrade.gaussian_kernel(1.5, 5), degrade.disk_kernel(3.0, 5),
              degrade.motion_kernel(7.0, 30.0, 5)):
        assert k.shape == (11, 11)
        assert float(tf.reduce_sum(k)) == pytest.approx(1.0, abs=1e-5)
    horizontal = degrade.motion_kernel(5.0, 0.0, 4).numpy()
    assert np.count_nonzero(horizontal[4]) == 5 and np.count_nonzero(horizontal) == 5


@pytest.mark.parametrize("spec, match", [
    ({"type": "snow"}, "unknown type"),
    ({"type": "jpeg", "quality": [0, 50]}, "quality"),
    ({"type": "gaussian_noise", "sigma": [9, 3]}, "low <= high"),
    ({"type": "gaussian_blur", "sigma": 1.0, "size": 3}, "unknown keys"),
])
def test_degradation_specs_are_validated(spec, match):
    with pytest.raises(ValueError, match=match):
        degrade.validate([spec])


def _batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_pipeline_is_aligned_deterministic_and_resumable(tmp_path):
    src = D.paired_folder_source(make_pairs(tmp_path, 5))
    kw = dict(global_batch_size=4, crop_size=16, seed=3,
              augment={"flips": True, "rot90": True, "mixup": 1.0})
    full = _batches(D.train_dataset(src, **kw), 4)  # 16 examples: crosses an epoch boundary
    for x, y in full:
        assert x.shape == (4, 16, 16, 3)
        np.testing.assert_allclose(x, 1.0 - y, atol=1e-6)  # crops/flips/MixUp keep pairs aligned
    again = _batches(D.train_dataset(src, **kw), 4)
    resumed = _batches(D.train_dataset(src, start_step=2, **kw), 2)
    for a, b in zip(full + full[2:], again + resumed):
        np.testing.assert_array_equal(a[0], b[0])
    other_seed = _batches(D.train_dataset(src, **{**kw, "seed": 4}), 1)
    assert not np.array_equal(other_seed[0][0], full[0][0])


def test_mixup_mixes_pairs_of_examples(tmp_path):
    src = D.paired_folder_source(make_pairs(tmp_path, 4))
    kw = dict(global_batch_size=4, crop_size=16, seed=0, augment={"flips": False, "rot90": False})
    plain = _batches(D.train_dataset(src, **kw), 1)[0][1]
    mixed = _batches(D.train_dataset(src, **{**kw, "augment": {**kw["augment"], "mixup": 1.0}}), 1)[0][1]
    # Each mixed example is a convex combination of its pair: lam*a + (1-lam)*b.
    for a, b, m in ((plain[0], plain[1], mixed[0]), (plain[2], plain[3], mixed[2])):
        lam = np.sum((m - b) * (a - b)) / np.sum((a - b) ** 2)
        assert 0.0 < lam < 1.0 and not np.isclose(lam, 1.0)
        np.testing.assert_allclose(m, lam * a + (1 - lam) * b, atol=1e-5)
    with pytest.raises(ValueError, match="must be even"):
        D.train_dataset(src, **{**kw, "global_batch_size": 3, "augment": {"mixup": 0.5}})


def test_input_pipelines_split_each_global_batch(tmp_path):
    """Two workers x one replica see exactly the halves of the single-pipeline batches."""
    src = D.synthetic_source(make_pairs(tmp_path, 3) / "target",
                             [{"type": "gaussian_noise", "sigma": [5, 20]}])
    kw = dict(global_batch_size=4, crop_size=16, seed=1, augment={"mixup": 0.5})
    whole = _batches(D.train_dataset(src, **kw), 3)
    parts = [_batches(D.train_dataset(src, input_context=tf.distribute.InputContext(2, i, 2), **kw), 3)
             for i in range(2)]
    for step, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([parts[0][step][0], parts[1][step][0]]), x)
        np.testing.assert_array_equal(np.concatenate([parts[0][step][1], parts[1][step][1]]), y)
    assert float(np.abs(whole[0][0] - whole[0][1]).mean()) > 0.005  # degraded inputs


def test_small_images_are_padded_to_the_crop(tmp_path):
    src = D.paired_folder_source(make_pairs(tmp_path, 2, size=(10, 7)))
    (x, y), = _batches(D.train_dataset(src, global_batch_size=2, crop_size=16, seed=0), 1)
    assert x.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(x, 1.0 - y, atol=1e-6)


def test_eval_dataset_is_fixed(tmp_path):
    src = D.synthetic_source(make_pairs(tmp_path, 3) / "target",
                             [{"type": "gaussian_noise", "sigma": 10}])
    a = _batches(D.eval_dataset(src, crop_size=16, seed=0, count=3), 3)
    b = _batches(D.eval_dataset(src, crop_size=16, seed=0, count=3), 3)
    assert len(a) == 3
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u[0], v[0])


def test_tfds_builder_builds_offline_and_yields_aligned_pairs(tmp_path, caplog):
    from maxim_tf.training import tfds_paired
    manual = tmp_path / "manual"
    make_pairs(manual / "train", 3)
    make_pairs(manual / "val", 2, rng=np.random.default_rng(1))
    (manual / "train" / "input" / "bad.png").write_bytes(b"junk")
    (manual / "train" / "target" / "bad.png").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="maxim_tf.training"):
        builder = tfds_paired.prepare(tmp_path / "tfds", manual, name="toy")
    assert "unreadable" in caplog.text
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "val": 2}
    names = []
    for ex in builder.as_dataset(split="train"):
        names.append(ex["name"].numpy().decode())
        np.testing.assert_array_equal(255 - ex["input"].numpy(), ex["target"].numpy())
        expected = np.asarray(Image.open(manual / "train" / "target" / f"{names[-1]}.png"))
        np.testing.assert_array_equal(ex["target"].numpy(), expected)
    assert sorted(names) == ["000", "001", "002"]
    # Prepared once: no manual dir needed again; the training source reads it.
    src = D.tfds_source(tmp_path / "tfds", None, "val", name="toy")
    assert src.num_examples == 2
    (x, y), = _batches(D.train_dataset(src, global_batch_size=2, crop_size=16, seed=0), 1)
    np.testing.assert_allclose(x, 1.0 - y, atol=1e-6)
    with pytest.raises(D.DataError, match="not prepared"):
        tfds_paired.prepare(tmp_path / "tfds", None, name="other")


def test_detail_weighting_draws_textured_photos_more_often(tmp_path, rng):
    folder = tmp_path / "photos"
    folder.mkdir()
    flat = np.full((32, 32, 3), 120, np.uint8)
    for i in range(3):
        Image.fromarray(flat + i).save(folder / f"flat{i}.png")
    y, x = np.mgrid[0:32, 0:32]
    Image.fromarray(np.stack([(x * 40 % 256)] * 3, -1).astype(np.uint8)).save(folder / "t.png")
    Image.fromarray((flat + (x % 2)[..., None] * 2).astype(np.uint8)).save(folder / "weak.png")
    paths = sorted(folder.iterdir())
    repeats = dict(zip((p.stem for p in paths), D.detail_repeats(paths, 8)))
    assert repeats["flat0"] == repeats["flat1"] == repeats["flat2"] == 1
    assert repeats["t"] == 8  # capped
    spec = {"source": "synthetic", "folder": str(folder), "detail_weighting": 8,
            "degradations": [{"type": "quantize"}]}
    assert D.make_source(spec).num_examples == sum(repeats.values())
    assert D.make_source(dict(spec, detail_weighting=None)).num_examples == 5
    assert D.make_source(dict(spec, val_folder=str(folder)), split="val").num_examples == 5
    with pytest.raises(D.DataError, match="detail_weighting"):
        D.make_source(dict(spec, detail_weighting=0.5))
