"""Training configs: bundled files, overrides, validation errors, the CLI parser."""

import json

import pytest

from maxim_tf.training import config as C
from maxim_tf.training import data as D

BUNDLED = ["deblur", "dehaze", "denoise", "denoise_synthetic", "derain", "enhance"]


# The recipes of the models shipped in saved_models/ (small, CPU-trained).
RECIPES = ["debian_deblur", "debian_deblur_halfnoise", "debian_denoise", "debian_denoise_lowsigma",
           "lomiri_deblur", "lomiri_denoise"]
# Photo-set specs for python -m maxim_tf.training.debphotos (not training configs).
PHOTO_SETS = ["photos_debian"]


def test_shipped_model_recipes_are_valid():
    import maxim_tf

    for name in RECIPES:
        cfg = C.load_config(name, ["model_dir=/tmp/never_written"])
        assert cfg["task"] == name.split("_")[1] and cfg["variant"] is None
        model = maxim_tf.MAXIM(**cfg["model"])
        assert cfg["crop_size"] % model.size_multiple[0] == 0
        assert cfg["zero_init_output"] and cfg["loss"]["frequency_weight"] == 0.0
        assert cfg["data"]["degradations"][-1] == {"type": "quantize"}  # 8-bit inputs


def test_halfnoise_deblur_recipe_differs_from_its_base_only_in_the_noise_probability():
    # Stretch 8 of the shipped deblurrer (docs/experiments.md): the mild noise on half
    # of the examples, everything else as debian_deblur.
    from maxim_tf.training import degrade

    base = C.load_config("debian_deblur", ["model_dir=/tmp/never_written"])
    half = C.load_config("debian_deblur_halfnoise", ["model_dir=/tmp/never_written"])
    b, h = base["data"].pop("degradations"), half["data"].pop("degradations")
    base.pop("_comment", None), half.pop("_comment", None)
    assert base == half
    assert [s["type"] for s in h] == [s["type"] for s in b] == ["one_of", "gaussian_noise", "quantize"]
    assert h[1] == {**b[1], "p": 0.5} and h[0] == b[0] and h[2] == b[2]
    assert degrade.validate(h)[1]["p"] == 0.5


def test_every_task_has_a_valid_bundled_config():
    assert sorted(p.stem for p in C.CONFIG_DIR.glob("*.json")) == sorted(BUNDLED + RECIPES + PHOTO_SETS)
    import maxim_tf
    for name in BUNDLED:
        cfg = C.load_config(name, ["model_dir=/tmp/never_written"])
        assert cfg["task"] in C.TASKS
        assert cfg["variant"] in maxim_tf.VARIANTS
        assert cfg["crop_size"] % 64 == 0 and cfg["steps"] > 0 and cfg["global_batch_size"] > 0
        assert cfg["optimizer"]["learning_rate"] == 2e-4
        assert cfg["optimizer"]["end_learning_rate"] == 1e-7
        assert cfg["loss"] == {"charbonnier_epsilon": 1e-3, "frequency_weight": 0.1}
        kind = cfg["data"]["source"]
        assert set(cfg["data"]) - {"source"} <= D.DATA_KEYS[kind]


def test_overrides_parse_json_values_and_nested_keys():
    cfg = C.load_config("denoise", ["model_dir=/tmp/x", "optimizer.warmup_steps=10",
                                    "optimizer.clip_global_norm=1.0", "data.name=mine",
                                    "mixed_precision=mixed_bfloat16", "augment.flips=false"])
    assert cfg["optimizer"]["warmup_steps"] == 10 and cfg["optimizer"]["clip_global_norm"] == 1.0
    assert cfg["data"]["name"] == "mine" and cfg["augment"]["flips"] is False
    assert cfg["mixed_precision"] == "mixed_bfloat16"
    assert cfg["optimizer"]["learning_rate"] == 2e-4  # untouched siblings keep their values


@pytest.mark.parametrize("overrides, match", [
    (["stpes=3"], "Unknown config key 'stpes'"),
    (["optimizer.lr=3"], "Unknown config key 'optimizer.lr'"),
    (["steps=0"], "steps must be a positive integer"),
    (["mixed_precision=float16"], "mixed_precision must be"),
    (["strategy=horovod"], "strategy must be"),
    (["optimizer.warmup_steps=300000"], "warmup_steps must be in"),
    (["optimizer.clip_global_norm=-1"], "clip_global_norm"),
    (["model_dir=null"], "model_dir is required"),
    (["noequals"], "key.sub=value"),
])
def test_bad_configs_are_refused_with_the_reason(overrides, match):
    base = ["model_dir=/tmp/x"] if "model_dir=null" not in overrides else []
    with pytest.raises(C.ConfigError, match=match):
        C.load_config("denoise", base + overrides)


def test_config_files_errors(tmp_path):
    with pytest.raises(C.ConfigError, match="Config not found"):
        C.load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(C.ConfigError, match="not valid JSON"):
        C.load_config(bad)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"model_dir": "/tmp/x"}))
    with pytest.raises(C.ConfigError, match="no data section"):
        C.load_config(empty)


def test_unknown_data_keys_are_refused():
    with pytest.raises(D.DataError, match=r"Unknown data keys for source 'paired_folder': \['rot'\]"):
        D.make_source({"source": "paired_folder", "root": "/x", "rot": 1})
    with pytest.raises(D.DataError, match="data.source must be"):
        D.make_source({"source": "lmdb"})


def test_cli_train_is_registered_and_reports_config_errors(capsys):
    from maxim_tf import cli
    assert cli.main(["train", "--config", "denoise", "--model-dir", "/tmp/x",
                     "--set", "steps=-1", "--quiet"]) == 2
    assert "steps must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--resume" in capsys.readouterr().out


def test_learning_rate_schedule_is_cosine_from_2e4_to_1e7():
    from maxim_tf.training.trainer import learning_rate_schedule
    opt = dict(C.DEFAULTS["optimizer"])
    s = learning_rate_schedule(opt, 1000)
    assert float(s(0)) == pytest.approx(2e-4)
    assert float(s(500)) == pytest.approx((2e-4 + 1e-7) / 2, rel=1e-4)
    assert float(s(1000)) == pytest.approx(1e-7, rel=1e-3)
    w = learning_rate_schedule({**opt, "warmup_steps": 100}, 1000)
    assert float(w(50)) == pytest.approx(1e-4) and float(w(100)) == pytest.approx(2e-4)
    assert float(w(1000)) == pytest.approx(1e-7, rel=1e-3)


def test_zero_init_output_makes_the_model_start_as_the_identity(rng):
    import numpy as np
    from conftest import TINY_CONFIG

    import maxim_tf
    from maxim_tf.training.trainer import zero_output_convs

    model = maxim_tf.MAXIM(**TINY_CONFIG, return_all_outputs=True)
    x = rng.uniform(0, 1, (1, 32, 64, 3)).astype("float32")
    assert np.abs(model(x)[-1].numpy() - x).max() > 0.1  # the official init is far from it
    names = zero_output_convs(model)
    assert sorted(names) == [f"stage_1_output_conv_{i}" for i in range(3)]
    np.testing.assert_allclose(model(x)[-1].numpy(), x, atol=1e-6)
    assert C.load_config({"model_dir": "/tmp/x", "data": {"source": "synthetic"},
                          "variant": "S-1", "zero_init_output": True})["zero_init_output"] is True
