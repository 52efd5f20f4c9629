"""The hostile-input campaign (issue 14), kept as tests.

Bad or hostile inputs to ``restore``, ``eval``, ``convert``, ``export``, ``train``, the
serving signatures and the Python API. Each case asserts what the user sees and what is
left on disk:

* the exit status;
* one clear stderr line naming the problem, and no traceback;
* nothing written or left behind (folder listings before and after, including a
  per-test ``$TMPDIR``);
* the good files of the same batch still processed.

Cases that need a training or export subprocess are marked ``slow``.
"""

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

import keras
import numpy as np
import pytest
from conftest import FIXTURES, REPO
from PIL import Image
from test_cli_restore import ToyRestorer
from test_train import MODEL as TRAIN_MODEL
from test_train import hooked_train_cmd, make_photos

from maxim_tf.cli import main

CKPT = FIXTURES / "official" / "tiny2s" / "checkpoint.npz"
CASE = FIXTURES / "official" / "tiny2s" / "case_real_32x96_b1.npz"
TINY1S = FIXTURES / "official" / "tiny1s_single_scale" / "checkpoint.npz"


# ---------------------------------------------------------------- harness

@pytest.fixture(autouse=True)
def own_tmpdir(tmp_path, monkeypatch):
    """A fresh, watched $TMPDIR per test: it must be empty again at the end."""
    tmpdir = tmp_path / "TMPDIR"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    yield tmpdir
    # AutoGraph's generated sources belong to this (test) process and go when it exits;
    # the subprocess cases check $TMPDIR after their process has ended, with no exception.
    left = sorted(p.name for p in tmpdir.iterdir()
                  if not p.name.startswith("__autograph_generated_file"))
    assert not left, f"left behind in $TMPDIR: {left}"


def listing(*folders):
    """Every path under ``folders``, files with (size, mtime): compare before/after."""
    out = {}
    for folder in folders:
        folder = pathlib.Path(folder)
        out[str(folder)] = folder.exists()
        if folder.is_dir():
            for p in folder.rglob("*"):
                st = p.stat()
                out[str(p)] = "dir" if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def cli(capsys, *argv):
    """Run ``maxim-tf`` in-process; returns (exit status, stdout, stderr), never a traceback."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err[-3000:]
    return rc, out, err


def one_line(text, *needles):
    """The single line of ``text`` holding all ``needles`` (asserts there is exactly one)."""
    lines = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert len(lines) == 1, f"expected one line with {needles}, got {lines}\n{text[-3000:]}"
    return lines[0]


def save_png(path, shape=(20, 30, 3), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def toy_keras(tmp_path_factory):
    """A per-pixel toy restorer (size multiple 32) as a .keras file."""
    model = ToyRestorer()
    model.get_layer("mix").set_weights([0.9 * np.eye(3, dtype=np.float32)[None, None],
                                        np.full(3, 0.05, np.float32)])
    path = tmp_path_factory.mktemp("toy") / "toy.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, toy_keras):
    """Model files that must each be refused with one line: name -> path."""
    d = tmp_path_factory.mktemp("bad_models")
    good = toy_keras.read_bytes()
    (d / "text.keras").write_text("this is not a model\n")
    (d / "truncated.keras").write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(d / "no_config.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    lam.save(d / "lambda.keras")
    # A config naming os.system as a function: safe mode must never resolve it.
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dense.save(d / "dense.keras")
    with zipfile.ZipFile(d / "dense.keras") as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    cfg["config"]["layers"][-1]["config"]["activation"] = {
        "module": "os", "class_name": "function", "config": "system",
        "registered_name": "function"}
    files["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(d / "os_system.keras", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    (d / "dense.keras").unlink()
    return {p.stem: p for p in sorted(d.iterdir())}


BAD_MODEL_PROBLEMS = {
    "text": "not a Keras model archive",
    "truncated": "not a Keras model archive",
    "no_config": "without config.json",
    "lambda": "Lambda layer",
    "os_system": "cannot load the model",
}


# ---------------------------------------------------------------- 1. same in/out folder

def test_same_folder_in_and_out_never_overwrites_another_input(tmp_path, toy_keras, capsys):
    same, other = tmp_path / "same", tmp_path / "other"
    same.mkdir()
    other.mkdir()
    save_png(same / "c.png", seed=1)
    Image.open(save_png(tmp_path / "c_src.png", seed=2)).save(same / "c.gif")
    Image.open(save_png(tmp_path / "d_src.png", seed=3)).save(same / "d.jpeg")
    Image.open(save_png(tmp_path / "d2.png", seed=4)).save(same / "d.jpg")
    Image.open(save_png(tmp_path / "x_src.png", seed=5)).save(same / "x.tiff")
    Image.open(save_png(tmp_path / "x2.png", seed=6)).save(same / "x.tif")
    good = save_png(other / "good.png", seed=7)
    before = {p.name: p.read_bytes() for p in same.iterdir()}
    rc, out, err = cli(capsys, "restore", same, good, "-o", same, "--model", toy_keras, "-q")
    assert rc == 1
    assert {p.name: p.read_bytes() for p in same.iterdir() if p.name != "good.png"} == before
    one_line(err, "c.gif", "would overwrite the input file", "c.png")
    one_line(err, "d.jpeg", "would overwrite the input file", "d.jpg")
    one_line(err, "x.tiff", "would overwrite the input file", "x.tif")
    for name in ("c.png", "d.jpg", "x.tif"):
        one_line(err, f"{same / name}:", "the input file itself")
    assert (same / "good.png").is_file()  # the good file of the batch is restored
    assert "Restored 1 image(s)" in out


def test_format_png_into_the_input_folder_never_overwrites_inputs(tmp_path, toy_keras, capsys):
    d = tmp_path / "in"
    d.mkdir()
    save_png(d / "a.png", seed=1)
    Image.open(save_png(tmp_path / "a_src.png", seed=2)).convert("RGB").save(d / "a.jpg")
    save_png(d / "b.bmp", seed=3)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    rc, out, err = cli(capsys, "restore", d, "-o", d, "--image-format", "png", "--model", toy_keras,
                       "-q")
    assert rc == 1
    assert {n: (d / n).read_bytes() for n in before} == before
    one_line(err, "a.jpg", "would overwrite the input file")
    assert (d / "b.png").is_file() and "Restored 1 image(s)" in out


# ---------------------------------------------------------------- 2. existing outputs

def test_existing_outputs_are_skipped_and_counted_unless_overwrite(tmp_path, toy_keras, capsys):
    src, out_dir = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out_dir.mkdir()
    save_png(src / "a.png", seed=1)
    save_png(src / "b.png", seed=2)
    (out_dir / "a.png").write_bytes(b"precious")
    rc, out, err = cli(capsys, "restore", src, "-o", out_dir, "--model", toy_keras, "-q")
    assert rc == 0
    assert (out_dir / "a.png").read_bytes() == b"precious"
    assert (out_dir / "b.png").is_file()
    one_line(out, "Skipped 1 image(s)", "--overwrite")
    rc, out, _ = cli(capsys, "restore", src, "-o", out_dir, "--model", toy_keras, "-q",
                     "--overwrite")
    assert rc == 0 and "Skipped" not in out
    assert Image.open(out_dir / "a.png").size == (30, 20)


# ---------------------------------------------------------------- 7. non-finite weights

def test_restore_fails_files_whose_model_output_is_not_finite(tmp_path, capsys):
    model = ToyRestorer()
    model.get_layer("mix").set_weights([np.full((1, 1, 3, 3), np.nan, np.float32),
                                        np.zeros(3, np.float32)])
    path = tmp_path / "nan.keras"
    model.save(path)
    src, out_dir = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    save_png(src / "a.png")
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "restore", src, "-o", out_dir, "--model", path, "-q")
    assert rc == 1
    one_line(err, "a.png", "model output is not finite")
    assert listing(tmp_path) == before  # no image, and no empty output folder


def test_convert_refuses_non_finite_tensors_listing_them(tmp_path, capsys):
    with np.load(CKPT, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    bad_key = "opt/target/stage_0_input_conv_0/kernel"
    arrays[bad_key] = np.full_like(arrays[bad_key], np.nan)
    arrays["opt/target/stage_0_input_conv_0/bias"][0] = np.inf
    ckpt = tmp_path / "nan.npz"
    np.savez(ckpt, **arrays)
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", ckpt, "-o", tmp_path / "m.keras")
    assert rc == 2
    line = one_line(err, "2 tensor(s) hold NaN or Inf")
    assert "stage_0_input_conv_0/kernel" in line and "stage_0_input_conv_0/bias" in line
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- 8. bad model files

@pytest.mark.parametrize("kind", sorted(BAD_MODEL_PROBLEMS))
def test_restore_and_eval_refuse_bad_model_files_in_one_line(kind, bad_models, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    save_png(src / "a.png")
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "restore", src, "-o", tmp_path / "out", "--model", bad_models[kind])
    assert rc == 2
    one_line(err, str(bad_models[kind]), BAD_MODEL_PROBLEMS[kind])
    rc, _, err = cli(capsys, "eval", "--input-dir", src, "--target-dir", src, "--model",
                     bad_models[kind], "--save-dir", tmp_path / "saved")
    assert rc == 2
    one_line(err, str(bad_models[kind]), BAD_MODEL_PROBLEMS[kind])
    assert listing(tmp_path) == before  # neither output folder is left behind


@pytest.mark.parametrize("kind", sorted(BAD_MODEL_PROBLEMS))
def test_export_refuses_bad_model_files_in_one_line(kind, bad_models, tmp_path, capsys):
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "export", bad_models[kind], "--to", "tflite",
                     "-o", tmp_path / "out" / "m.tflite")
    assert rc == 2
    one_line(err, str(bad_models[kind]), BAD_MODEL_PROBLEMS[kind])
    assert listing(tmp_path) == before


def _train_config(tmp_path, **overrides):
    """A tiny synthetic-data training config that changes no process-wide TF setting."""
    config = {
        "variant": None, "model": TRAIN_MODEL,
        "data": {"source": "synthetic", "folder": str(make_photos(tmp_path / "photos", 2)),
                 "degradations": [{"type": "gaussian_noise", "sigma": [10, 30]}]},
        "crop_size": 16, "global_batch_size": 2, "steps": 2, "eval_every": 0,
    }
    config.update(overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("kind", sorted(BAD_MODEL_PROBLEMS))
def test_train_init_from_bad_model_files_in_one_line(kind, bad_models, tmp_path, capsys):
    config = _train_config(tmp_path, init_from=str(bad_models[kind]), model={})
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "train", "--config", config, "--model-dir", tmp_path / "run",
                     "--quiet")
    assert rc == 2
    one_line(err, "init_from", str(bad_models[kind]), BAD_MODEL_PROBLEMS[kind])
    assert listing(tmp_path) == before  # no empty model_dir


def test_payload_models_never_run_their_code(bad_models, tmp_path, monkeypatch):
    from maxim_tf.errors import ModelFileError
    from maxim_tf.modelfile import load_keras_model

    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    for kind in ("lambda", "os_system"):
        with pytest.raises(ModelFileError):
            load_keras_model(bad_models[kind])
    assert calls == []


# ---------------------------------------------------------------- 9. converter

def test_convert_output_that_is_a_directory_is_refused_up_front(tmp_path, capsys):
    (tmp_path / "out.keras").mkdir()
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", CKPT, "-o", tmp_path / "out.keras")
    assert rc == 2
    one_line(err, "out.keras", "is a directory")
    assert listing(tmp_path) == before


def test_convert_scalar_where_a_kernel_belongs(tmp_path, capsys):
    with np.load(CKPT, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["opt/target/stage_0_input_conv_0/kernel"] = np.float32(1.0)
    ckpt = tmp_path / "scalar.npz"
    np.savez(ckpt, **arrays)
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", ckpt, "-o", tmp_path / "m.keras")
    assert rc == 2
    one_line(err, "stage_0_input_conv_0/kernel", "has shape ()")
    assert listing(tmp_path) == before


def test_convert_config_that_is_a_json_list(tmp_path, capsys):
    (tmp_path / "cfg.json").write_text("[1, 2, 3]")
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", CKPT, "-o", tmp_path / "m.keras", "--model-config",
                     tmp_path / "cfg.json")
    assert rc == 2
    one_line(err, "cfg.json", "must be a JSON object")
    assert listing(tmp_path) == before


def test_convert_missing_reference_is_refused_before_converting(tmp_path, capsys, monkeypatch):
    import maxim_tf.conversion.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_official_params",
                        lambda *a: pytest.fail("the checkpoint was read before the checks"))
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", CKPT, "-o", tmp_path / "m.keras", "--reference",
                     tmp_path / "missing_case.npz")
    assert rc == 2
    one_line(err, "missing_case.npz", "no such reference file")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("kind", ["pickled", "foreign_member", "text", "truncated"])
def test_convert_refuses_unsafe_or_broken_checkpoints(kind, tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    if kind == "pickled":
        np.savez(ckpt, **{"opt/target/x": np.array([{"a": 1}], dtype=object)})
        needle = "pickled Python object"
    elif kind == "foreign_member":
        with zipfile.ZipFile(ckpt, "w") as z:
            z.writestr("payload.py", "import os; os.system('true')")
        needle = "not a .npy array"
    elif kind == "text":
        ckpt.write_text("not a checkpoint")
        needle = "not an .npz checkpoint"
    else:
        ckpt.write_bytes(CKPT.read_bytes()[:5000])
        needle = "not an .npz checkpoint"
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", ckpt, "-o", tmp_path / "m.keras")
    assert rc == 2
    one_line(err, "c.npz", needle)
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- already handled: images

def test_broken_and_bomb_images_fail_alone_in_a_batch(tmp_path, toy_keras, capsys):
    src, out_dir = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    good = save_png(src / "good.png").read_bytes()
    (src / "empty.png").write_bytes(b"")
    (src / "truncated.png").write_bytes(good[: len(good) // 3])
    (src / "text.jpg").write_text("not an image\n")
    bomb = bytearray(good)
    bomb[16:24] = (30000).to_bytes(4, "big") * 2  # the header claims 30000 x 30000
    bomb[29:33] = (zlib.crc32(bytes(bomb[12:29])) & 0xFFFFFFFF).to_bytes(4, "big")
    (src / "bomb.png").write_bytes(bytes(bomb))
    rc, out, err = cli(capsys, "restore", src, "-o", out_dir, "--model", toy_keras, "-q")
    assert rc == 1
    for name, problem in [("empty.png", "empty"), ("truncated.png", "truncated"),
                          ("text.jpg", "not a recognised image"), ("bomb.png", "megapixels")]:
        one_line(err, name, problem)
    assert sorted(p.name for p in out_dir.iterdir()) == ["good.png"]  # no temporaries
    assert "Restored 1 image(s)" in out


# ---------------------------------------------------------------- 12. frames and pages

def test_multi_frame_gif_and_multi_page_tiff_warn(tmp_path, toy_keras, capsys):
    src, out_dir = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 120, 240)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:2])
    save_png(src / "plain.png")
    rc, out, err = cli(capsys, "restore", src, "-o", out_dir, "--model", toy_keras, "-q")
    assert rc == 0
    one_line(err, "anim.gif", "3 frames/pages; only the first is restored")
    one_line(err, "pages.tif", "2 frames/pages; only the first is restored")
    assert "plain.png" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["anim.png", "pages.tif", "plain.png"]


# ---------------------------------------------------------------- 13. Python API

def test_api_honours_float_dtypes_and_nested_lists(toy_keras):
    from maxim_tf import Restorer

    restorer = Restorer(toy_keras)
    image = np.random.default_rng(0).random((20, 30, 3))
    reference = restorer(image.astype(np.float32))
    for dtype in (np.float16, np.float64):
        out = restorer(image.astype(dtype))
        assert out.dtype == dtype and out.shape == image.shape
        np.testing.assert_allclose(out, reference, atol=2e-3)
    nested = restorer(image.tolist())
    assert isinstance(nested, np.ndarray) and nested.shape == image.shape
    np.testing.assert_allclose(nested, reference, atol=1e-6)
    batch = restorer([image.astype(np.float32), image[:10].astype(np.float32)])
    assert isinstance(batch, list) and batch[1].shape == (10, 30, 3)  # a list of images
    with pytest.raises(TypeError, match="ambiguous"):
        restorer((image * 255).astype(np.uint8).tolist())
    with pytest.raises(TypeError, match="Nested lists must hold numbers"):
        restorer([[0.1, 0.2], [0.3]])


def test_maxim_refuses_unknown_keyword_arguments():
    import maxim_tf

    with pytest.raises(TypeError, match="'featurs'"):
        maxim_tf.MAXIM(featurs=16)


# ---------------------------------------------------------------- 3, 4, 10. training

def _train(capsys, config, model_dir, *extra):
    return cli(capsys, "train", "--config", config, "--model-dir", model_dir, "--quiet",
               *extra)


def test_train_on_tiff_named_png_is_a_data_error_not_a_hang(tmp_path, capsys):
    photos = tmp_path / "photos_tiff"
    photos.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photos / "only.png", format="TIFF")
    config = _train_config(tmp_path, data={"source": "synthetic", "folder": str(photos),
                                           "degradations": [{"type": "quantize"}]})
    before = listing(tmp_path)
    start = time.monotonic()
    rc, _, err = _train(capsys, config, tmp_path / "run")
    assert rc == 2 and time.monotonic() - start < 120
    one_line(err, "could not be decoded by the training pipeline's decoder")
    assert listing(tmp_path) == before


def test_train_on_thumbnails_smaller_than_the_crop_is_a_data_error(tmp_path, capsys):
    photos = make_photos(tmp_path / "thumbs", 3, (4, 4))
    config = _train_config(tmp_path, crop_size=32,
                           data={"source": "synthetic", "folder": str(photos),
                                 "degradations": [{"type": "quantize"}]})
    before = listing(tmp_path)
    rc, _, err = _train(capsys, config, tmp_path / "run")
    assert rc == 2
    one_line(err, "3 are smaller than 9x9, too small for crop_size=32")
    assert listing(tmp_path) == before


def test_pipeline_stops_after_too_many_failed_examples_in_a_row(tmp_path):
    import tensorflow as tf

    from maxim_tf.training import data as D

    photos = make_photos(tmp_path / "photos", 3, (24, 24))
    source = D.synthetic_source(photos, [{"type": "quantize"}], crop_size=16)
    for p in photos.iterdir():  # every file breaks after the pre-scan
        p.write_bytes(b"gone")
    ds = D.train_dataset(source, global_batch_size=2, crop_size=16, seed=0)
    start = time.monotonic()
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        next(iter(ds))
    assert D.is_drop_limit_error(e.value) and time.monotonic() - start < 120


@pytest.mark.parametrize("case,needle", [
    ("model_key", "'model.featurs'"),
    ("degradation_type", "unknown type 'gausian_noise'"),
    ("degradation_key", "unknown keys ['sigm']"),
    ("learning_rate", "optimizer.learning_rate must be a number. Received: "
                      "optimizer.learning_rate='1e-3x'"),
])
def test_train_config_typos_are_one_line_errors(case, needle, tmp_path, capsys):
    extra = []
    if case == "model_key":
        config = _train_config(tmp_path, model=dict(TRAIN_MODEL, featurs=16))
    elif case == "degradation_type":
        config = _train_config(tmp_path, data={
            "source": "synthetic", "folder": str(make_photos(tmp_path / "p", 1)),
            "degradations": [{"type": "gausian_noise", "sigma": 10}]})
    elif case == "degradation_key":
        config = _train_config(tmp_path, data={
            "source": "synthetic", "folder": str(make_photos(tmp_path / "p", 1)),
            "degradations": [{"type": "gaussian_noise", "sigm": 10}]})
    else:
        config = _train_config(tmp_path)
        extra = ["--set", "optimizer.learning_rate=1e-3x"]
    before = listing(tmp_path)
    rc, _, err = _train(capsys, config, tmp_path / "run", *extra)
    assert rc == 2
    one_line(err, needle)
    assert listing(tmp_path) == before


def test_train_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    config = _train_config(tmp_path)
    before = listing(tmp_path)
    rc, _, err = _train(capsys, config, tmp_path / "mistyped_run", "--resume")
    assert rc == 2
    one_line(err, "--resume: no checkpoint in", "mistyped_run")
    assert listing(tmp_path) == before


def test_train_log_is_trimmed_to_the_checkpoint_on_resume(tmp_path):
    from maxim_tf.training.trainer import trim_log

    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6))
                   + '{"step": 6, "lo')  # killed mid-write
    assert trim_log(log, 3) == 3
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]
    assert trim_log(log, 3) == 0


# ---------------------------------------------------------------- 5, 6. serving limits

@pytest.fixture(scope="module")
def toy_serving(tmp_path_factory):
    """The toy model as a SavedModel (64 x 64 pixels per image and per request), in a TF1
    session as TF Serving runs it."""
    from maxim_tf.export import savedmodel as sm

    model = ToyRestorer()
    path = sm.export_savedmodel(model, tmp_path_factory.mktemp("serving"), name="toy",
                                max_pixels=64 * 64, warmup=False)
    with sm.TF1SessionRunner(path) as runner:
        yield runner


def _png_bytes(h, w):
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_serving_bytes_refuses_a_bomb_from_its_header_before_decoding(toy_serving):
    import tensorflow as tf

    bomb = bytearray(_png_bytes(16, 16))
    bomb[16:24] = (10000).to_bytes(4, "big") * 2  # IHDR claims 10000 x 10000; CRC now wrong
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="Image too large: 10000x10000 = 100000000 pixels"):
        toy_serving.run({"image_bytes": np.array([bytes(bomb)], dtype=object)}, "serving_bytes")
    ok = toy_serving.run({"image_bytes": np.array([_png_bytes(40, 50)], dtype=object)},
                         "serving_bytes")["output_bytes"]
    assert Image.open(io.BytesIO(ok[0])).size == (50, 40)


def test_serving_bounds_pixels_per_request_not_only_per_image(toy_serving):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="Request too large: 5 image"):
        toy_serving.run({"images": np.zeros((5, 32, 32, 3), np.float32)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="Request too large: 5 image"):
        toy_serving.run({"image_bytes": np.array([_png_bytes(32, 32)] * 5, dtype=object)},
                        "serving_bytes")
    out = toy_serving.run({"images": np.zeros((4, 32, 32, 3), np.float32)})["restored"]
    assert out.shape == (4, 32, 32, 3)  # exactly the limit


# ---------------------------------------------------------------- 11. signals (subprocesses)

# What `maxim-tf` does on SIGTERM (maxim_tf.errors.Terminated raised in the main thread so
# clean-up runs, exit 143), installed here so the test does not depend on the CLI's copy.
_SIGTERM_WRAPPER = """
import signal, sys
from maxim_tf import errors
def _raise(signum, frame):
    raise errors.Terminated()
signal.signal(signal.SIGTERM, _raise)
from maxim_tf.cli import main
try:
    sys.exit(main(sys.argv[1:]))
except errors.Terminated:
    print("maxim-tf: terminated", file=sys.stderr)
    sys.exit(errors.EXIT_TERMINATED)
"""


def _env(tmpdir):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), TMPDIR=str(tmpdir))


@pytest.mark.slow
def test_sigterm_during_tflite_export_leaves_no_temporaries(tmp_path, own_tmpdir):
    from maxim_tf.conversion import convert_checkpoint

    keras_file = tmp_path / "tiny1s.keras"
    convert_checkpoint(TINY1S, keras_file)
    out_dir = tmp_path / "exported"
    before = listing(tmp_path)
    err_path = tmp_path.parent / f"{tmp_path.name}_export.err"  # outside the watched folders
    with open(err_path, "w") as err:
        p = subprocess.Popen([sys.executable, "-c", _SIGTERM_WRAPPER, "export", str(keras_file),
                              "--to", "tflite", "-o", str(out_dir / "m.tflite")],
                             cwd=REPO, env=_env(own_tmpdir), stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not list(out_dir.glob(".maxim_tflite_*")):
        time.sleep(0.05)
    assert p.poll() is None, err_path.read_text()[-3000:]
    time.sleep(1.0)  # inside the export
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=300) == 143, err_path.read_text()[-3000:]
    assert "Traceback" not in err_path.read_text()
    assert listing(tmp_path) == before  # no temporary SavedModel, no empty output folder


@pytest.mark.slow
def test_kill_9_and_resume_keep_the_training_log_consistent(tmp_path):
    config = _train_config(tmp_path, steps=8, checkpoint_every=3, log_every=1)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "maxim_tf", "train", "--config", str(config), "--model-dir",
           str(run_dir), "--quiet"]
    slow = hooked_train_cmd(config, run_dir, step_delay=0.4)  # slowed so the kill lands mid-run
    with open(tmp_path.parent / f"{tmp_path.name}_train.err", "w") as err:
        p = subprocess.Popen(slow, cwd=REPO, env=_env(tempfile.gettempdir()),
                             stdout=subprocess.DEVNULL, stderr=err)
    log = run_dir / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert max(logged) >= 4  # steps 4.. were logged after the checkpoint of step 3
    resumed = subprocess.run(cmd + ["--resume"], cwd=REPO, env=_env(tempfile.gettempdir()),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 9))  # each step once, in order


# --- second campaign (issue 35): paths, flags, errors ---
#
# Cases of the second hostile-input campaign (issue 35, causes 1 and 4-10, and the
# malformed globs of restore-beam). Each asserts the exit status, one stderr line naming
# the problem, no traceback, and what is on disk before and after.

# ---------------------------------------------------------------- 35.1 preset names as paths

def _hostile_presets(tmp_path, monkeypatch, *names):
    """A victim folder beside the cache, a user presets file with ``names``, the cache at
    ``<tmp>/a/b``: returns (presets file, cache, victim file)."""
    victim = tmp_path / "a" / "x" / "user.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("the user's own file\n")
    (tmp_path / "a" / "victim").mkdir()
    (tmp_path / "a" / "victim" / "keep.txt").write_text("keep\n")
    cache = tmp_path / "a" / "b"
    (cache / "presets").mkdir(parents=True)
    presets_file = tmp_path / "presets.json"
    presets_file.write_text(json.dumps({n: {"task": "Denoising", "dataset": "d",
                                            "variant": "S-1", "path": "x.npz"} for n in names}))
    monkeypatch.setenv("MAXIM_TF_PRESETS", str(presets_file))
    monkeypatch.setenv("MAXIM_TF_HOME", str(cache))
    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", str(tmp_path / "mirror"))
    return presets_file, cache, victim


@pytest.mark.parametrize("name,argv", [
    ("../../x", ["--clear", "../../x"]),
    ("../../victim", ["--clear", "all"]),
    ("../../x", ["--download", "../../x"]),
    ("..", ["--clear", "all"]),
    ("a/b", ["--clear", "all"]),
    ("a\\b", ["--clear", "all"]),
    ("", ["--clear", "all"]),
    ("all", ["--download", "all"]),
    ("bad name;rm", ["--clear", "all"]),
])
def test_preset_names_that_are_paths_are_refused_when_the_file_is_read(
        name, argv, tmp_path, monkeypatch, capsys):
    presets_file, cache, victim = _hostile_presets(tmp_path, monkeypatch, name)
    before = listing(tmp_path)  # the cache, its parent (the victim's folder) and above
    start = time.monotonic()
    rc, out, err = cli(capsys, "models", *argv)
    assert rc == 2 and time.monotonic() - start < 30
    line = one_line(err, str(presets_file), f"preset name {name!r} refused")
    assert "MAXIM_TF_PRESETS" in line
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert victim.read_text() == "the user's own file\n"
    assert listing(tmp_path) == before


def test_the_cache_refuses_paths_outside_it_from_the_python_api(tmp_path, monkeypatch):
    from maxim_tf import hub, presets
    from maxim_tf.errors import UsageError

    _, cache, victim = _hostile_presets(tmp_path, monkeypatch, "fine")
    # A planted symbolic link inside the cache that points outside it.
    (cache / "presets" / "linked").symlink_to(victim.parent, target_is_directory=True)
    before = listing(tmp_path)
    hostile = presets.Preset(name="../../x", task="Denoising", dataset="d", variant="S-1",
                             path="x.npz")
    for call in (lambda: hub.clear("../../x"), lambda: hub.clear("linked"),
                 lambda: hub.fetch_preset(hostile, progress=False),
                 lambda: hub.entry_dir("../x")):
        with pytest.raises(UsageError) as e:
            call()
        assert "\n" not in str(e.value)
        assert "outside the model cache" in str(e.value) or "refused" in str(e.value)
    assert victim.exists() and listing(tmp_path) == before
    assert hub.clear("fine") is False  # a valid name, not cached: nothing to do
    # A link to another entry of the cache: clearing removes the link, not its target.
    (cache / "presets" / "target").mkdir()
    (cache / "presets" / "target" / "model.keras").write_bytes(b"m")
    (cache / "presets" / "alias").symlink_to(cache / "presets" / "target")
    assert hub.clear("alias") is True
    assert (cache / "presets" / "target" / "model.keras").exists()
    assert not (cache / "presets" / "alias").is_symlink()


# ---------------------------------------------------------------- 35.4 existing outputs

def _no_work(monkeypatch):
    """Make any conversion, model resolution or export fail the test: a refusal must come
    before any work."""
    import maxim_tf.conversion.checkpoint as checkpoint
    from maxim_tf import hub

    monkeypatch.setattr(checkpoint, "load_official_params",
                        lambda *a: pytest.fail("the checkpoint was read before the checks"))
    monkeypatch.setattr(hub, "resolve_model",
                        lambda *a, **k: pytest.fail("the model was resolved before the checks"))


def test_convert_refuses_an_existing_output_without_overwrite(tmp_path, capsys, monkeypatch):
    out = tmp_path / "exists.keras"
    out.write_bytes(b"the user's model")
    before = listing(tmp_path)
    with monkeypatch.context() as m:
        _no_work(m)
        rc, stdout, err = cli(capsys, "convert", CKPT, "-o", out)
    assert rc == 2 and stdout == ""
    one_line(err, "exists.keras", "already exists", "--overwrite")
    assert listing(tmp_path) == before and out.read_bytes() == b"the user's model"
    rc, _, err = cli(capsys, "convert", CKPT, "-o", out, "--overwrite", "-q")
    assert rc == 0, err
    assert zipfile.is_zipfile(out)


@pytest.mark.parametrize("kind,name", [("tflite", "exists.tflite"), ("onnx", "exists.onnx"),
                                       ("savedmodel", "serving")])
def test_export_refuses_an_existing_output_without_overwrite(kind, name, toy_keras, tmp_path,
                                                             capsys, monkeypatch):
    out = tmp_path / name
    extra = []
    if kind == "savedmodel":
        (out / "toy" / "7").mkdir(parents=True)
        (out / "toy" / "7" / "saved_model.pb").write_bytes(b"version 7")
        extra = ["--model-name", "toy", "--model-version", "7"]
        needle = str(out / "toy" / "7")
    else:
        out.write_bytes(b"the user's artifact")
        needle = name
    before = listing(tmp_path)
    _no_work(monkeypatch)
    start = time.monotonic()
    rc, stdout, err = cli(capsys, "export", toy_keras, "--to", kind, "-o", out, *extra)
    assert rc == 2 and stdout == "" and time.monotonic() - start < 10
    one_line(err, needle, "already exists", "--overwrite")
    assert len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == before


def test_export_model_refuses_an_existing_file_in_python_too(toy_keras, tmp_path, monkeypatch):
    from maxim_tf.export import export_model

    out = tmp_path / "exists.tflite"
    out.write_bytes(b"keep")
    _no_work(monkeypatch)
    monkeypatch.setattr("maxim_tf.hub.load_model",
                        lambda *a, **k: pytest.fail("the model was loaded before the checks"))
    with pytest.raises(FileExistsError, match="already exists"):
        export_model(toy_keras, out, "tflite")
    assert out.read_bytes() == b"keep"


# ---------------------------------------------------------------- 35.5 nonsense values

@pytest.mark.parametrize("argv,needle", [
    (["--jpeg-quality", "0"], "argument --jpeg-quality: must be an integer from 1 to 100, got '0'"),
    (["--jpeg-quality", "1000"], "must be an integer from 1 to 100, got '1000'"),
    (["--jpeg-quality", "high"], "argument --jpeg-quality: expected an integer from 1 to 100"),
    (["--max-pixels", "-1"], "argument --max-pixels: must be a number > 0, got '-1'"),
    (["--max-pixels", "nan"], "argument --max-pixels: must be a number > 0, got 'nan'"),
    (["--tile-batch", "0"], "argument --tile-batch: must be an integer >= 1, got '0'"),
    (["--tile", "-512"], "argument --tile: must be an integer >= 0, got '-512'"),
    (["--overlap", "-1"], "argument --overlap: must be an integer >= 0, got '-1'"),
])
def test_restore_nonsense_values_are_usage_errors_before_any_work(argv, needle, tmp_path, capsys,
                                                                  monkeypatch):
    import maxim_tf.restore as restore_lib

    monkeypatch.setattr(restore_lib, "Restorer",
                        lambda *a, **k: pytest.fail("a model was loaded before the checks"))
    save_png(tmp_path / "a.png")
    before = listing(tmp_path)
    rc, stdout, err = cli(capsys, "restore", tmp_path / "a.png", "-o", tmp_path / "out", *argv)
    assert rc == 2 and stdout == ""
    one_line(err, needle)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("argv,needle", [
    (["benchmark", "--repeats", "0"], "argument --repeats: must be an integer >= 1, got '0'"),
    (["benchmark", "--sizes", "256", "-5"], "argument --sizes: must be an integer >= 1, got '-5'"),
    (["benchmark", "--measure", "quality", "--center-crop", "-1"],
     "argument --center-crop: must be an integer >= 0, got '-1'"),
    (["train", "--config", "c.json", "--cpu-replicas", "0"],
     "argument --cpu-replicas: must be an integer >= 1, got '0'"),
    (["eval", "--input-dir", "i", "--target-dir", "t", "--crop-border", "-2"],
     "argument --crop-border: must be an integer >= 0, got '-2'"),
])
def test_other_nonsense_values_are_usage_errors_before_any_work(argv, needle, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    start = time.monotonic()
    rc, stdout, err = cli(capsys, *argv)
    assert rc == 2 and stdout == "" and time.monotonic() - start < 10
    one_line(err, needle)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "x"])
def test_convert_tolerance_is_checked_before_converting(value, tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    before = listing(tmp_path)
    rc, _, err = cli(capsys, "convert", CKPT, "-o", tmp_path / "m.keras", "--reference", CASE,
                     f"--tolerance={value}")
    assert rc == 2
    one_line(err, "argument --tolerance:", repr(value))
    assert listing(tmp_path) == before


def test_convert_tolerance_is_checked_in_python_too(tmp_path, monkeypatch):
    from maxim_tf.conversion import ConversionError, convert_checkpoint

    _no_work(monkeypatch)
    with pytest.raises(ConversionError, match="tolerance must be a finite number >= 0"):
        convert_checkpoint(CKPT, tmp_path / "m.keras", reference=CASE, tolerance=-1)
    assert list(tmp_path.iterdir()) == [tmp_path / "TMPDIR"]


def test_convert_reference_mismatch_is_a_failed_check_exit_3(tmp_path, capsys):
    with np.load(CASE, allow_pickle=False) as z:
        case = {k: z[k] for k in z.files}
    for k in case:
        if k.startswith("stage"):
            case[k] = case[k] + 0.5  # outputs the converted model cannot match
    reference = tmp_path / "wrong_case.npz"
    np.savez(reference, **case)
    before = listing(tmp_path)
    rc, stdout, err = cli(capsys, "convert", CKPT, "-o", tmp_path / "m.keras", "--reference",
                          reference, "-q")
    assert rc == 3 and "Wrote" not in stdout
    one_line(err, "converted model differs from", "wrong_case.npz", "max abs error")
    assert listing(tmp_path) == before  # nothing written


# ---------------------------------------------------------------- 35.6 errors that name the problem

def _tiny_preset_env(tmp_path, monkeypatch, url):
    """A user preset of the tiny single-scale fixture, its checkpoint served at ``url``."""
    presets_file = tmp_path / "presets.json"
    config = json.loads((TINY1S.parent / "config.json").read_text())
    presets_file.write_text(json.dumps({"tiny": {
        "task": "Denoising", "dataset": "Tiny1s", "config": config,
        "path": "Denoising/Tiny1s/checkpoint.npz"}}))
    monkeypatch.setenv("MAXIM_TF_PRESETS", str(presets_file))
    monkeypatch.setenv("MAXIM_TF_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MAXIM_TF_OFFICIAL_URL", url)
    return tmp_path / "cache"


@pytest.mark.parametrize("variable,value,needle", [
    ("MAXIM_TF_DOWNLOAD_TIMEOUT", "abc", "is not valid: expected a number > 0"),
    ("MAXIM_TF_DOWNLOAD_TIMEOUT", "-5", "is out of range: expected a number > 0"),
    ("MAXIM_TF_DOWNLOAD_RETRIES", "2.5", "is not valid: expected an integer >= 0"),
    ("MAXIM_TF_DOWNLOAD_DEADLINE", "nan", "is out of range: expected a number > 0"),
])
def test_bad_numbers_in_the_environment_are_named(variable, value, needle, tmp_path, monkeypatch,
                                                  capsys):
    cache = _tiny_preset_env(tmp_path, monkeypatch, str(tmp_path / "mirror"))
    monkeypatch.setenv(variable, value)
    before = listing(tmp_path)
    rc, out, err = cli(capsys, "models", "--download", "tiny", "-q")
    assert rc == 2 and out == ""
    one_line(err, f"environment variable {variable}={value!r}", needle)
    assert len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == before and not cache.exists()


@pytest.mark.parametrize("kwargs,needle", [
    (dict(features="x"), "features must be an integer >= 1. Received: features='x'"),
    (dict(features=0), "features must be an integer >= 1. Received: features=0"),
    (dict(depth=2.5), "depth must be an integer >= 1. Received: depth=2.5"),
    (dict(num_groups=None), "num_groups must be an integer >= 1. Received: num_groups=None"),
    (dict(high_res_stages=-1), "high_res_stages must be an integer >= 0"),
    (dict(block_size_hr=(0, 0)), "block_size_hr must be a positive integer or a pair of "
                                 "positive integers (height, width). Received: "
                                 "block_size_hr=(0, 0)"),
    (dict(grid_size_lr=(8, 8, 8)), "grid_size_lr must be a positive integer or a pair"),
    (dict(block_size_lr="16"), "block_size_lr must be a positive integer or a pair"),
    (dict(use_bias="yes"), "use_bias must be True or False. Received: use_bias='yes'"),
    (dict(dropout_rate=1.5), "dropout_rate must be a finite number >= 0 and < 1"),
    (dict(lrelu_slope=float("nan")), "lrelu_slope must be a finite number >= 0"),
])
def test_maxim_constructor_names_the_bad_argument(kwargs, needle):
    import maxim_tf

    start = time.monotonic()
    with pytest.raises(ValueError) as e:
        maxim_tf.MAXIM(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - start < 5  # refused before any layer is built


def test_maxim_constructor_still_takes_ints_and_lists_for_pairs():
    import maxim_tf

    m = maxim_tf.MAXIM(features=8, depth=2, num_stages=1, num_groups=1, channels_reduction=2,
                       block_size_hr=4, grid_size_hr=[4, 4], block_size_lr=(2, 2),
                       grid_size_lr=np.int64(2), dropout_rate=0)
    assert m.maxim_config["block_size_hr"] == (4, 4) and m.maxim_config["grid_size_lr"] == (2, 2)


# ---------------------------------------------------------------- 35.9 total download deadline

class _DripServer:
    """127.0.0.1 only: announces a large checkpoint, then sends one byte every 0.1 s (at most
    200), the way a stalled proxy or a hostile mirror keeps a connection alive."""

    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                body = CKPT.read_bytes()
                try:
                    for i in range(200):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass  # the client gave up

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ckpt"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_dripping_server_is_cut_off_by_the_total_download_deadline(tmp_path, monkeypatch,
                                                                     capsys):
    server = _DripServer()
    try:
        cache = _tiny_preset_env(tmp_path, monkeypatch, server.url)
        monkeypatch.setenv("MAXIM_TF_DOWNLOAD_TIMEOUT", "5")  # each byte comes well within it
        monkeypatch.setenv("MAXIM_TF_DOWNLOAD_DEADLINE", "1.5")
        monkeypatch.setenv("MAXIM_TF_DOWNLOAD_RETRIES", "3")
        before = listing(tmp_path)
        start = time.monotonic()
        rc, out, err = cli(capsys, "models", "--download", "tiny", "-q")
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert rc == 2 and elapsed < 10, (rc, elapsed)
    line = one_line(err, "Cannot download tiny from", "not finished within 1.5 s",
                    "MAXIM_TF_DOWNLOAD_DEADLINE")
    assert "tries" not in line  # the deadline is final: no retry
    assert listing(tmp_path) == before and not cache.exists()


def test_download_errors_keep_their_cause_for_python_users(tmp_path, monkeypatch):
    from maxim_tf import hub
    from maxim_tf.errors import DownloadError

    server = _DripServer()
    try:
        with pytest.raises(DownloadError) as e:
            hub.download(server.url, tmp_path / "x.npz", progress=False, timeout=5, retries=0,
                         deadline=0.5)
    finally:
        server.close()
    assert "not finished within 0.5 s" in str(e.value)
    assert e.value.__cause__ is not None  # the underlying failure, for a debugger
    assert not (tmp_path / "x.npz").exists()


# ---------------------------------------------------------------- 35.7 damaged checkpoint on resume

@pytest.mark.parametrize("damage", ["garbage_index", "empty_data"])
def test_train_resume_from_a_damaged_checkpoint_names_it(damage, tmp_path, capsys):
    config = _train_config(tmp_path)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n'
                                         'all_model_checkpoint_paths: "ckpt-1"\n')
    if damage == "garbage_index":
        (ckpt_dir / "ckpt-1.index").write_bytes(b"garbage")
        (ckpt_dir / "ckpt-1.data-00000-of-00001").write_bytes(b"garbage")
    else:  # a real index whose data file was cut to nothing
        import tensorflow as tf

        tf.train.Checkpoint(v=tf.Variable([1.0, 2.0])).write(str(ckpt_dir / "ckpt-1"))
        (ckpt_dir / "ckpt-1.data-00000-of-00001").write_bytes(b"")
    before = listing(tmp_path)
    start = time.monotonic()
    rc, _, err = _train(capsys, config, tmp_path / "run", "--resume")
    assert rc == 2 and time.monotonic() - start < 120, err
    one_line(err, "--resume: cannot restore the checkpoint", str(ckpt_dir / "ckpt-1"),
             "ckpt-1.index")
    assert "unexpected" not in err
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- 35.8 restore-beam (beam extra)

def _beam():
    return pytest.importorskip("apache_beam",
                               reason="apache-beam is not installed (pip install 'maxim-tf[beam]')")


@pytest.mark.beam
def test_restore_beam_reports_each_failed_input_on_stderr(tmp_path, capsys, monkeypatch):
    _beam()
    # The DirectRunner leaves its own temporaries (beam-temp*, beam-requirements-cache) in
    # $TMPDIR: give it one outside the watched folder.
    beam_tmp = tmp_path.parent / f"{tmp_path.name}_beam_tmp"
    beam_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(beam_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    save_png(src / "good1.png")
    save_png(src / "good2.png", seed=1)
    good = (src / "good1.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "empty.png").write_bytes(b"")
    (src / "text.png").write_text("not an image\n")
    rc, stdout, err = cli(capsys, "restore-beam", str(src / "*.png"), "-o", out, "-q")
    assert rc == 1 and stdout == ""
    for name in ("truncated.png", "empty.png", "text.png"):
        one_line(err, str(src / name) + ":")
    one_line(err, "3 input(s) failed", str(out / "failed.jsonl"))
    assert len(err.strip().splitlines()) == 4, err
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == ["good1.png",
                                                                           "good2.png"]


@pytest.mark.beam
@pytest.mark.parametrize("pattern,needle", [
    ("nothing_here_*.png", "no files match the input glob"),
    ("missing_folder/**", "no files match the input glob"),
    ("in/[.png", "malformed glob"),
    ("in/[!.png", "malformed glob"),
    ("", "an empty input glob"),
])
def test_restore_beam_refuses_globs_that_match_nothing_or_are_malformed(pattern, needle, tmp_path,
                                                                        capsys, monkeypatch):
    _beam()
    (tmp_path / "in").mkdir()
    save_png(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    start = time.monotonic()
    rc, stdout, err = cli(capsys, "restore-beam", pattern, "-o", tmp_path / "out", "-q")
    assert rc == 2 and stdout == "" and time.monotonic() - start < 30
    line = one_line(err, needle)
    assert repr(pattern) in line or not pattern
    assert len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == before  # no output folder, no manifest


@pytest.mark.beam
def test_restore_beam_glob_with_a_closed_class_still_matches(tmp_path):
    _beam()
    from maxim_tf.tools import beam as mbeam

    save_png(tmp_path / "a1.png")
    assert mbeam.glob_problem(str(tmp_path / "a[0-9].png")) is None
    assert mbeam.glob_problem(str(tmp_path / "a[]].png")) is None
    assert mbeam.glob_problem(str(tmp_path / "a[[].png")) is None
    mbeam.check_patterns([str(tmp_path / "a[0-9].png")])  # matches a1.png: no error


# ---------------------------------------------------------------- 35.10 library errors keep their cause

# The only `raise ... from None` left in the library: argparse types (argparse prints only
# the message; the int()/float() error adds nothing).
_FROM_NONE_ALLOWED = {
    "maxim_tf/commands/_common.py": 2,
    "maxim_tf/commands/export.py": 1,
}


def test_library_errors_chain_their_cause_not_from_none():
    found = {}
    for folder in ("maxim_tf", "conversion", "export", "training"):
        for path in sorted((REPO / folder).rglob("*.py")):
            n = path.read_text(encoding="utf-8").count("from None")
            if n:
                found[str(path.relative_to(REPO))] = n
    assert found == _FROM_NONE_ALLOWED


def test_python_users_see_the_original_exception(bad_models, tmp_path):
    from maxim_tf.conversion import ConversionError, convert_checkpoint
    from maxim_tf.errors import ModelFileError
    from maxim_tf.image_io import ImageReadError, read_image
    from maxim_tf.modelfile import load_keras_model

    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "broken.json").write_text("{")
    cases = [
        (ModelFileError, lambda: load_keras_model(bad_models["lambda"])),
        (ImageReadError, lambda: read_image(tmp_path / "text.png")),
        (ConversionError, lambda: convert_checkpoint(CKPT, config=tmp_path / "broken.json")),
    ]
    for kind, call in cases:
        with pytest.raises(kind) as e:
            call()
        assert e.value.__cause__ is not None, (kind, e.value)
        assert "\n" not in str(e.value)  # the CLI still prints one line


# --- second campaign (issue 35): memory, signals, temporaries ---
#
# Causes 2, 3 and part of 11 of issue 35: the size the model works on (after padding) is
# what --max-pixels bounds; .keras zip bombs and oversized export shapes are refused
# before any work; converters run where a signal stops them; temporaries never outlive
# their process for long. Memory is measured as the peak RSS of a child process
# (resource.getrusage(RUSAGE_CHILDREN) in a wrapper whose only child is the command).

_MEASURED = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": p.returncode, "stdout": p.stdout.decode(errors="replace"),
               "stderr": p.stderr.decode(errors="replace"),
               "seconds": time.perf_counter() - start,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}, f)
"""


def measured(tmpdir, *argv, timeout=300):
    """Run ``maxim-tf argv`` in a child; returns its rc, stdout, stderr, seconds, peak_rss_mb."""
    report = pathlib.Path(tmpdir).parent / f"{pathlib.Path(tmpdir).name}_measured.json"
    subprocess.run([sys.executable, "-c", _MEASURED, str(report), sys.executable, "-m",
                    "maxim_tf", *map(str, argv)], cwd=REPO, env=_env(tmpdir), timeout=timeout,
                   check=True)
    result = json.loads(report.read_text())
    report.unlink()
    assert "Traceback" not in result["stderr"], result["stderr"][-3000:]
    return result


def test_restore_refuses_a_degenerate_strip_in_one_line_at_startup_memory(tmp_path,
                                                                           own_tmpdir):
    # 3 x 100 000 (0.3 MP) pads to 32 x 100 000 for the shipped model: 17 GB before.
    save_png(tmp_path / "long.png", shape=(3, 100_000, 3))
    before = listing(tmp_path)
    r = measured(own_tmpdir, "restore", tmp_path / "long.png", "-o", tmp_path / "out", "-q")
    assert r["rc"] == 1, r["stderr"]
    line = one_line(r["stderr"], "long.png", "3x100000 image pads to 32x100000", "--tile")
    assert "Failed" not in line
    assert r["peak_rss_mb"] < 1000, r  # the model never saw the strip (was 17 GB)
    assert listing(tmp_path) == before  # no output folder left


def test_restore_tiles_a_degenerate_strip_in_bounded_memory(tmp_path, own_tmpdir):
    save_png(tmp_path / "strip.png", shape=(3, 9000, 3))  # pads to 32 x 9024: refused untiled
    r = measured(own_tmpdir, "restore", tmp_path / "strip.png", "-o", tmp_path / "out", "-q")
    assert r["rc"] == 1 and "pads to 32x9024" in r["stderr"]
    r = measured(own_tmpdir, "restore", tmp_path / "strip.png", "-o", tmp_path / "out", "-q",
                 "--tile", 512)
    assert r["rc"] == 0, r["stderr"]
    assert Image.open(tmp_path / "out" / "strip.png").size == (9000, 3)
    assert r["peak_rss_mb"] < 2500, r  # tiles of 32 x 512, four per call


def test_max_pixels_counts_the_padded_working_size(tmp_path, toy_keras, capsys):
    # 40 x 40 = 1600 pixels, but the toy model (multiple 32) sees 64 x 64 = 4096.
    save_png(tmp_path / "a.png", shape=(40, 40, 3))
    rc, _, err = cli(capsys, "restore", tmp_path / "a.png", "-o", tmp_path / "out", "-q",
                     "--model", toy_keras, "--max-pixels", 2000)
    assert rc == 1
    one_line(err, "a.png", "64x64 after padding", "limit of 0.002 MP (--max-pixels)")
    rc, _, err = cli(capsys, "restore", tmp_path / "a.png", "-o", tmp_path / "out", "-q",
                     "--model", toy_keras, "--max-pixels", 5000)
    assert rc == 0, err


def test_restorer_api_bounds_the_work_after_padding(toy_keras):
    from maxim_tf.restore import Restorer, WorkingSizeError

    r = Restorer(toy_keras, max_pixels=3000)
    with pytest.raises(WorkingSizeError, match="64x64 after padding"):
        r(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(WorkingSizeError, match="2 image"):  # a batch is one model call
        Restorer(toy_keras, max_pixels=5000)(np.zeros((2, 64, 64, 3), np.uint8))
    strip = np.zeros((3, 40_000, 3), np.uint8)  # pads to 32 x 40 000 (1.3 MP, 11x)
    with pytest.raises(WorkingSizeError, match="pads to 32x40000"):
        Restorer(toy_keras)(strip)
    tiled = Restorer(toy_keras, tile=256, overlap=32)
    assert tiled.working_size((1, 3, 40_000, 3)) == (4, 32, 256, True)
    assert tiled(strip).shape == strip.shape
    assert Restorer(toy_keras, max_padding_factor=None)(strip).shape == strip.shape
    with pytest.raises(ValueError, match="max_pixels must be positive"):
        Restorer(toy_keras, max_pixels=-1)


def _zip_bomb(path, declared_config_mib=100):
    """A .keras whose config.json is a JSON object of ``declared_config_mib`` MiB of spaces."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", "{}")
        with z.open("config.json", "w", force_zip64=True) as f:
            f.write(b"{")
            for _ in range(declared_config_mib):
                f.write(b" " * (1 << 20))
            f.write(b"}")
    return path


def test_keras_zip_bomb_is_refused_before_inflating(tmp_path, own_tmpdir):
    bomb = _zip_bomb(tmp_path / "bomb.keras")
    assert bomb.stat().st_size < 1 << 20
    save_png(tmp_path / "a.png")
    before = listing(tmp_path)
    r = measured(own_tmpdir, "restore", tmp_path / "a.png", "-o", tmp_path / "out",
                 "--model", bomb)
    assert r["rc"] == 2, r["stderr"]
    one_line(r["stderr"], "bomb.keras", "config.json declares 100 MiB", "64 MiB")
    assert r["peak_rss_mb"] < 400, r  # refused before TensorFlow, nothing inflated
    r = measured(own_tmpdir, "export", bomb, "--to", "tflite", "-o", tmp_path / "m.tflite")
    assert r["rc"] == 2
    one_line(r["stderr"], "bomb.keras", "zip bomb")
    assert listing(tmp_path) == before


def test_keras_member_read_is_bounded_whatever_the_header_says(tmp_path):
    from maxim_tf.errors import ModelFileError
    from maxim_tf.modelfile import read_member

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", b" " * 5000)
    with zipfile.ZipFile(path) as z:
        assert len(read_member(path, z, "config.json", limit=5000, chunk=1000)) == 5000
        with pytest.raises(ModelFileError, match="inflates to more than"):
            read_member(path, z, "config.json", limit=4999, chunk=1000)


@pytest.mark.parametrize("argv,needle", [
    (["--input-size", "100000x100000"], "1x100000x100000 is too large"),
    (["--input-size", "4096x4097"], "is too large"),
    (["--input-size", "2048x2048", "--input-batch", "8"], "8x2048x2048 is too large"),
    (["--input-size", "64x64", "--input-batch", "0"], "--input-batch: must be a positive"),
    (["--input-batch", "-3"], "--input-batch: must be a positive"),
    (["--quantize", "int8", "--num-calibration-images", "0"], "--num-calibration-images"),
])
def test_export_refuses_oversized_or_empty_shapes_at_once(argv, needle, tmp_path, capsys):
    keras_file = REPO / "saved_models" / "denoise.keras"
    before = listing(tmp_path)
    start = time.perf_counter()
    rc, _, err = cli(capsys, "export", keras_file, "--to", "tflite", "-o",
                     tmp_path / "m.tflite", *argv)
    assert rc == 2
    one_line(err, "error", needle)
    assert time.perf_counter() - start < 10  # before the model is read or converted
    assert listing(tmp_path) == before


def test_export_huge_input_size_costs_no_memory(tmp_path, own_tmpdir):
    # Was 12 GB RSS and climbing, and deaf to SIGTERM.
    r = measured(own_tmpdir, "export", REPO / "saved_models" / "denoise.keras", "--to",
                 "tflite", "--input-size", "100000x100000", "-o", tmp_path / "m.tflite")
    assert r["rc"] == 2
    one_line(r["stderr"], "--input-size", "too large")
    assert r["peak_rss_mb"] < 300 and r["seconds"] < 30, r
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("content", ["empty", "no_images", "missing"])
def test_int8_representative_data_without_images_is_refused_first(content, tmp_path,
                                                                   capsys):
    data = tmp_path / "calib"
    if content != "missing":
        data.mkdir()
    if content == "no_images":
        (data / "notes.txt").write_text("not an image\n")
        (data / "sub").mkdir()
    before = listing(tmp_path)
    start = time.perf_counter()
    rc, _, err = cli(capsys, "export", REPO / "saved_models" / "denoise.keras", "--to",
                     "tflite", "--quantize", "int8", "--representative-data", data, "-o",
                     tmp_path / "m.tflite")
    assert rc == 2
    one_line(err, "--representative-data", str(data),
             "no such folder" if content == "missing" else "no image files")
    assert time.perf_counter() - start < 10
    assert listing(tmp_path) == before


def test_export_library_checks_calibration_data_before_tracing(tmp_path):
    from maxim_tf.export.tflite import export_tflite

    (tmp_path / "calib").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        export_tflite(object(), tmp_path / "m.tflite", quantization="int8",
                      representative_data=tmp_path / "calib")  # refused before the model is used
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        export_tflite(object(), tmp_path / "m.tflite", input_size=(64, 64), batch_size=0)
    assert sorted(tmp_path.iterdir()) == [tmp_path / "TMPDIR", tmp_path / "calib"]


# A converter stand-in that blocks (as the TFLite converter does in C++) and a parent that
# runs it through maxim_tf.fileio.run_child inside an owned temporary folder, with the
# CLI's SIGTERM handling: SIGTERM must stop both at once, kill -9 of the parent must take
# the child along, and the temporary folder must then be swept by the next run.
_BLOCKER = """
import os, pathlib, time
def block(argv):
    pathlib.Path(argv[0]).write_text(str(os.getpid()))
    time.sleep(600)
    return 0
"""

_PARENT = """
import sys
sys.path.insert(0, sys.argv[1])
import signal
from maxim_tf import errors, fileio
def _raise(signum, frame):
    raise errors.Terminated()
signal.signal(signal.SIGTERM, _raise)
try:
    with fileio.owned_temp_dir(sys.argv[2], ".maxim_tflite_tmp_") as tmp:
        fileio.run_child("blocker:block", sys.argv[3])
except errors.Terminated:
    sys.exit(143)
"""


def _dead(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie is dead, whoever reaps it


def _start_blocked_parent(tmp_path, own_tmpdir):
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "blocker.py").write_text(_BLOCKER)
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "child.pid"
    p = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path / "mod"), str(out),
                          str(marker)], cwd=REPO, env=_env(own_tmpdir))
    deadline = time.time() + 60
    while not marker.exists() or not marker.read_text():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    return p, int(marker.read_text()), out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, PR_SET_PDEATHSIG")
def test_sigterm_stops_a_blocked_converter_child_within_2_s(tmp_path, own_tmpdir):
    p, child, out = _start_blocked_parent(tmp_path, own_tmpdir)
    assert [d.name.split("@")[0] for d in out.iterdir()] == [f".maxim_tflite_tmp_{p.pid}"]
    start = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 143
    assert time.perf_counter() - start < 2
    assert _dead(child)
    assert list(out.iterdir()) == []  # the temporary folder went with it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, PR_SET_PDEATHSIG")
def test_kill_9_takes_the_converter_child_along_and_the_next_run_sweeps(tmp_path,
                                                                         own_tmpdir):
    from maxim_tf import fileio

    p, child, out = _start_blocked_parent(tmp_path, own_tmpdir)
    foreign = out / ".maxim_tflite_tmp_1@another-host@abc"  # another machine's: kept
    foreign.mkdir()
    live = out / f".maxim_tflite_tmp_{os.getpid()}@{fileio._host_tag()}@xyz"  # a live one: kept
    live.mkdir()
    p.kill()
    p.wait()
    deadline = time.time() + 2
    while not _dead(child) and time.time() < deadline:
        time.sleep(0.05)
    assert _dead(child)
    stale = [d for d in out.iterdir() if d.name.startswith(f".maxim_tflite_tmp_{p.pid}@")]
    assert len(stale) == 1  # what kill -9 leaves ...
    assert fileio.sweep_stale_temp_dirs(out, ".maxim_tflite_tmp_") == [str(stale[0])]
    assert sorted(out.iterdir()) == sorted([foreign, live])  # ... the next export removes


def _wait_for(p, pattern_dir, pattern, err_path, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if pattern_dir.is_dir() and list(pattern_dir.glob(pattern)):
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {pattern} (rc {p.poll()}): {err_path.read_text()[-3000:]}")


def _sigterm_promptly(p, err_path, within):
    start = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 143, err_path.read_text()[-3000:]
    seconds = time.perf_counter() - start
    err = err_path.read_text()
    assert "Traceback" not in err
    one_line(err, "terminated")
    assert seconds < within, seconds


@pytest.mark.slow
def test_sigterm_inside_the_tflite_converter_stops_within_2_s(tmp_path, own_tmpdir):
    # The case: a fixed-size export, SIGTERM while the converter runs (> 30 s before).
    keras_file = tmp_path / "tiny1s.keras"
    from maxim_tf.conversion import convert_checkpoint

    convert_checkpoint(TINY1S, keras_file)
    before = listing(tmp_path)
    out = tmp_path / "exported"
    err_path = tmp_path.parent / f"{tmp_path.name}_export.err"
    with open(err_path, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "maxim_tf", "export", str(keras_file), "--to",
                              "tflite", "--input-size", "64x64", "-o", str(out / "m.tflite")],
                             cwd=REPO, env=_env(own_tmpdir), stdout=subprocess.DEVNULL,
                             stderr=err)
    _wait_for(p, out, ".maxim_tflite_tmp_*/convert_job.json", err_path)
    time.sleep(2.0)  # the child is converting (or importing TensorFlow)
    _sigterm_promptly(p, err_path, within=2)
    assert listing(tmp_path) == before  # no temporary, no half-written output, no folder


@pytest.mark.slow
def test_sigterm_during_a_savedmodel_export_exits_promptly_with_nothing_half_written(
        tmp_path, own_tmpdir):
    keras_file = tmp_path / "tiny1s.keras"
    from maxim_tf.conversion import convert_checkpoint

    convert_checkpoint(TINY1S, keras_file)
    serving = tmp_path / "serving"
    (serving / "maxim" / "1").mkdir(parents=True)  # an existing version stays untouched
    (serving / "maxim" / "1" / "saved_model.pb").write_bytes(b"v1")
    before = listing(tmp_path)
    err_path = tmp_path.parent / f"{tmp_path.name}_export.err"
    with open(err_path, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "maxim_tf", "export", str(keras_file), "--to",
                              "savedmodel", "-o", str(serving)],
                             cwd=REPO, env=_env(own_tmpdir), stdout=subprocess.DEVNULL,
                             stderr=err)
    _wait_for(p, serving / "maxim", ".tmp-maxim-*", err_path)
    time.sleep(1.0)  # writing the SavedModel
    _sigterm_promptly(p, err_path, within=3)
    assert listing(tmp_path) == before  # no version 2, no temporary


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_save_resumes_from_the_last_complete_one(tmp_path):
    # Killed while the next checkpoint was being written: its files exist but are
    # half-written, and the state file still names the last complete one (ckpt-3) - what
    # an atomic state file guarantees. --resume must take step 3, not the broken files.
    config = _train_config(tmp_path, steps=7, checkpoint_every=3, log_every=1)
    run_dir = tmp_path / "run"
    slow = hooked_train_cmd(config, run_dir, step_delay=0.4)
    with open(tmp_path.parent / f"{tmp_path.name}_train.err", "w") as err:
        p = subprocess.Popen(slow, cwd=REPO, env=_env(tempfile.gettempdir()),
                             stdout=subprocess.DEVNULL, stderr=err)
    log, ckpts = run_dir / "train_log.jsonl", run_dir / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    state = (ckpts / "checkpoint").read_text()
    assert state.split('"')[1] == "ckpt-3"  # model_checkpoint_path: "ckpt-<step>"
    number = 6
    (ckpts / f"ckpt-{number}.index").write_bytes(b"\x00" * 7)  # half-written next save
    (ckpts / f"ckpt-{number}.data-00000-of-00001").write_bytes(b"\x01" * 100)
    (ckpts / f"ckpt-{number}_temp").mkdir()
    cmd = [sys.executable, "-m", "maxim_tf", "train", "--config", str(config), "--model-dir",
           str(run_dir), "--resume"]
    resumed = subprocess.run(cmd, cwd=REPO, env=_env(tempfile.gettempdir()),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 8))  # resumed from step 3: each step once, in order
    assert (ckpts / "checkpoint").read_text() != state  # later checkpoints were written
