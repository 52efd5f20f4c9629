"""Converter refusals (each a clear error, nothing written) and the CLI."""

import json
import pickle
import zipfile

import keras
import numpy as np
import pytest
from conftest import FIXTURES

import maxim_tf
from maxim_tf.cli import main
from maxim_tf.conversion import ConversionError, convert_checkpoint, load_official_params

TINY2S = FIXTURES / "official" / "tiny2s"
CKPT = TINY2S / "checkpoint.npz"
CASE = TINY2S / "case_real_32x96_b1.npz"


@pytest.fixture(scope="module")
def params():
    with np.load(CKPT, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def _refused(tmp_path, ckpt, match, **kwargs):
    out = tmp_path / "out.keras"
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(ckpt, out, **kwargs)
    assert list(tmp_path.glob("*.keras")) == [] and list(tmp_path.glob(".tmp-*")) == []


def test_missing_tensor(tmp_path, params):
    p = dict(params)
    del p["opt/target/stage_0_input_conv_1/bias"]
    _refused(tmp_path, _write(tmp_path / "c.npz", p),
             r"missing tensors \(1\):\n    stage_0_input_conv_1/bias", variant=None,
             config=str(TINY2S / "config.json"))


def test_unexpected_tensor(tmp_path, params):
    p = dict(params)
    p["opt/target/stage_0_extra/kernel"] = np.zeros((3, 3), "float32")
    _refused(tmp_path, _write(tmp_path / "c.npz", p),
             r"unexpected tensors \(1\):\n    stage_0_extra/kernel",
             config=str(TINY2S / "config.json"))


def test_misshaped_tensor(tmp_path, params):
    p = dict(params)
    p["opt/target/stage_0_input_conv_0/bias"] = np.zeros(9, "float32")
    _refused(tmp_path, _write(tmp_path / "c.npz", p),
             r"(?s)mis-shaped.*stage_0_input_conv_0/bias', \(9,\), \(8,\)",
             config=str(TINY2S / "config.json"))


def test_wrong_variant_lists_the_differences(tmp_path):
    _refused(tmp_path, CKPT, "checkpoint does not match the model configuration", variant="S-1")


def test_pickled_object_refused(tmp_path, params):
    p = dict(params)
    p["opt/target/evil"] = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "c.npz"
    np.savez(path, **p)  # numpy pickles the object array inside the archive
    _refused(tmp_path, path, "pickled Python object")


def test_truncated_file_refused(tmp_path):
    data = CKPT.read_bytes()
    path = tmp_path / "c.npz"
    path.write_bytes(data[: len(data) // 2])
    _refused(tmp_path, path, "not an .npz checkpoint|corrupt or truncated")


def test_non_npz_files_refused(tmp_path):
    txt = tmp_path / "c.npz"
    txt.write_text("hello")
    _refused(tmp_path, txt, "not an .npz checkpoint")
    empty = tmp_path / "e.npz"
    empty.write_bytes(b"")
    _refused(tmp_path, empty, "empty")
    pkl = tmp_path / "p.npz"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    _refused(tmp_path, pkl, "not an .npz checkpoint")
    _refused(tmp_path, tmp_path / "missing.npz", "no such checkpoint file")


def test_not_a_maxim_checkpoint(tmp_path):
    _refused(tmp_path, _write(tmp_path / "c.npz", {"opt/target/foo/kernel": np.zeros(3)}),
             "does not look like a MAXIM checkpoint")


def test_optimizer_state_is_ignored():
    params, ignored = load_official_params(CKPT)
    assert ignored == 1 and all(not k.startswith("opt/") for k in params)


def test_zip_without_arrays_refused(tmp_path):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not an array")
    _refused(tmp_path, path, "readme.txt.* is not a .npy array")


def test_cli_converts_verifies_and_loads(tmp_path, capsys):
    out = tmp_path / "tiny2s.keras"
    code = main(["convert", str(CKPT), "-o", str(out), "--reference", str(CASE)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Max abs error vs reference over 6 outputs" in printed
    worst = float(printed.split("outputs: ")[1].split()[0])
    assert worst <= 1e-4
    model = keras.saving.load_model(out)  # safe_mode is the default
    assert isinstance(model, maxim_tf.MAXIM) and not model.return_all_outputs
    with np.load(CASE, allow_pickle=False) as case:
        got = np.asarray(model(case["input"]))
        np.testing.assert_allclose(got, case["stage1_out2"], atol=1e-4)


def test_cli_error_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a checkpoint")
    code = main(["convert", str(bad), "-o", str(tmp_path / "x.keras")])
    err = capsys.readouterr().err
    assert code == 2  # nothing done: a usage/data error (maxim_tf.errors)
    assert "bad.npz" in err and "not an .npz checkpoint" in err
    assert not (tmp_path / "x.keras").exists()


def test_cli_config_file(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(json.loads((TINY2S / "config.json").read_text())))
    out = tmp_path / "m.keras"
    assert main(["convert", str(CKPT), "-o", str(out), "--model-config", str(cfg), "--all-outputs"]) == 0
    model = keras.saving.load_model(out)
    assert model.return_all_outputs and len(model.outputs) == 6
