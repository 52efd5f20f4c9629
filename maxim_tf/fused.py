"""Fusion-friendly forms of the per-pixel layers (Dense, Conv2D, LayerNorm).

MAXIM spends most of its CPU time outside its matmuls: at 256² an S-3 forward
pass runs ~2 500 elementwise multiplies, 370 layer norms and 240 GELUs, each a
full pass over memory. TensorFlow's graph optimizer (Grappler's remapper, with
oneDNN on x86) fuses them into the contractions, but only when the graph has
the shapes it looks for:

* ``MatMul -> BiasAdd [-> Add] [-> Gelu/Relu/...]`` on 2-D tensors becomes one
  ``_FusedMatMul`` (Keras 3 ``Dense`` adds its bias with a broadcast ``AddV2``
  on the 4-D tensor and applies GELU as ~9 separate ops, so nothing fuses);
* ``Conv2D -> BiasAdd [-> LeakyRelu]`` becomes one ``_FusedConv2D``;
* a layer norm written as ``Reshape -> FusedBatchNormV3(training) -> Reshape
  -> Mul(gamma) -> AddV2(beta)`` on a 2-D tensor of unknown length becomes one
  ``_MklLayerNorm`` (the statistics over channels of each pixel are the batch
  statistics of a ``[1, pixels, channels, 1]`` NCHW tensor).

The functions here take the Keras sub-layer (for its variables, so variable
names, checkpoints and the converter are unchanged) and the input, and build
those shapes. Results equal the Keras layers up to float rounding (the parity
tests hold them to the official outputs at 1e-4).

The batch-norm form of LayerNorm is not a builtin TFLite op and tf2onnx does
not convert it; :func:`portable_graph` makes traces use Keras'
``LayerNormalization`` instead, and the TFLite/ONNX exporters trace inside it.
"""

import contextlib
import threading

import tensorflow as tf

from maxim_tf import ops as mops

_STATE = threading.local()


@contextlib.contextmanager
def portable_graph():
    """Trace MAXIM with ops every converter understands (TFLite builtins, ONNX).

    Only the layer-norm formulation changes; numerics are the same.

    Example:
        >>> with portable_graph():
        ...     concrete = tf.function(model).get_concrete_function(spec)
    """
    previous = getattr(_STATE, "portable", False)
    _STATE.portable = True
    try:
        yield
    finally:
        _STATE.portable = previous


def is_portable():
    """True inside :func:`portable_graph`."""
    return getattr(_STATE, "portable", False)


def _value(variable, dtype):
    return tf.cast(variable, dtype)


def _bias(layer, dtype, shift=0.0, columns=None):
    """The layer's bias (None without one) plus ``shift``, sliced to ``columns``."""
    bias = _value(layer.bias, dtype) if layer.use_bias else None
    if shift:
        bias = bias + shift if bias is not None else tf.fill([layer.units], tf.cast(shift, dtype))
    if bias is not None and columns is not None:
        bias = bias[columns[0]:columns[1]]
    return bias


def _out_shape(x, channels):
    return mops._dims(x)[:-1] + [channels]


def _activate(y, activation, slope=0.2):
    if activation is None:
        return y
    if activation == "gelu":
        # Flax nn.gelu: the tanh approximation.
        return tf.nn.gelu(y, approximate=True)
    if activation == "leaky_relu":
        return tf.nn.leaky_relu(y, alpha=slope)
    raise ValueError(f"Unknown activation {activation!r}")


def dense(layer, x, activation=None, residual=None, columns=None, bias_shift=0.0, rows=None,
          use_bias=True):
    """``activation(x @ kernel + bias [+ residual])`` over the last axis.

    Args:
        layer: a built ``keras.layers.Dense`` (its own activation must be None).
        x: tensor of any rank >= 2, channels last.
        activation: None, "gelu" (tanh approximation) or "leaky_relu".
        residual: optional tensor of the output's shape, added before the
            activation (fused into the matmul as its ``Add`` epilogue).
        columns: optional ``(start, stop)``: use only these output units
            (so ``split(dense(x))`` becomes two fused matmuls and no copy).
        bias_shift: constant added to the bias (``dense(x) + 1`` in one op).
        rows: optional ``(start, stop)``: ``x`` holds only these input
            channels (so ``dense(concat([u, v]))`` can be two matmuls).
        use_bias: False to leave the layer's bias out (add it once when
            splitting a matmul by rows).
    """
    kernel = _value(layer.kernel, x.dtype)
    if rows is not None:
        kernel = kernel[rows[0]:rows[1]]
    if columns is not None:
        kernel = kernel[:, columns[0]:columns[1]]
    bias = _bias(layer, x.dtype, bias_shift, columns) if use_bias else None
    units = kernel.shape[-1]
    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    if residual is not None:
        y = y + tf.reshape(residual, [-1, units])
    y = _activate(y, activation)
    return tf.reshape(y, _out_shape(x, units))


def conv(layer, x, activation=None, slope=0.2):
    """``activation(conv2d(x) + bias)`` of a ``keras.layers.Conv2D`` with
    "same" padding, as ``Conv2D -> BiasAdd -> activation`` (one fused op)."""
    y = tf.nn.conv2d(x, _value(layer.kernel, x.dtype), strides=layer.strides,
                     padding="SAME", dilations=layer.dilation_rate)
    if layer.use_bias:
        y = tf.nn.bias_add(y, _value(layer.bias, x.dtype))
    return _activate(y, activation, slope)


def layer_norm(layer, x):
    """A ``keras.layers.LayerNormalization`` over the last axis of ``x``.

    Outside :func:`portable_graph`, and for float32 inputs, written as the
    pattern Grappler fuses into one ``_MklLayerNorm`` pass (see module doc);
    otherwise the Keras layer itself.
    """
    c = x.shape[-1]
    flat = tf.reshape(x, [-1, c])
    # With a static pixel count Grappler constant-folds the Fill ops and the
    # pattern no longer matches (an unfused training-mode batch norm is
    # slower than Keras' layer norm): trace with unknown H, W to get the fusion.
    if (is_portable() or x.dtype != tf.float32 or not (layer.scale and layer.center)
            or getattr(layer, "rms_scaling", False) or flat.shape[0] is not None):
        return layer(x)
    flat_shape = tf.shape(flat)
    pixels = flat_shape[0:1]
    # The raw op: the tf.nn wrapper raises epsilon to cuDNN's old 1.001e-5.
    empty = tf.constant([], tf.float32)
    y = tf.raw_ops.FusedBatchNormV3(
        x=tf.reshape(flat, tf.concat([[1], pixels, [c, 1]], 0)),
        scale=tf.fill(pixels, 1.0), offset=tf.fill(pixels, 0.0), mean=empty, variance=empty,
        epsilon=float(layer.epsilon), data_format="NCHW", is_training=True).y
    y = tf.reshape(y, flat_shape) * _value(layer.gamma, x.dtype) + _value(layer.beta, x.dtype)
    return tf.reshape(y, _out_shape(x, c))


def mix(layer, x, mode, size, bias_shift=0.0):
    """Spatial mixing of a gating unit with the Dense ``layer``'s weights:
    ``mode`` "grid" (across grid cells) or "block" (within blocks); the bias
    plus ``bias_shift`` is added in the matmul's fused BiasAdd."""
    kernel = _value(layer.kernel, x.dtype)
    bias = _bias(layer, x.dtype, bias_shift)
    fn = mops.mix_grid_axis if mode == "grid" else mops.mix_block_axis
    return fn(x, size, kernel, bias)
