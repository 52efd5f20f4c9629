"""The any-size MAXIM (official pad-and-crop inside the graph) and the one padding rule."""

import numpy as np
import pytest
from conftest import FIXTURES
from test_restore import official_crop, official_pad

TINY1S = FIXTURES / "official" / "tiny1s_single_scale"


@pytest.fixture(scope="module")
def models():
    """The official tiny1s checkpoint converted (size multiple 64, realistic outputs) and its
    any-size form."""
    from maxim_tf.conversion import convert_checkpoint

    model, _ = convert_checkpoint(TINY1S / "checkpoint.npz")
    return model, model.with_any_size()


@pytest.mark.parametrize("h, w", [(1, 1), (5, 9), (37, 61), (64, 64), (75, 130)])
def test_pad_and_crop_layers_follow_the_official_rule(h, w):
    import keras

    from maxim_tf.padding import CropToInput, PadToMultiple

    image = np.random.default_rng(h * w).random((h, w, 3)).astype(np.float32)
    padded = PadToMultiple(32)(image[None]).numpy()[0]
    if h > 1 and w > 1:  # numpy's reflect needs two pixels
        np.testing.assert_array_equal(padded, official_pad(image, 32))
    assert padded.shape[0] % 32 == 0 and padded.shape[1] % 32 == 0
    np.testing.assert_array_equal(CropToInput(32)([padded[None], image[None]]).numpy()[0], image)
    if h > 1 and w > 1:
        np.testing.assert_array_equal(official_crop(padded, h, w), image)
    # Serializable by name (no Lambda): a config round trip gives the same layer.
    layer = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
        PadToMultiple((32, 16), name="p")))
    assert isinstance(layer, PadToMultiple) and layer.multiple == (32, 16)


def test_predict_any_size_equals_restorer(models):
    import maxim_tf

    model, any_size = models
    assert any_size.any_size and any_size.size_multiple == model.size_multiple == (64, 64)
    restorer = maxim_tf.Restorer(model)
    rng = np.random.default_rng(0)
    for h, w in ((500, 375), (37, 61)):
        x = rng.random((1, h, w, 3)).astype(np.float32)
        y = any_size.predict(x, verbose=0)
        assert y.shape == x.shape
        np.testing.assert_allclose(y, restorer.restore_float(x), atol=1e-5, rtol=0)


def test_unknown_sizes_fail_with_a_clear_in_graph_error(models):
    import tensorflow as tf

    model, any_size = models
    fn = tf.function(lambda t: model(t, training=False),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"height 37 and width 61 must be positive multiples of 64 and 64"):
        fn(tf.zeros([1, 37, 61, 3]))
    assert fn(tf.zeros([1, 64, 128, 3])).shape == (1, 64, 128, 3)
    with pytest.raises(ValueError, match="height 37 is not a positive multiple of 64"):
        model(np.zeros([1, 37, 64, 3], np.float32))
    with pytest.raises(ValueError, match="needs return_all_outputs=False"):
        type(model)(**model.maxim_config, return_all_outputs=True, any_size=True)


def test_keras_round_trip_in_safe_mode(models, tmp_path):
    import keras

    _, any_size = models
    path = tmp_path / "any.keras"
    any_size.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.any_size and loaded.size_multiple == (64, 64)
    assert {type(layer).__name__ for layer in loaded.layers} >= {"PadToMultiple", "CropToInput"}
    assert "Lambda" not in {type(layer).__name__ for layer in loaded.layers}
    x = np.random.default_rng(1).random((1, 37, 61, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), any_size(x).numpy())
    assert loaded.with_any_size(False).any_size is False


@pytest.mark.slow  # exports and reloads a SavedModel: ~2 min on a loaded 2-core CPU
def test_savedmodel_of_the_any_size_model_equals_it(models, tmp_path):
    import tensorflow as tf

    from maxim_tf.export import export_model

    _, any_size = models
    path, _ = export_model(any_size, tmp_path / "serving", "savedmodel", warmup=False)
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = np.random.default_rng(2).random((1, 37, 61, 3)).astype(np.float32)
    out = serving(images=tf.constant(x))["restored"].numpy()
    np.testing.assert_allclose(out, any_size(x).numpy(), atol=1e-5, rtol=0)
