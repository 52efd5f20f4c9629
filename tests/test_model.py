"""Shape freedom, size errors, output modes, .keras round trip, XLA."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_CONFIG

import maxim_tf
from maxim_tf import fused
from maxim_tf.errors import ModelFileError


def test_one_model_any_size_and_batch(tiny_model, rng):
    assert tiny_model.size_multiple == (32, 32)
    for shape in [(1, 64, 64, 3), (2, 128, 192, 3), (1, 192, 128, 3), (2, 64, 64, 3)]:
        x = rng.uniform(0, 1, shape).astype("float32")
        y = tiny_model(x)
        assert tuple(y.shape) == shape
        assert np.isfinite(np.asarray(y)).all()


def test_batch_items_are_independent(tiny_model, rng):
    x = rng.uniform(0, 1, (2, 64, 96, 3)).astype("float32")
    both = np.asarray(tiny_model(x))
    one = np.asarray(tiny_model(x[1:]))
    # Float rounding scales with the output: this random model's outputs reach ~26, and
    # oneDNN's kernels may sum in another order for another batch size (seen on AMD EPYC).
    np.testing.assert_allclose(both[1:], one, rtol=1e-5, atol=1e-5 * np.abs(one).max())


@pytest.mark.parametrize("shape,msg", [
    ((1, 100, 64, 3), "height 100 is not a positive multiple of 32"),
    ((1, 64, 48, 3), "width 48 is not a positive multiple of 32"),
    ((1, 64, 64, 4), r"expected shape=\(None, None, None, 3\)"),
])
def test_wrong_size_raises_before_computing(tiny_model, shape, msg):
    with pytest.raises(ValueError, match=msg):
        tiny_model(np.zeros(shape, "float32"))


def test_official_variant_multiple_is_64():
    assert maxim_tf.MAXIM.from_variant("S-1").size_multiple == (64, 64)


def test_all_outputs_in_official_order(rng):
    model = maxim_tf.MAXIM(**TINY_CONFIG, return_all_outputs=True)
    x = rng.uniform(0, 1, (1, 64, 96, 3)).astype("float32")
    outs = model(x)
    assert model.output_names == [f"stage{s}_out{k}" for s in range(2) for k in range(3)]
    assert [tuple(o.shape[1:3]) for o in outs] == [(16, 24), (32, 48), (64, 96)] * 2
    final = model.with_outputs(False)
    np.testing.assert_allclose(np.asarray(final(x)), np.asarray(outs[-1]), atol=1e-6)
    # Weights move between the two forms by name; the final-only form lacks
    # only the coarse-scale output convs of the last stage.
    assert len(model.weights) - len(final.weights) == 4


def test_keras_file_round_trip_in_safe_mode(converted_tiny2s, tmp_path, rng):
    tiny_model = converted_tiny2s
    path = tmp_path / "tiny.keras"
    tiny_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, maxim_tf.MAXIM)
    assert loaded.get_config() == tiny_model.get_config()
    x = rng.uniform(0, 1, (1, 64, 128, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(tiny_model(x)))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in loaded._flatten_layers())


def test_xla_compiles_and_agrees(converted_tiny2s, rng):
    tiny_model = converted_tiny2s
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    fn = tf.function(lambda t: tiny_model(t, training=False), jit_compile=True)
    np.testing.assert_allclose(np.asarray(fn(x)), np.asarray(tiny_model(x)), atol=1e-5)


def test_dynamic_shapes_in_one_graph(converted_tiny2s, rng):
    tiny_model = converted_tiny2s
    fn = tf.function(lambda t: tiny_model(t, training=False),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    for shape in [(1, 64, 64, 3), (2, 96, 32, 3)]:
        x = rng.uniform(0, 1, shape).astype("float32")
        np.testing.assert_allclose(np.asarray(fn(x)), np.asarray(tiny_model(x)), atol=1e-5)
    assert len(fn._list_all_concrete_functions()) == 1


def _sigmoids(fn):
    return sum(op.type == "Sigmoid" for op in fn.get_concrete_function().graph.get_operations())


def test_graph_form_is_a_runtime_option(converted_tiny2s, rng):
    model = maxim_tf.MAXIM(**converted_tiny2s.maxim_config, graph_form="avx2")
    model.copy_weights_from(converted_tiny2s)
    assert model.graph_form == "avx2" and converted_tiny2s.graph_form == "auto"
    assert "graph_form" not in model.get_config()  # a saved file does not carry it
    assert maxim_tf.MAXIM.from_config(model.get_config()).graph_form == "auto"
    assert model.with_any_size(True).graph_form == "avx2"
    assert model.with_precision("bfloat16").graph_form == "avx2"
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    traced = {}
    for form in ("avx2", "stock"):
        model.graph_form = form
        traced[form] = tf.function(lambda t: model(t, training=False), input_signature=spec)
        assert traced[form].get_concrete_function() is not None
    # GELU written with a sigmoid (SAM and channel attention have sigmoids in every form).
    assert _sigmoids(traced["avx2"]) > _sigmoids(traced["stock"])
    np.testing.assert_allclose(traced["avx2"](x).numpy(), traced["stock"](x).numpy(), atol=1e-5)
    with fused.graph_form_scope("stock"):  # the tracing code's scope wins
        model.graph_form = "avx2"
        assert _sigmoids(tf.function(lambda t: model(t), input_signature=spec)) \
            == _sigmoids(traced["stock"])
    with pytest.raises(ValueError, match="graph_form must be one of"):
        model.graph_form = "fused"
    with pytest.raises(ValueError, match="graph_form must be one of"):
        maxim_tf.MAXIM(**TINY_CONFIG, graph_form="rows")


def test_restorer_graph_form(converted_tiny2s, rng):
    x = rng.uniform(0, 1, (50, 70, 3)).astype("float32")
    plain = maxim_tf.Restorer(converted_tiny2s)(x)
    restorer = maxim_tf.Restorer(converted_tiny2s, graph_form="avx2")
    assert restorer.backend == "keras" and restorer.graph_form == "avx2"
    np.testing.assert_allclose(restorer(x), plain, atol=1e-5)
    assert {"auto", "avx2"} <= set(converted_tiny2s._maxim_restore_predict)  # one trace per form
    with pytest.raises(ValueError, match="graph_form must be one of"):
        maxim_tf.Restorer(converted_tiny2s, graph_form="sigmoid")
    with pytest.raises(ValueError, match="graph_form='stock' runs on Keras"):
        maxim_tf.Restorer("denoise", backend="litert", graph_form="stock")


def test_untrained_from_a_json_config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    a, b = maxim_tf.MAXIM.untrained(path), maxim_tf.MAXIM.untrained(str(path))
    assert a.maxim_config == b.maxim_config and a.maxim_config["features"] == TINY_CONFIG["features"]
    for u, v in zip(a.weights, b.weights):  # seeded: the same random weights
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="must be an object"):
        maxim_tf.MAXIM.untrained(tmp_path / "list.json")
    with pytest.raises(ModelFileError, match="not a readable JSON"):
        maxim_tf.MAXIM.untrained(tmp_path / "missing.json")


@pytest.mark.parametrize("bad", [dict(num_supervision_scales=4), dict(features=6),
                                 dict(depth=0)])
def test_bad_config_is_refused(bad):
    cfg = dict(TINY_CONFIG)
    cfg.update(bad)
    with pytest.raises(ValueError, match=list(bad)[0]):
        maxim_tf.MAXIM(**cfg)


def test_other_options_build_and_run(rng):
    cfg = dict(TINY_CONFIG, use_cross_gating=False, use_global_mlp=False, num_groups=2,
               num_supervision_scales=1, dropout_rate=0.1, use_bias=False, high_res_stages=1)
    model = maxim_tf.MAXIM(**cfg, return_all_outputs=True)
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    outs = model(x, training=True)
    assert len(outs) == 2 and tuple(outs[-1].shape) == x.shape
    assert not any("bias" in v.path for v in model.weights)
