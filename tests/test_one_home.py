"""The one home of each shared concept: the model loader, float -> uint8, the small
helpers, the error family (see the layout section of docs/development.md)."""

import json

import numpy as np
import pytest
from conftest import TINY_CONFIG

from maxim_tf import _utils, errors, hub, image_io


def test_to_uint8_clips_and_rounds_on_either_scale():
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.7])
    assert image_io.to_uint8(x).tolist() == [0, 0, 0, 2, 128, 255, 255]  # rint: half to even
    assert image_io.to_uint8(x * 255, scale=255.0).tolist() == image_io.to_uint8(x).tolist()


def test_rgb_float_repeats_gray_and_scales_16_bit():
    gray16 = image_io.LoadedImage(np.full((2, 3, 1), 65535, np.uint16), None, "PNG", "x.png")
    rgb = image_io.rgb_float(gray16)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.float32 and np.all(rgb == 1.0)
    rgb8 = image_io.LoadedImage(np.full((2, 3, 3), 51, np.uint8), None, "PNG", "x.png")
    assert np.allclose(image_io.rgb_float(rgb8, scale=255.0, dtype=np.float64), 51.0)


def test_pair_and_last_output():
    assert _utils.pair(8) == (8, 8) and _utils.pair(np.int64(4)) == (4, 4)
    assert _utils.pair([16, 32]) == (16, 32)
    assert _utils.last_output("y") == "y"
    assert _utils.last_output(["a", ("b", "c")]) == "c"


def test_out_of_memory_detection_without_importing_tensorflow():
    assert errors.is_out_of_memory(MemoryError())
    assert not errors.is_out_of_memory(ValueError("ResourceExhaustedError"))


def test_exception_roots_are_maxim_errors():
    from maxim_tf.export.verify import VerificationError

    assert issubclass(VerificationError, errors.MaximError)
    assert VerificationError.exit_code == errors.EXIT_CHECK_FAILED == 3


def test_the_one_loader_takes_objects_variants_and_json(tmp_path):
    def model(x):
        return x

    assert hub.load_model(model) is model
    with pytest.raises(errors.UsageError, match="Expected a maxim_tf.MAXIM"):
        hub.load_model(model, require_maxim=True)
    with pytest.raises(errors.UsageError, match="not a trained model"):
        hub.load_model("S-1")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(dict(TINY_CONFIG, num_stages=1)))
    with pytest.raises(errors.UsageError, match="a JSON config"):
        hub.load_model(config)
    built = hub.load_model(config, allow_untrained=True)
    again = hub.load_model(str(config), allow_untrained=True)
    assert built.size_multiple == again.size_multiple
    assert all(np.array_equal(a, b) for a, b in zip(built.get_weights(), again.get_weights()))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(errors.ModelFileError, match="must be an object"):
        hub.load_model(tmp_path / "list.json", allow_untrained=True)


def test_precisions_backends_and_the_atomic_write_are_defined_once():
    """One definition each in the package (the issue-36 review found three and two)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    sources = {p: p.read_text(encoding="utf-8") for folder in ("maxim_tf", "export", "conversion",
                                                              "training")
               for p in (root / folder).rglob("*.py")}
    for pattern in (r"^PRECISIONS\s*=", r"^BACKENDS\s*=", r"^def atomic_path\b",
                    r"^    fd, tmp = tempfile\.mkstemp"):
        where = [p.name for p, text in sources.items() if re.search(pattern, text, re.M)]
        assert len(where) == 1, (pattern, where)
