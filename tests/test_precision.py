"""The bfloat16 path: MAXIM.with_precision and Restorer(precision=...)."""

import numpy as np
import pytest

import maxim_tf
from maxim_tf.metrics import psnr


def test_with_precision_is_a_bfloat16_copy(converted_tiny2s):
    fp32 = converted_tiny2s
    assert fp32.with_precision("float32") is fp32
    bf16 = fp32.with_precision("bfloat16")
    assert bf16.layer_dtype_policy.name == "mixed_bfloat16"
    assert bf16.get_layer("stage_0_encoder_block_0").dtype_policy.name == "mixed_bfloat16"
    assert bf16.with_any_size(True).layer_dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == "float32" for w in bf16.weights)  # weights stay float32
    assert [w.path for w in bf16.weights] == [w.path for w in fp32.weights]
    for a, b in zip(bf16.weights, fp32.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="precision must be one of"):
        fp32.with_precision("float16")


def test_bfloat16_restorer_stays_close_to_float32(converted_tiny2s, rng):
    image = (rng.random((50, 70, 3)) * 255).astype(np.uint8)
    ref = maxim_tf.Restorer(converted_tiny2s)(image)
    restorer = maxim_tf.Restorer(converted_tiny2s, precision="bfloat16")
    assert restorer.precision == "bfloat16" and restorer.model.layer_dtype_policy.name == "mixed_bfloat16"
    got = restorer(image)
    assert got.shape == image.shape and got.dtype == np.uint8
    # bfloat16 keeps 8 mantissa bits: outputs move by a few 8-bit levels at most, and
    # they must move (else the bf16 policy was not applied).
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() > 0
    assert psnr(got, ref) > 35, psnr(got, ref)


def test_bfloat16_refuses_litert_and_foreign_models(converted_tiny2s):
    with pytest.raises(ValueError, match="runs on Keras"):
        maxim_tf.Restorer("denoise", backend="litert", precision="bfloat16")
    with pytest.raises(ValueError, match="needs a MAXIM model"):
        maxim_tf.Restorer(lambda x: x, size_multiple=8, precision="bfloat16")
    with pytest.raises(ValueError, match="precision must be one of"):
        maxim_tf.Restorer(converted_tiny2s, precision="int4")


def test_bfloat16_shipped_model_runs_on_keras():
    restorer = maxim_tf.Restorer("denoise", precision="bfloat16")
    assert restorer.backend == "keras"


def test_auto_backend_runs_shipped_models_on_keras_where_a_cuda_gpu_is(monkeypatch):
    from maxim_tf import restore

    pytest.importorskip("ai_edge_litert", reason="the LiteRT twin needs ai-edge-litert")
    assert isinstance(restore.cuda_gpu_present(), bool)
    monkeypatch.setattr(restore, "cuda_gpu_present", lambda: False)
    assert maxim_tf.Restorer("denoise").backend == "litert"
    monkeypatch.setattr(restore, "cuda_gpu_present", lambda: True)
    assert maxim_tf.Restorer("denoise").backend == "keras"
    assert maxim_tf.Restorer("denoise", backend="litert").backend == "litert"  # asked for


def test_bfloat16_graph_casts_no_activations_to_float32(converted_tiny2s):
    # Every layer computes in the model's policy: a layer left at the global
    # float32 policy (or a float32 mean) casts whole bf16 activations to float32
    # and back. What may stay: the float32 input, TensorFlow's float32-only
    # resize, and the float32 outputs (input residual, outputs cast to float32).
    import tensorflow as tf

    bf16 = converted_tiny2s.with_precision("bfloat16")
    fn = tf.function(lambda t: bf16(t, training=False),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    casts = [op for op in fn.get_concrete_function().graph.get_operations()
             if op.type == "Cast" and op.inputs[0].shape.rank == 4
             and op.inputs[0].op.type not in ("ReadVariableOp", "Const")]  # weights: small
    up = [op for op in casts if op.outputs[0].dtype == tf.float32]
    assert len(up) <= len(bf16.outputs), [op.name for op in up]
    down = [op for op in casts if op.outputs[0].dtype == tf.bfloat16]
    sources = {op.inputs[0].op.type for op in down}
    assert sources <= {"Placeholder", "Identity", "ResizeBilinear"}, sources
