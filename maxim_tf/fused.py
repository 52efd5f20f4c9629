"""The per-pixel layers of MAXIM (Dense, Conv2D, LayerNorm) in fusion-friendly form.

MAXIM spends most of its CPU time outside its matmuls: an S-3 forward pass runs
thousands of elementwise multiplies, hundreds of layer norms and GELUs, each a
full pass over memory. TensorFlow's graph optimizer (Grappler's remapper, with
oneDNN on x86) fuses them into the contractions, but only when the graph has
the shapes it looks for:

* ``MatMul -> BiasAdd [-> Add] [-> Gelu/Relu/...]`` on 2-D tensors becomes one
  ``_FusedMatMul`` (Keras 3 ``Dense`` adds its bias with a broadcast ``AddV2``
  on the 4-D tensor and applies GELU as ~9 separate ops, so nothing fuses);
  On x86 CPUs without AVX-512 oneDNN's fused GELU is slower than a plain matmul
  followed by GELU written with a sigmoid (the ``"avx2"`` graph form, see
  :func:`active_graph_form`), so there the matmul fuses only its bias;
* ``Conv2D -> BiasAdd [-> LeakyRelu]`` becomes one ``_FusedConv2D``;
* a layer norm written as ``Reshape -> FusedBatchNormV3(training) -> Reshape
  -> Mul(gamma) -> AddV2(beta)`` on a 2-D tensor of unknown length becomes one
  ``_MklLayerNorm`` (the statistics over channels of each pixel are the batch
  statistics of a ``[1, pixels, channels, 1]`` NCHW tensor).

Each class here is the Keras layer it subclasses (same variables, same variable
names, so checkpoints and the converter see ordinary ``Dense``/``Conv2D``/
``LayerNormalization`` layers) whose ``call`` emits those shapes. The MAXIM
blocks in :mod:`maxim_tf.layers` call them like any Keras layer; the few fused
epilogues a block needs are call arguments with a plain meaning:

* ``Dense(x, residual=r)`` is ``r + dropout(dense(x))`` (the add rides on the
  matmul when dropout is inactive);
* ``Dense([u, v])`` is ``dense(concatenate([u, v]))`` computed as two matmuls
  over row blocks of the kernel (no concatenated copy);
* ``Dense(x, split=2)`` is ``split(dense(x), 2)`` computed as two matmuls over
  column blocks (no split copy);
* ``SpatialDense(x, offset=1.0)`` is ``dense(x) + 1`` with the 1 folded into
  the bias.

Results equal the stock Keras layers up to float rounding (tests/test_fused.py;
the parity tests hold the whole model to the official outputs at 1e-4).

The batch-norm form of LayerNorm is not a builtin TFLite op and tf2onnx does
not convert it; :func:`portable_graph` makes traces use Keras'
``LayerNormalization`` instead, and the TFLite/ONNX exporters trace inside it.
There, too, ``Dense`` on 4-D tensors is a 1x1 convolution and the decoder's
``Conv2DTranspose`` a 1x1 convolution + depth-to-space: neither needs a shape
computed from the input size, which XNNPACK cannot take in a dynamic-size
TFLite file (each such op cut the graph into another delegate partition).
"""

import contextlib
import functools
import os
import pathlib
import platform
import threading

import keras
import tensorflow as tf

from maxim_tf import partition
from maxim_tf._utils import pair

ACTIVATIONS = (None, "gelu", "leaky_relu")


# -- The graph form ------------------------------------------------------------------------
#
# Which of the equivalent graphs (same numerics up to float rounding) a trace writes:
# "stock", "avx2" or "portable" (see active_graph_form). One setting, graph_form, decides;
# the first of these that is not "auto" wins:
#   1. the outermost graph_form_scope() around the trace (the code that traces decides:
#      Restorer(graph_form=...), the exporters' portable_graph());
#   2. the model's own MAXIM(graph_form=...) (a runtime option, not saved in .keras files:
#      the best form depends on the machine that runs the file, not the one that wrote it);
#   3. the environment variable MAXIM_TF_GRAPH_FORM;
#   4. choose_graph_form() of this machine's facts.
# The form is read at trace time: a traced function keeps the form it was traced with.

GRAPH_FORMS = ("stock", "avx2", "portable")
GRAPH_FORM_SETTINGS = ("auto",) + GRAPH_FORMS
GRAPH_FORM_ENV = "MAXIM_TF_GRAPH_FORM"
# Below this many input channels oneDNN's im2col convolution was as fast or faster.
ROWS_MIN_CHANNELS = 96
# GELU's tanh approximation 0.5 y (1 + tanh(a (y + b y³))) is y * sigmoid(y (2a + 2ab y²)).
_GELU_A = 0.7978845608028654  # sqrt(2 / pi)
_GELU_B = 0.044715
_REMOVED_ENV = ("MAXIM_TF_GELU", "MAXIM_TF_CONV")


def check_graph_form(setting):
    """``setting`` if it is one of :data:`GRAPH_FORM_SETTINGS` (``"auto"``, ``"stock"``,
    ``"avx2"``, ``"portable"``), else ValueError."""
    if setting not in GRAPH_FORM_SETTINGS:
        raise ValueError(f"graph_form must be one of {', '.join(GRAPH_FORM_SETTINGS)}. "
                         f"Received: graph_form={setting!r}")
    return setting


def choose_graph_form(machine, cpu_flags, onednn_enabled):
    """The automatic graph form for a machine: ``"avx2"`` or ``"stock"``.

    ``"avx2"`` on x86-64 CPUs with AVX2 but no AVX-512 where TensorFlow runs oneDNN,
    whose two slow spots there it routes around: oneDNN has no direct NHWC convolution
    (it runs them as im2col + GEMM) and its fused GELU's tanh uses vector gathers.
    ``"stock"`` everywhere else (AVX-512 and ARM CPUs, GPUs' hosts alike: the GPU
    kernels fuse the stock form).

    Args:
        machine: ``platform.machine()`` (``"x86_64"``, ``"AMD64"``, ``"aarch64"`` ...).
        cpu_flags: the CPU's feature flags (``/proc/cpuinfo``), or None where unknown
            (then ``"stock"``).
        onednn_enabled: whether TensorFlow runs its oneDNN kernels.
    """
    x86 = str(machine).lower() in ("x86_64", "amd64")
    flags = set(cpu_flags or ())
    if x86 and onednn_enabled and "avx2" in flags and "avx512f" not in flags:
        return "avx2"
    return "stock"


def _cpu_flags():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def machine_facts():
    """``(machine, cpu_flags, onednn_enabled)`` of this process, for
    :func:`choose_graph_form` (read once)."""
    from tensorflow.python.util import _pywrap_util_port

    return platform.machine(), _cpu_flags(), bool(_pywrap_util_port.IsMklEnabled())


def default_graph_form():
    """The form of a trace that no explicit setting decides: ``MAXIM_TF_GRAPH_FORM``
    when set to a form, else :func:`choose_graph_form` of this machine."""
    removed = [v for v in _REMOVED_ENV if os.environ.get(v)]
    if removed:
        raise ValueError(f"{' and '.join(removed)} no longer exist: set {GRAPH_FORM_ENV}=stock "
                         f"(was MAXIM_TF_GELU=fused MAXIM_TF_CONV=native) or {GRAPH_FORM_ENV}=avx2 "
                         f"(was sigmoid, rows), or pass graph_form= to MAXIM / Restorer")
    setting = os.environ.get(GRAPH_FORM_ENV, "").strip().lower() or "auto"
    if setting not in GRAPH_FORM_SETTINGS:
        raise ValueError(f"{GRAPH_FORM_ENV} must be one of {', '.join(GRAPH_FORM_SETTINGS)}. "
                         f"Received: {setting!r}")
    return setting if setting != "auto" else choose_graph_form(*machine_facts())


def resolve_graph_form(setting="auto"):
    """The form ``setting`` stands for: itself, or for ``"auto"`` :func:`default_graph_form`."""
    return check_graph_form(setting) if setting != "auto" else default_graph_form()


_SCOPE = threading.local()


@contextlib.contextmanager
def graph_form_scope(setting):
    """Trace in the graph form ``setting`` inside the ``with`` block (this thread only).

    ``"auto"`` changes nothing. Inside a scope that already set a form, a nested
    scope keeps it: the code that traces decides, not the model it traces (a
    :class:`~maxim_tf.MAXIM` enters a scope of its own ``graph_form`` in every call;
    the exporters' :func:`portable_graph` must win over it).

    Example:
        >>> with graph_form_scope("stock"):
        ...     concrete = tf.function(model).get_concrete_function(spec)
    """
    check_graph_form(setting)
    outer = getattr(_SCOPE, "form", None)
    if setting == "auto" or outer is not None:
        yield
        return
    _SCOPE.form = setting
    try:
        yield
    finally:
        _SCOPE.form = outer


def active_graph_form():
    """The graph form traces write here and now: the outermost :func:`graph_form_scope`,
    else :func:`default_graph_form`. One of :data:`GRAPH_FORMS`:

    * ``"stock"``: TensorFlow's own forms, which Grappler fuses into oneDNN / cuDNN
      kernels: GELU as ``tf.nn.gelu(approximate=True)`` (folded into the preceding
      matmul as oneDNN's ``gelu_tanh`` post-op) and every convolution one ``Conv2D``.
    * ``"avx2"``: for x86 CPUs without AVX-512 running oneDNN (:func:`choose_graph_form`),
      float32 only (other dtypes keep the stock form). GELU is written
      ``y * sigmoid(y * (2a + 2ab y²))``, equal up to float rounding (over [-16, 16] at
      most 3.7e-7 from the float64 formula, ``tf.nn.gelu`` 9.4e-7), a few cheap
      elementwise passes after a plain fused matmul: oneDNN's fused GELU there uses
      vector gathers for its tanh (on a 2-vCPU AMD Zen 3 a 65536x32 @ 32x64 matmul took
      2.4 ms plain, 11.6 ms with the fused GELU, 3.7 ms with a fused sigmoid). A stride-1
      k x k convolution (k odd, > 1) with at least ``ROWS_MIN_CHANNELS`` input channels is
      written as k matmuls, one per kernel row, over the k column shifts of the padded
      input concatenated on channels (:func:`conv_rows`): oneDNN runs NHWC convolutions
      there as im2col + GEMM, slow from about 96 channels (on the same Zen 3, 3x3
      convolutions of 128 channels took 23.1 / 99 ms at 64² / 128² natively and
      13.8 / 47 ms as rows; 96 channels 1.6-1.9x; 64 or fewer 0.7-0.8x, hence the
      threshold).
    * ``"portable"``: ops every converter understands (TFLite builtins, ONNX); see
      :func:`portable_graph`.
    """
    form = getattr(_SCOPE, "form", None)
    return form if form is not None else default_graph_form()


def portable_graph():
    """Trace MAXIM with ops every converter understands (TFLite builtins, ONNX):
    ``graph_form_scope("portable")``.

    The layer norm, 4-D Dense and the upsampling transposed convolution change
    form (see the module docstring); numerics are the same.

    Example:
        >>> with portable_graph():
        ...     concrete = tf.function(model).get_concrete_function(spec)
    """
    return graph_form_scope("portable")


def is_portable():
    """True where traces write the portable form (inside :func:`portable_graph`)."""
    return active_graph_form() == "portable"


def conv_rows(x, kernel, bias=None):
    """``conv2d(x, kernel, stride 1, "SAME") [+ bias]`` for an odd k x k kernel, as k
    matmuls of ``[pixels, k * C_in] @ [k * C_in, C_out]`` (the ``"avx2"`` graph form, see
    :func:`active_graph_form`);
    returns ``[pixels, C_out]`` rows (the caller applies the activation and reshapes)."""
    kh, kw, c, co = kernel.shape
    n, h, w, _ = partition.dims(x)
    ph, pw = kh // 2, kw // 2
    padded = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
    columns = tf.concat([padded[:, :, j:j + w] for j in range(kw)], -1)  # n, h + 2ph, w, kw c
    y = None
    for i in range(kh):
        part = tf.matmul(tf.reshape(columns[:, i:i + h], [-1, kw * c]),
                         tf.reshape(kernel[i], [kw * c, co]))
        if y is None:
            y = tf.nn.bias_add(part, bias) if bias is not None else part
        else:
            y = part + y  # the Add rides on the matmul
    return y


def gelu(y):
    """GELU, tanh approximation (Flax ``nn.gelu``'s default): ``tf.nn.gelu``, or in the
    ``"avx2"`` graph form on float32 the same function written with a sigmoid (see
    :func:`active_graph_form`)."""
    if y.dtype == tf.float32 and active_graph_form() == "avx2":
        return y * tf.sigmoid(y * (2 * _GELU_A + (2 * _GELU_A * _GELU_B) * tf.square(y)))
    return tf.nn.gelu(y, approximate=True)


def activate(y, activation, slope=0.2):
    """``activation(y)`` for the activations MAXIM uses.

    Args:
        y: tensor.
        activation: None, ``"gelu"`` (the tanh approximation, Flax ``nn.gelu``'s
            default; see :func:`gelu` for the form it takes) or ``"leaky_relu"``.
        slope: negative slope of ``"leaky_relu"``.
    """
    if activation is None:
        return y
    if activation == "gelu":
        return gelu(y)
    if activation == "leaky_relu":
        return tf.nn.leaky_relu(y, alpha=slope)
    raise ValueError(f"Unknown activation {activation!r}; expected one of {ACTIVATIONS}")


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}")
    return activation


def _dims(x, channels):
    """The shape of ``x`` with its last axis replaced by ``channels``."""
    return partition.dims(x)[:-1] + [channels]


class Dense(keras.layers.Dense):
    """``keras.layers.Dense`` over the last axis, written as one fused 2-D matmul.

    Args:
        units: output channels.
        activation: None, ``"gelu"`` (tanh approximation) or ``"leaky_relu"``,
            applied inside the fused matmul.
        dropout_rate: dropout applied to the output in training (the official
            blocks' ``Dropout`` after their output projections).
        **kwargs: the other arguments of ``keras.layers.Dense`` (``use_bias``,
            initialisers, ``name``, ``dtype``).

    Call arguments:
        inputs: a tensor of rank >= 2 (channels last), or a list of tensors that
            stand for their concatenation along the channels.
        residual: optional tensor of the output's shape: returns
            ``residual + output``.
        split: return the output split into this many equal channel groups,
            each computed by its own matmul.
        training: enables dropout.
    """

    def __init__(self, units, activation=None, dropout_rate=0.0, **kwargs):
        super().__init__(units, activation=None, **kwargs)
        self.fused_activation = _check_activation(activation)
        self.dropout_rate = float(dropout_rate)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape):
        if isinstance(input_shape, list):  # a list of shapes: their concatenation
            input_shape = tuple(input_shape[0][:-1]) + (sum(s[-1] for s in input_shape),)
        super().build(input_shape)
        self.input_spec = None  # lists of inputs and any rank are accepted

    def call(self, inputs, residual=None, split=1, training=None):
        dropout = bool(training) and self.dropout_rate > 0
        if dropout:
            y = self._matmul(inputs, 0, self.units)
            y = self.dropout(y, training=training)
            if residual is not None:
                y = y + residual
            return tf.split(y, split, axis=-1) if split > 1 else y
        if split > 1:
            if residual is not None:
                raise ValueError("Dense: `residual` and `split` cannot be combined")
            step = self.units // split
            return [self._matmul(inputs, i * step, (i + 1) * step) for i in range(split)]
        return self._matmul(inputs, 0, self.units, residual)

    def _matmul(self, inputs, start, stop, residual=None):
        """``activation(concat(inputs) @ kernel[:, start:stop] + bias[start:stop] [+ residual])``."""
        parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        dtype = parts[0].dtype
        kernel = tf.cast(self.kernel, dtype)
        bias = tf.cast(self.bias, dtype) if self.use_bias else None
        if (start, stop) != (0, self.units):
            kernel = kernel[:, start:stop]
            bias = bias[start:stop] if bias is not None else None
        if residual is not None and self.fused_activation is not None:
            raise ValueError("Dense: `residual` is added after the output, not before an activation")
        # concat([u, v]) @ K = u @ K[:cu] + v @ K[cu:]: the last row block takes the
        # bias and the residual, each earlier one adds onto it (fused Add epilogues).
        offsets = [0]
        for p in parts:
            offsets.append(offsets[-1] + p.shape[-1])
        if is_portable() and all(p.shape.rank == 4 for p in parts):
            # A 1x1 CONV_2D in TFLite: no reshape whose shape depends on the input size
            # (XNNPACK leaves those to LiteRT, splitting a dynamic-size graph).
            y = residual
            for i in reversed(range(len(parts))):
                rows = kernel if len(parts) == 1 else kernel[offsets[i]:offsets[i + 1]]
                out = tf.nn.conv2d(parts[i], tf.reshape(rows, [1, 1, -1, stop - start]), 1, "VALID")
                if bias is not None:
                    out = tf.nn.bias_add(out, bias)
                    bias = None
                y = out if y is None else out + y
            return activate(y, self.fused_activation)
        y = residual
        for i in reversed(range(len(parts))):
            x = parts[i]
            rows = kernel if len(parts) == 1 else kernel[offsets[i]:offsets[i + 1]]
            out = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), rows)
            if bias is not None:
                out = tf.nn.bias_add(out, bias)
                bias = None
            if y is not None:
                out = out + tf.reshape(y, [-1, stop - start])
            y = out
        y = activate(y, self.fused_activation)
        return tf.reshape(y, _dims(parts[0], stop - start))

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(activation=self.fused_activation, dropout_rate=self.dropout_rate)
        return config


class SpatialDense(keras.layers.Dense):
    """A Dense that mixes pixel positions, not channels: the spatial projection of
    the gating units.

    ``axis="block"`` mixes the ``fh * fw`` pixels inside each block of a
    :func:`~maxim_tf.partition.block_partition` (official ``BlockGatingUnit``, local);
    ``axis="grid"`` mixes the ``gh * gw`` grid cells of a
    :func:`~maxim_tf.partition.grid_partition` (``GridGatingUnit``, global, dilated).
    The same ``[size[0] * size[1]]²`` kernel and bias apply to every channel.

    Args:
        axis: ``"block"`` or ``"grid"``.
        size: ``(fh, fw)`` block size or ``(gh, gw)`` grid size.
        **kwargs: the other arguments of ``keras.layers.Dense`` except ``units``
            and ``activation`` (``use_bias``, initialisers, ``name``, ``dtype``).

    Call arguments:
        inputs: ``[N, H, W, C]`` with H, W divisible by ``size`` (block) or
            ``size`` dividing them (grid).
        offset: constant added to the output (the gating unit's ``+ 1``),
            folded into the bias.
    """

    def __init__(self, axis, size, **kwargs):
        if axis not in ("block", "grid"):
            raise ValueError(f"axis must be 'block' or 'grid'. Received: axis={axis!r}")
        size = pair(size)
        super().__init__(size[0] * size[1], **kwargs)
        self.axis, self.size = axis, size

    def build(self, input_shape=None):
        super().build((None, self.units))
        self.input_spec = None

    def call(self, inputs, offset=0.0):
        dtype = inputs.dtype
        bias = tf.cast(self.bias, dtype) if self.use_bias else None
        if offset:
            bias = bias + offset if bias is not None else tf.fill([self.units], tf.cast(offset, dtype))
        kernel = tf.cast(self.kernel, dtype)
        if not is_portable():  # positions as the middle axis: cheaper transposes
            columns = partition.position_columns(inputs, self.axis, self.size)
            y = tf.matmul(kernel, columns, transpose_a=True)
            if bias is not None:
                y = y + bias[:, None]
            return partition.position_columns_to_image(y, partition.dims(inputs), self.axis, self.size)
        split, unsplit = ((partition.block_partition, partition.block_unpartition) if self.axis == "block"
                          else (partition.grid_partition, partition.grid_unpartition))
        rows = split(inputs, self.size)  # [(other positions, channels), positions]
        y = tf.matmul(rows, kernel)  # one FULLY_CONNECTED in TFLite
        if bias is not None:
            y = tf.nn.bias_add(y, bias)
        return unsplit(y, partition.dims(inputs), self.size)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        for key in ("units", "activation"):
            config.pop(key, None)
        config.update(axis=self.axis, size=self.size)
        return config


class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` ("same" padding) as ``Conv2D -> BiasAdd -> activation``,
    which Grappler fuses into one op.

    Args:
        filters: output channels.
        kernel_size: int or pair.
        activation: None or ``"leaky_relu"`` (or ``"gelu"``), fused.
        negative_slope: slope of ``"leaky_relu"``.
        **kwargs: the other arguments of ``keras.layers.Conv2D`` (``strides``,
            ``use_bias``, initialisers, ``name``, ``dtype``); padding is "same".
    """

    def __init__(self, filters, kernel_size, activation=None, negative_slope=0.2, **kwargs):
        kwargs["padding"] = "same"
        super().__init__(filters, kernel_size, activation=None, **kwargs)
        self.fused_activation = _check_activation(activation)
        self.negative_slope = float(negative_slope)

    def call(self, inputs):
        kernel = tf.cast(self.kernel, inputs.dtype)
        kh, kw = self.kernel_size
        if (kh == kw and kh % 2 and kh > 1 and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1) and inputs.dtype == tf.float32
                and inputs.shape[-1] >= ROWS_MIN_CHANNELS and active_graph_form() == "avx2"):
            y = conv_rows(inputs, kernel, tf.cast(self.bias, inputs.dtype) if self.use_bias else None)
            y = activate(y, self.fused_activation, self.negative_slope)
            return tf.reshape(y, _dims(inputs, self.filters))
        y = tf.nn.conv2d(inputs, kernel, strides=self.strides,
                         padding="SAME", dilations=self.dilation_rate)
        if self.use_bias:
            y = tf.nn.bias_add(y, tf.cast(self.bias, inputs.dtype))
        return activate(y, self.fused_activation, self.negative_slope)

    def get_config(self):
        config = super().get_config()
        config.update(activation=self.fused_activation, negative_slope=self.negative_slope)
        return config


class LayerNormalization(keras.layers.LayerNormalization):
    """``keras.layers.LayerNormalization`` over the last axis, written (for float32
    and bfloat16 outside :func:`portable_graph`) as the pattern Grappler fuses into
    one ``_MklLayerNorm`` pass (see the module docstring; statistics in float32
    either way); otherwise the Keras layer.

    Args:
        epsilon: added to the variance (MAXIM uses Flax's 1e-6).
        **kwargs: the other arguments of ``keras.layers.LayerNormalization``.
    """

    def call(self, inputs):
        c = inputs.shape[-1]
        flat = tf.reshape(inputs, [-1, c])
        # With a static pixel count Grappler constant-folds the Fill ops and the
        # pattern no longer matches (an unfused training-mode batch norm is
        # slower than Keras' layer norm): only traces with unknown H, W fuse.
        if (is_portable() or inputs.dtype not in (tf.float32, tf.bfloat16)
                or not (self.scale and self.center)
                or getattr(self, "rms_scaling", False) or flat.shape[0] is not None):
            return super().call(inputs)
        flat_shape = tf.shape(flat)
        pixels = flat_shape[0:1]
        # The raw op: the tf.nn wrapper raises epsilon to cuDNN's old 1.001e-5.
        # On bfloat16 inputs (mixed_bfloat16) FusedBatchNormV3 computes the mean
        # and variance in float32 (its U type), and so does the fused oneDNN
        # layer norm it becomes; Keras' own layer instead casts the whole tensor
        # to float32 and back, which no pass fuses (5 memory passes per norm).
        empty = tf.constant([], tf.float32)
        y = tf.raw_ops.FusedBatchNormV3(
            x=tf.reshape(flat, tf.concat([[1], pixels, [c, 1]], 0)),
            scale=tf.fill(pixels, 1.0), offset=tf.fill(pixels, 0.0), mean=empty, variance=empty,
            epsilon=float(self.epsilon), data_format="NCHW", is_training=True).y
        gamma = tf.cast(self.gamma, inputs.dtype)
        beta = tf.cast(self.beta, inputs.dtype)
        y = tf.reshape(y, flat_shape) * gamma + beta
        return tf.cast(tf.reshape(y, _dims(inputs, c)), self.compute_dtype)


class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` (kernel 2, stride 2, "same" padding: MAXIM's
    decoder upsampling); inside :func:`portable_graph` written as a 1x1 convolution
    to 4x the channels and a depth-to-space.

    The two are the same map: with kernel 2 and stride 2 the output pixel
    ``(2i + a, 2j + b)`` is ``x[i, j] @ kernel[a, b]`` (no overlap), and depth-to-space
    puts channel ``(2a + b) * filters + o`` of pixel ``(i, j)`` there. The transposed
    convolution needs an output-shape tensor computed from the input size, so in a
    dynamic-size TFLite file XNNPACK leaves it to LiteRT's builtin kernel (slow in
    int8); the 1x1 convolution and ``DEPTH_TO_SPACE`` have static parameters.

    Args:
        filters: output channels.
        **kwargs: the other arguments of ``keras.layers.Conv2DTranspose`` with
            ``kernel_size=2``, ``strides=2``, ``padding="same"`` (the defaults here).
    """

    def __init__(self, filters, kernel_size=2, strides=2, padding="same", **kwargs):
        if pair(kernel_size) != (2, 2) or pair(strides) != (2, 2) or padding != "same":
            raise ValueError(f"Conv2DTranspose supports kernel_size=2, strides=2, padding='same' only. "
                             f"Received: kernel_size={kernel_size}, strides={strides}, padding={padding!r}")
        super().__init__(filters, 2, strides=2, padding="same", **kwargs)

    def call(self, inputs):
        if not is_portable():
            return super().call(inputs)
        kernel = tf.cast(self.kernel, inputs.dtype)  # [a, b, filters, in]
        columns = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [1, 1, -1, 4 * self.filters])
        y = tf.nn.conv2d(inputs, columns, 1, "VALID")
        if self.use_bias:
            y = tf.nn.bias_add(y, tf.tile(tf.cast(self.bias, inputs.dtype), [4]))
        return tf.nn.depth_to_space(y, 2)


for _cls in (Dense, SpatialDense, Conv2D, LayerNormalization, Conv2DTranspose):
    keras.saving.register_keras_serializable(package="maxim_tf.fused")(_cls)
