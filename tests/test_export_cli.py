"""``maxim-tf export`` and the Python API: argument errors, one verified export, and a
fixed-size TFLite model refusing another size."""

import numpy as np
import pytest
from conftest import FIXTURES

from maxim_tf.cli import main
from maxim_tf.errors import ModelFileError
from maxim_tf.export import export_model


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    # The official tiny single-stage checkpoint (natural output range, so int8 PSNR
    # means something) converted to .keras.
    from maxim_tf.conversion.checkpoint import convert_checkpoint

    path = tmp_path_factory.mktemp("cli") / "tiny1s.keras"
    convert_checkpoint(FIXTURES / "official" / "tiny1s_single_scale" / "checkpoint.npz", path)
    return path


def test_unknown_format_is_a_cli_error(keras_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(keras_file), "--to", "caffe"])
    assert exc.value.code == 2
    assert "invalid choice: 'caffe'" in capsys.readouterr().err


def test_missing_model_path_is_a_cli_error(tmp_path, capsys):
    code = main(["export", str(tmp_path / "missing.keras"), "--to", "onnx"])
    assert code == 2  # a model-file error: nothing done (maxim_tf.errors)
    err = capsys.readouterr().err
    assert "no such model file" in err and "missing.keras" in err


def test_not_a_keras_file_is_a_cli_error(tmp_path, capsys):
    bad = tmp_path / "model.h5"
    bad.write_bytes(b"nothing")
    assert main(["export", str(bad), "--to", "onnx"]) == 2
    assert "not a .keras model file" in capsys.readouterr().err


def test_bad_input_size_is_a_cli_error(keras_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(keras_file), "--to", "tflite", "--input-size", "big"])
    assert exc.value.code == 2
    assert "expected HxW" in capsys.readouterr().err


def test_api_rejects_unknown_format_and_bad_options(keras_file, tmp_path):
    with pytest.raises(ValueError, match="Unknown export format 'tf.js'"):
        export_model(keras_file, tmp_path / "x", "tf.js")
    with pytest.raises(ValueError, match="Unknown TFLite quantization 'int4'"):
        export_model(keras_file, tmp_path / "x.tflite", "tflite", quantization="int4")
    with pytest.raises(ValueError, match="int8_io='uint8' needs quantization='int8'"):
        export_model(keras_file, tmp_path / "x.tflite", "tflite", int8_io="uint8")
    with pytest.raises(ModelFileError, match="no such model file"):
        export_model(tmp_path / "none.keras", tmp_path / "x.onnx", "onnx")


def test_cli_fixed_size_uint8_int8_tflite_verified_then_other_size_refused(keras_file, tmp_path,
                                                                            capsys):
    from maxim_tf.litert import TFLiteRunner

    out = tmp_path / "tiny_int8_80x48.tflite"
    code = main(["export", str(keras_file), "--to", "tflite", "--quantize", "int8", "--int8-io", "uint8",
                 "--input-size", "80x48", "--num-calibration-images", "4", "-o", str(out),
                 "--verify"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"Wrote {out}" in printed and "all passed" in printed
    assert "tflite-int8" in printed and "[1, 80, 48, 3]" in printed
    runner = TFLiteRunner(out)
    assert runner.input_details["dtype"] == np.uint8
    assert runner.output_details["dtype"] == np.uint8
    assert runner.fixed_size == (80, 48) and runner.input_shape == (1, 80, 48, 3)
    assert runner(np.full((1, 80, 48, 3), 0.5, np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"fixed-size TFLite model for input \[1, 80, 48, 3\]; "
                                         r"received height 96 \(model takes 80\)"):
        runner(np.zeros((1, 96, 48, 3), np.float32))
    with pytest.raises(ValueError, match=r"batch 2 \(model takes 1\)"):
        runner(np.zeros((2, 80, 48, 3), np.float32))
    with pytest.raises(ValueError, match=r"expects images of shape \[N, H, W, 3\]"):
        runner(np.zeros((80, 48, 3), np.float32))


def test_cli_savedmodel_versions_and_refuses_to_overwrite(keras_file, tmp_path, capsys):
    base = tmp_path / "serving"
    (base / "tiny" / "3").mkdir(parents=True)
    code = main(["export", str(keras_file), "--to", "savedmodel", "-o", str(base), "--model-name", "tiny",
                 "--no-warmup"])
    assert code == 0
    assert f"Wrote {base / 'tiny' / '4'}" in capsys.readouterr().out
    assert (base / "tiny" / "4" / "saved_model.pb").is_file()
    assert not (base / "tiny" / "4" / "assets.extra").exists()
    code = main(["export", str(keras_file), "--to", "savedmodel", "-o", str(base), "--model-name", "tiny",
                 "--model-version", "4"])
    assert code == 2  # refused, nothing written: a usage error
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (base / "tiny").iterdir()) == ["3", "4"]
