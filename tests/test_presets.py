"""The preset registry: pure data, the official names and numbers, user preset files."""

import json
import math
import subprocess
import sys

import pytest
from conftest import FIXTURES, REPO

from maxim_tf import presets
from maxim_tf.errors import UsageError

OFFICIAL_NAMES = [
    "maxim-s3-denoising-sidd", "maxim-s3-deblurring-gopro", "maxim-s3-deblurring-reds",
    "maxim-s3-deblurring-realblur-r", "maxim-s3-deblurring-realblur-j",
    "maxim-s2-deraining-rain13k", "maxim-s2-deraining-raindrop",
    "maxim-s2-dehazing-sots-indoor", "maxim-s2-dehazing-sots-outdoor",
    "maxim-s2-enhancement-lol", "maxim-s2-enhancement-fivek",
]
BUCKET_FOLDERS = {"Denoising": ["SIDD"], "Deblurring": ["GoPro", "REDS", "RealBlur_R", "RealBlur_J"],
                  "Deraining": ["Rain13k", "Raindrop"], "Dehazing": ["SOTS-Indoor", "SOTS-Outdoor"],
                  "Enhancement": ["LOL", "FiveK"]}


def test_official_presets_names_paths_and_licence():
    assert [p.name for p in presets.OFFICIAL_PRESETS] == OFFICIAL_NAMES
    for p in presets.OFFICIAL_PRESETS:
        task, folder, file = p.path.split("/")
        assert folder in BUCKET_FOLDERS[task] and file == "checkpoint.npz" and task == p.task
        assert p.license == "Apache-2.0" and p.variant in ("S-2", "S-3")
        assert p.model_config()["num_supervision_scales"] == 3
    names = list(presets.all_presets())
    assert names[:2] == ["denoise", "deblur"] and names[2:] == OFFICIAL_NAMES


def test_reported_numbers_are_the_official_table():
    # google-research/maxim README; 13 benchmark rows over the 11 checkpoints.
    assert sum(len(p.results) for p in presets.OFFICIAL_PRESETS) == 13
    sidd = presets.get_preset("maxim-s3-denoising-sidd")
    assert sidd.results == {"SIDD": (39.96, 0.960), "DND": (39.84, 0.954)} and sidd.psnr == 39.96
    assert presets.get_preset("maxim-s3-deblurring-gopro").psnr == 32.86
    assert presets.get_preset("denoise").psnr is None  # ours: numbers in the model card


def test_params_are_those_of_the_official_parameter_trees():
    manifests = json.loads((FIXTURES / "official" / "official_variant_manifests.json").read_text())
    for variant, tree in manifests.items():
        assert presets.VARIANT_PARAMS[variant] == sum(math.prod(s) for s in tree.values())


def test_registry_imports_without_tensorflow():
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('p', {str(REPO / 'maxim_tf' / 'presets.py')!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "assert len(m.all_presets()) == 13; "
            "assert not any(k.split('.')[0] in ('tensorflow', 'keras') for k in sys.modules), 'heavy'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_user_presets_file(tmp_path, monkeypatch):
    file = tmp_path / "p.json"
    file.write_text(json.dumps({"mine": {"task": "Denoising", "dataset": "x", "variant": "S-2",
                                         "path": "Denoising/x/checkpoint.npz",
                                         "results": {"x": [30.0, 0.9]}}}))
    monkeypatch.setenv("MAXIM_TF_PRESETS", str(file))
    mine = presets.get_preset("mine")
    assert mine.variant == "S-2" and mine.psnr == 30.0 and mine.model_config()["num_stages"] == 2
    file.write_text(json.dumps({"bad": {"task": "Denoising", "variant": "S-9", "path": "a"}}))
    with pytest.raises(UsageError, match="unknown variant 'S-9'"):
        presets.all_presets()
    file.write_text(json.dumps({"bad": {"variant": "S-2"}}))
    with pytest.raises(UsageError, match="needs task, dataset, path"):
        presets.all_presets()
    file.write_text("{not json")
    with pytest.raises(UsageError, match="cannot read the presets file"):
        presets.all_presets()


def test_unknown_name_lists_presets_and_paths_are_not_names(tmp_path, monkeypatch):
    from maxim_tf import hub
    from maxim_tf.errors import ModelFileError, ModelNotFoundError

    monkeypatch.setenv("MAXIM_TF_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="maxim-s3-denoising-sidd.*maxim-tf models"):
        hub.resolve_model("maxim-s9-nothing")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        hub.resolve_model(tmp_path / "maxim-s3-denoising-sidd.keras")
    with pytest.raises(ModelFileError, match="is a directory"):
        hub.resolve_model(tmp_path)
    assert hub.resolve_model("denoise").name == "denoise.keras"
    assert not (tmp_path / "cache").exists()


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    from maxim_tf import hub

    monkeypatch.delenv("MAXIM_TF_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "maxim_tf"
    monkeypatch.setenv("MAXIM_TF_HOME", str(tmp_path / "home"))
    assert hub.entry_dir("a") == tmp_path / "home" / "presets" / "a"
    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", "gs://my-bucket/maxim/")
    assert hub.preset_url(presets.get_preset("maxim-s2-enhancement-lol")) == \
        "gs://my-bucket/maxim/Enhancement/LOL/checkpoint.npz"
    monkeypatch.delenv("MAXIM_TF_OFFICIAL_URL")
    assert hub.preset_url(presets.get_preset("maxim-s3-denoising-sidd")) == \
        "https://storage.googleapis.com/gresearch/maxim/ckpt/Denoising/SIDD/checkpoint.npz"


def test_models_command_modules_import_nothing_heavy():
    code = ("import importlib.util, sys, argparse; "
            f"spec = importlib.util.spec_from_file_location('m', {str(REPO / 'maxim_tf' / 'commands' / 'models.py')!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "m.register(argparse.ArgumentParser().add_subparsers()); "
            "assert not any(k.split('.')[0] in ('tensorflow', 'keras') for k in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
