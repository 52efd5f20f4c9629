"""The fast-start twin (issue 37): a converted model's verified fp32 LiteRT file, found by
the sha256 of its ``.keras`` file, run by ``maxim_tf.Restorer`` / ``restore --backend auto``
instead of the Keras graph.

The default cases use the committed official fixture tiny1s_single_scale (converted: real
outputs in about [0, 1]); the slow case an S-2-sized model (14 M parameters)."""

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, SAMPLE_IMAGES

from maxim_tf import hub, litert
from maxim_tf.cli import main
from maxim_tf.image_io import read_image
from maxim_tf.restore import Restorer

TINY1S = FIXTURES / "official" / "tiny1s_single_scale"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MAXIM_TF_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """tiny1s converted with --fast-start into its own cache; (keras path, cache, stdout)."""
    import os

    root = tmp_path_factory.mktemp("faststart")
    cache = root / "cache"
    old = os.environ.get("MAXIM_TF_HOME")
    os.environ["MAXIM_TF_HOME"] = str(cache)
    try:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["convert", str(TINY1S / "checkpoint.npz"), "--model-config",
                       str(TINY1S / "config.json"), "-o", str(root / "tiny1s.keras"),
                       "--fast-start"])
        assert rc == 0, out.getvalue()
    finally:
        if old is None:
            del os.environ["MAXIM_TF_HOME"]
        else:
            os.environ["MAXIM_TF_HOME"] = old
    return root / "tiny1s.keras", cache, out.getvalue()


def test_convert_builds_a_verified_twin(converted, monkeypatch):
    path, cache, stdout = converted
    monkeypatch.setenv("MAXIM_TF_HOME", str(cache))
    assert "fast start: checking it against Keras on 3 inputs" in stdout
    assert "Fast start:" in stdout
    (folder,) = (cache / "faststart").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model_fp32.tflite"]
    entry = json.loads((folder / "manifest.json").read_text())["tflite"]["model_fp32.tflite"]
    assert entry["source_sha256"] == litert.file_digest(path)
    assert 0 <= entry["max_abs_diff"] <= litert.FASTSTART_TOLERANCE
    assert len(entry["checked_on"]) == 3
    found = litert.faststart_tflite(path)
    assert found == (folder / "model_fp32.tflite", (1, 1)) or found[0] == folder / "model_fp32.tflite"


def test_restore_runs_the_twin_and_matches_keras(converted, monkeypatch):
    path, cache, _ = converted
    monkeypatch.setenv("MAXIM_TF_HOME", str(cache))
    photo = read_image(SAMPLE_IMAGES / "deraining" / "1.png").pixels  # 480 x 320
    fast = Restorer(path)
    slow = Restorer(path, backend="keras")
    assert fast.backend == "litert" and slow.backend == "keras"
    x = photo[None, :131, :157].astype(np.float32) / 255
    diff = np.abs(fast.restore_float(x) - slow.restore_float(x)).max()
    assert diff <= litert.FASTSTART_TOLERANCE, diff
    assert fast(photo).shape == photo.shape


def test_a_changed_keras_file_does_not_use_the_old_twin(converted, tmp_path, monkeypatch):
    path, cache, _ = converted
    monkeypatch.setenv("MAXIM_TF_HOME", str(cache))
    changed = tmp_path / "changed.keras"
    shutil.copy(path, changed)
    assert litert.faststart_tflite(changed) is not None  # same bytes: the same twin
    model = Restorer(changed, backend="keras").model
    model.weights[0].assign(model.weights[0] * 0.5)
    model.save(changed)
    assert litert.faststart_tflite(changed) is None
    assert Restorer(changed).backend == "keras"
    with pytest.raises(ValueError, match="no verified fp32 .tflite twin"):
        Restorer(changed, backend="litert")


def test_a_tampered_twin_is_not_used(converted, tmp_path, monkeypatch):
    path, cache, _ = converted
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    monkeypatch.setenv("MAXIM_TF_HOME", str(copy))
    assert litert.faststart_tflite(path) is not None
    (tflite,) = copy.glob("faststart/*/model_fp32.tflite")
    tflite.write_bytes(tflite.read_bytes()[:-1] + b"\0")
    assert litert.faststart_tflite(path) is None


def test_models_prepare_finds_the_existing_twin(converted, monkeypatch, capsys):
    path, cache, _ = converted
    monkeypatch.setenv("MAXIM_TF_HOME", str(cache))
    before = sorted(p.name for p in (cache / "faststart").rglob("*"))
    assert main(["models", "--prepare", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: fast start" in out and "exporting" not in out
    assert sorted(p.name for p in (cache / "faststart").rglob("*")) == before


def test_faststart_setting(monkeypatch):
    monkeypatch.delenv("MAXIM_TF_FASTSTART", raising=False)
    assert hub.faststart_wanted() is True
    monkeypatch.setenv("MAXIM_TF_FASTSTART", "0")
    assert hub.faststart_wanted() is False and hub.faststart_wanted(True) is True
    monkeypatch.setenv("MAXIM_TF_FASTSTART", "maybe")
    with pytest.raises(ValueError, match="MAXIM_TF_FASTSTART='maybe'"):
        hub.faststart_wanted()


def test_clearing_a_preset_removes_its_twin(home):
    digest = "ab" * 32
    entry = hub.entry_dir("maxim-s2-denoising-sidd")
    entry.mkdir(parents=True)
    (entry / hub.MANIFEST_FILE).write_text(json.dumps({"model": {"sha256": digest}}))
    twin = litert.faststart_folder(digest)
    twin.mkdir(parents=True)
    (twin / litert.FASTSTART_FILE).write_bytes(b"x")
    other = litert.faststart_folder("cd" * 32)
    other.mkdir(parents=True)
    assert hub.clear("maxim-s2-denoising-sidd")
    assert not entry.exists() and not twin.exists() and other.is_dir()


def test_convert_default_skips_small_models(tmp_path, home, capsys):
    rc = main(["convert", str(TINY1S / "checkpoint.npz"), "--model-config",
               str(TINY1S / "config.json"), "-o", str(tmp_path / "t.keras")])
    assert rc == 0 and "fast start" not in capsys.readouterr().out.lower()
    assert not (home / "faststart").exists()


@pytest.mark.slow
def test_s2_sized_checkpoint_convert_twin_restore(tmp_path, home, capsys):
    """An S-2-sized official-layout checkpoint (random values, conv kernels halved as the
    official fixtures were made) through convert -> fast-start twin (the default for this
    size) -> restore on LiteRT, equal to Keras within the stated tolerance."""
    import keras

    import maxim_tf

    keras.utils.set_random_seed(0)
    model = maxim_tf.MAXIM.from_variant("S-2")
    for weight in model.weights:
        if weight.path.endswith("kernel") and len(weight.shape) == 4:
            weight.assign(weight * 0.5)
    import re

    from maxim_tf.conversion.checkpoint import flax_path

    # The released .npz layout: opt/target/<flax path>, Flax ConvTranspose kernels
    # (kh, kw, in, out) unflipped; the names and shapes must be the official S-2 tree.
    params = {}
    for weight in model.weights:
        name, array = flax_path(weight.path), weight.numpy()
        if re.search(r"(^|/)ConvTranspose_\d+/kernel$", name):
            array = np.ascontiguousarray(array.transpose(0, 1, 3, 2)[::-1, ::-1])
        params[name] = array
    manifests = json.loads((FIXTURES / "official" / "official_variant_manifests.json").read_text())
    assert {k: list(v.shape) for k, v in params.items()} == manifests["S-2"]
    np.savez(tmp_path / "s2.npz", **{f"opt/target/{k}": v for k, v in params.items()})
    rc = main(["convert", str(tmp_path / "s2.npz"), "--variant", "S-2",
               "-o", str(tmp_path / "s2.keras")])
    out = capsys.readouterr().out
    assert rc == 0 and "Fast start:" in out, out
    fast = Restorer(tmp_path / "s2.keras")
    assert fast.backend == "litert"
    x = np.random.default_rng(0).random((1, 77, 131, 3)).astype(np.float32)
    diff = np.abs(fast.restore_float(x) - Restorer(model, backend="keras").restore_float(x)).max()
    assert diff <= litert.FASTSTART_TOLERANCE * 2, diff
