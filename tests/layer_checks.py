"""One check for every MAXIM layer, in the spirit of keras-hub's ``run_layer_test``.

``check_layer(cls, kwargs, shapes, num_weights)`` builds the layer, calls it on
random inputs and checks, in order:

1. the number of trainable weight tensors (and no non-trainable ones);
2. ``get_config`` -> ``from_config`` round trip: same class, same config, and
   with the weights copied, the same outputs;
3. the output shapes equal ``compute_output_shape``;
4. under the ``mixed_bfloat16`` policy: the layer runs, computes in bfloat16
   and agrees with the float32 layer (same weights) to bfloat16 precision;
5. one training step: every trainable weight gets a finite, non-zero gradient
   and a gradient step lowers a simple loss.
"""

import keras
import numpy as np
import tensorflow as tf


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _call(layer, inputs, **kwargs):
    return _as_tuple(layer(*inputs, **kwargs))


def _randomise(layer, seed=0):
    """Non-trivial weights (Keras initialises biases to 0 and LayerNorm to identity)."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign((rng.normal(0, 0.3, v.shape)).astype(v.dtype))


def check_layer(cls, kwargs, shapes, num_weights, rng=None):
    rng = rng or np.random.default_rng(0)
    inputs = [tf.constant(rng.standard_normal(s).astype("float32")) for s in shapes]

    layer = cls(**kwargs, name="probe")
    outs = _call(layer, inputs)
    _randomise(layer)
    outs = _call(layer, inputs)
    assert len(layer.trainable_weights) == num_weights, (
        f"{cls.__name__}: {len(layer.trainable_weights)} trainable weights, expected {num_weights}: "
        f"{[w.path for w in layer.trainable_weights]}")
    assert not layer.non_trainable_weights, [w.path for w in layer.non_trainable_weights]

    # 2. config round trip, and the clone computes the same function.
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is cls
    assert clone.get_config() == layer.get_config()
    clone_outs = _call(clone, inputs)
    clone.set_weights(layer.get_weights())
    for a, b in zip(_call(clone, inputs), outs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)

    # 3. declared output shapes.
    want = layer.compute_output_shape(*[tuple(s) for s in shapes])
    want = want if isinstance(want[0], tuple) else (want,)
    assert [tuple(o.shape) for o in outs] == [tuple(w) for w in want]
    assert [tuple(o.shape) for o in clone_outs] == [tuple(w) for w in want]

    # 4. mixed precision: bfloat16 compute, float32 variables, same function.
    mixed = cls(**kwargs, name="probe_bf16", dtype="mixed_bfloat16")
    _call(mixed, inputs)
    mixed.set_weights(layer.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)
    for got, ref in zip(_call(mixed, inputs), outs):
        assert got.dtype == tf.bfloat16, f"{cls.__name__} computed in {got.dtype} under mixed_bfloat16"
        got = tf.cast(got, tf.float32).numpy()
        assert np.isfinite(got).all()
        scale = np.abs(ref.numpy()).max() + 1e-3
        assert np.abs(got - ref.numpy()).max() <= 0.05 * scale + 0.05, (
            f"{cls.__name__}: bfloat16 output differs from float32 by {np.abs(got - ref.numpy()).max():.3g}")

    # 5. one training step.
    def loss_fn():
        return tf.add_n([tf.reduce_mean(tf.square(o - 0.5)) for o in _call(layer, inputs, training=True)])

    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, layer.trainable_weights)
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None, f"{cls.__name__}: no gradient for {w.path}"
        g = tf.convert_to_tensor(g).numpy()
        assert np.isfinite(g).all(), w.path
        assert np.abs(g).max() > 0, f"{cls.__name__}: zero gradient for {w.path}"
    keras.optimizers.SGD(1e-3).apply_gradients(zip(grads, layer.trainable_weights))
    assert float(loss_fn()) < float(loss)
