"""Keras 3 layers of MAXIM (Tu et al., "MAXIM: Multi-Axis MLP for Image
Processing", CVPR 2022), one class per block of the paper.

Where each block of the paper lives (Fig. 2 = the MAXIM backbone, Fig. 3 = the
multi-axis gMLP block and the cross-gating block):

==============================  ===========================================
paper                           here
==============================  ===========================================
multi-axis gMLP block (Fig. 3a) :class:`MultiAxisGmlpBlock`, built from two
                                :class:`GmlpLayer` (``mode="grid"`` /
                                ``"block"``) and their :class:`GatingUnit`
block / grid partition          :func:`maxim_tf.partition.block_partition`,
                                :func:`maxim_tf.partition.grid_partition`
cross-gating block (Fig. 3b)    :class:`CrossGatingBlock` with its
                                :class:`SpatialGatingWeights`
RCAB / RDCAB                    :class:`RCAB`, :class:`RDCAB` (with
                                :class:`ChannelAttention`, :class:`MlpBlock`)
encoder / decoder / bottleneck  :class:`UNetEncoderBlock`,
                                :class:`UNetDecoderBlock`,
                                :class:`BottleneckBlock`
SAM (between stages)            :class:`SAM`
multi-scale in/out (Fig. 2)     :class:`UpSampleRatio`,
                                :class:`NearestDownsample`,
                                :mod:`maxim_tf.model`
==============================  ===========================================

Each ``call`` is the block's reference form, line by line as in the official
Flax code. The per-pixel sub-layers are the fusion-friendly ``Dense``,
``Conv2D`` and ``LayerNormalization`` of :mod:`maxim_tf.fused` (the reason this
port is faster than the official code on CPU); their few fused epilogues read
as call arguments: ``dense(x, residual=r)`` is ``r + dense(x)``,
``dense([u, v])`` is ``dense(concatenate([u, v]))`` and ``dense(x, split=2)``
is ``split(dense(x), 2)``.

Sub-layers carry the names of the official Flax modules (``LayerNorm_in``,
``in_project``, ``GridGmlpLayer``, ``Dense_0`` ...), so a Keras variable path
such as ``stage_0_encoder_block_0/SplitHeadMultiAxisGmlpLayer_0/in_project/kernel``
is the official parameter path; the checkpoint converter is a name lookup.
Numerics follow Flax: LayerNorm epsilon 1e-6, tanh-approximated GELU.
"""

import keras
import tensorflow as tf
from keras import ops

from maxim_tf import fused, resize
from maxim_tf._utils import pair

LN_EPS = 1e-6  # Flax nn.LayerNorm default (Keras defaults to 1e-3).


def _scaled(shape, factor, channels):
    """NHWC shape with H, W multiplied by ``factor`` (None stays None)."""
    def f(v):
        return None if v is None else int(v * factor)
    return (shape[0], f(shape[1]), f(shape[2]), channels)


class _Block(keras.layers.Layer):
    """Base: stores constructor arguments (``get_config`` returns them) and
    makes sub-layers with this layer's dtype policy."""

    def _store(self, **config):
        """Keep constructor arguments as attributes and as the layer config."""
        self._config_keys = tuple(config)
        for key, value in config.items():
            setattr(self, key, value)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config

    # Initialisers follow the official Flax modules (for training from scratch):
    # gMLP projections N(0, 0.02), other Dense/Conv kernels LeCun normal.
    def _dense(self, units, name, activation=None, dropout=False, init="normal"):
        """A per-pixel Dense; ``dropout=True`` gives it this block's dropout rate."""
        kernel_init = (keras.initializers.RandomNormal(stddev=2e-2) if init == "normal"
                       else "lecun_normal")
        return fused.Dense(
            units, activation=activation, dropout_rate=self.dropout_rate if dropout else 0.0,
            use_bias=self.use_bias, kernel_initializer=kernel_init, name=name,
            dtype=self.dtype_policy)

    def _spatial_dense(self, axis, size, name, bias_init="zeros"):
        return fused.SpatialDense(
            axis, size, use_bias=self.use_bias,
            kernel_initializer=keras.initializers.RandomNormal(stddev=2e-2),
            bias_initializer=bias_init, name=name, dtype=self.dtype_policy)

    def _conv(self, filters, kernel_size, name, strides=1, activation=None, negative_slope=0.2):
        return fused.Conv2D(
            filters, kernel_size, activation=activation, negative_slope=negative_slope,
            strides=strides, use_bias=self.use_bias, kernel_initializer="lecun_normal",
            name=name, dtype=self.dtype_policy)

    def _conv_up(self, filters, name):
        return fused.Conv2DTranspose(
            filters, use_bias=self.use_bias,
            kernel_initializer="lecun_normal", name=name, dtype=self.dtype_policy,
        )

    def _norm(self, name):
        return fused.LayerNormalization(epsilon=LN_EPS, name=name, dtype=self.dtype_policy)


class MlpBlock(_Block):
    """Channel MLP: Dense -> GELU -> Dropout -> Dense (official ``MlpBlock``,
    RDCAB's channel mixing).

    Args:
        mlp_dim: hidden channels.
        dropout_rate: dropout after the GELU (training only). Defaults to 0.
        use_bias: whether the Dense layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, mlp_dim, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(mlp_dim=mlp_dim, dropout_rate=dropout_rate, use_bias=use_bias)
        self.dense_0 = self._dense(mlp_dim, "Dense_0", activation="gelu", dropout=True)
        self.dense_1 = None

    def build(self, input_shape):
        self.dense_1 = self._dense(input_shape[-1], "Dense_1")
        self.dense_0.build(input_shape)
        self.dense_1.build(input_shape[:-1] + (self.mlp_dim,))

    def call(self, x, training=None):
        x = self.dense_0(x, training=training)  # Dense + GELU + dropout
        return self.dense_1(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def _spatial_mean(x):
    """Mean over H and W of ``[N, H, W, C]``, kept as ``[N, 1, 1, C]`` in x's dtype.

    ``keras.ops.mean`` casts a bfloat16 tensor to float32 before reducing (a full
    copy of the activation); TensorFlow's reduction accumulates bfloat16 in
    float32 itself, so only the result is rounded.
    """
    return tf.reduce_mean(x, axis=(1, 2), keepdims=True)


class ChannelAttention(_Block):
    """Squeeze-and-excitation channel attention (official ``CALayer``):
    ``x * sigmoid(conv(relu(conv(mean(x)))))`` with 1x1 convolutions.

    Args:
        features: channels of the input and output.
        reduction: channel reduction of the squeeze. Defaults to 4.
        use_bias: whether the convolutions have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, reduction=4, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(features=features, reduction=reduction, use_bias=use_bias)
        self.conv_0 = self._conv(features // reduction, 1, "Conv_0")
        self.conv_1 = self._conv(features, 1, "Conv_1")

    def build(self, input_shape):
        pooled = (input_shape[0], 1, 1, input_shape[-1])
        self.conv_0.build(pooled)
        self.conv_1.build((input_shape[0], 1, 1, self.features // self.reduction))

    def call(self, x):
        y = _spatial_mean(x)
        y = ops.relu(self.conv_0(y))
        y = ops.sigmoid(self.conv_1(y))
        return x * y

    def compute_output_shape(self, input_shape):
        return input_shape


class RCAB(_Block):
    """Residual channel attention block (official ``RCAB``):
    ``x + CA(conv3x3(leaky_relu(conv3x3(LayerNorm(x)))))``.

    Args:
        features: channels of the input and output.
        reduction: channel reduction of the attention. Defaults to 4.
        lrelu_slope: negative slope of the leaky ReLU. Defaults to 0.2.
        use_bias: whether the convolutions have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, reduction=4, lrelu_slope=0.2, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, reduction=reduction, lrelu_slope=lrelu_slope, use_bias=use_bias)
        self.layer_norm = self._norm("LayerNorm")
        self.conv1 = self._conv(features, 3, "conv1", activation="leaky_relu",
                                negative_slope=lrelu_slope)
        self.conv2 = self._conv(features, 3, "conv2")
        self.channel_attention = ChannelAttention(
            features, reduction, use_bias, name="channel_attention", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.layer_norm.build(input_shape)
        self.conv1.build(input_shape)
        feat = input_shape[:-1] + (self.features,)
        self.conv2.build(feat)
        self.channel_attention.build(feat)

    def call(self, x):
        shortcut = x
        x = self.layer_norm(x)
        x = self.conv1(x)  # conv + leaky ReLU
        x = self.conv2(x)
        x = self.channel_attention(x)
        return x + shortcut

    def compute_output_shape(self, input_shape):
        return input_shape


class RDCAB(_Block):
    """Residual dense channel attention block of the bottleneck (official
    ``RDCAB``): ``x + CA(MLP(LayerNorm(x)))``.

    Args:
        features: channels of the input and output.
        reduction: channel reduction of the attention. Defaults to 16.
        dropout_rate: dropout inside the channel MLP. Defaults to 0.
        use_bias: whether the sub-layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, reduction=16, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, reduction=reduction, dropout_rate=dropout_rate, use_bias=use_bias)
        self.layer_norm = self._norm("LayerNorm")
        self.channel_mixing = MlpBlock(
            features, dropout_rate, use_bias, name="channel_mixing", dtype=self.dtype_policy
        )
        self.channel_attention = ChannelAttention(
            features, reduction, use_bias, name="channel_attention", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.layer_norm.build(input_shape)
        self.channel_mixing.build(input_shape)
        self.channel_attention.build(input_shape)

    def call(self, x, training=None):
        shortcut = x
        x = self.layer_norm(x)
        x = self.channel_mixing(x, training=training)
        x = self.channel_attention(x)
        return x + shortcut

    def compute_output_shape(self, input_shape):
        return input_shape


class GatingUnit(_Block):
    """Spatial gating unit of gMLP over the grid axis or the block axis
    (official ``GridGatingUnit`` / ``BlockGatingUnit``).

    Splits the channels into ``(u, v)``, normalises ``v``, mixes it spatially
    with a Dense over the grid cells (``mode="grid"``, see
    :func:`maxim_tf.partition.grid_partition`) or over the pixels of each block
    (``mode="block"``, :func:`maxim_tf.partition.block_partition`), and returns
    ``u * (v + 1)``. Output channels: half the input's.

    Args:
        mode: ``"grid"`` or ``"block"``.
        size: grid size ``(gh, gw)`` or block size ``(fh, fw)`` (int or pair).
        use_bias: whether the spatial Dense has a bias. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, mode, size, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(mode=mode, size=pair(size), use_bias=use_bias)
        if mode not in ("grid", "block"):
            raise ValueError(f"mode must be 'grid' or 'block'. Received: mode={mode!r}")
        self.intermediate_layernorm = self._norm("intermediate_layernorm")
        self.dense_0 = self._spatial_dense(mode, self.size, "Dense_0")

    def build(self, input_shape):
        c = input_shape[-1] // 2
        self.intermediate_layernorm.build(input_shape[:-1] + (c,))
        self.dense_0.build(input_shape[:-1] + (c,))

    def call(self, x):
        u, v = ops.split(x, 2, axis=-1)
        return self.gate(u, v)

    def gate(self, u, v):
        """``u * (Dense(LayerNorm(v)) + 1)``: the unit for the two halves given apart
        (how :class:`GmlpLayer` calls it, without concatenating them first)."""
        v = self.intermediate_layernorm(v)
        v = self.dense_0(v, offset=1.0)  # spatial Dense, "+ 1" folded into its bias
        return u * v

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (input_shape[-1] // 2,)


class GmlpLayer(_Block):
    """Residual gMLP over one axis: grid gMLP (global) or block gMLP (local)
    (official ``GridGmlpLayer`` / ``BlockGmlpLayer``):
    ``x + Dropout(Dense(GatingUnit(GELU(Dense(LayerNorm(x))))))``.

    Args:
        mode: ``"grid"`` (``size`` = grid size) or ``"block"`` (block size).
        size: int or pair.
        factor: hidden expansion of the input projection. Defaults to 2.
        dropout_rate: dropout before the residual add. Defaults to 0.
        use_bias: whether the sub-layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, mode, size, factor=2, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            mode=mode, size=pair(size), factor=factor, dropout_rate=dropout_rate,
            use_bias=use_bias)
        unit = "GridGatingUnit" if mode == "grid" else "BlockGatingUnit"
        self.layer_norm = self._norm("LayerNorm")
        self.gating = GatingUnit(mode, self.size, use_bias, name=unit, dtype=self.dtype_policy)
        self.in_project = None
        self.out_project = None

    def build(self, input_shape):
        c = input_shape[-1]
        self.in_project = self._dense(c * self.factor, "in_project", activation="gelu")
        self.out_project = self._dense(c, "out_project", dropout=True)
        self.layer_norm.build(input_shape)
        self.in_project.build(input_shape)
        hidden = input_shape[:-1] + (c * self.factor,)
        self.gating.build(hidden)
        self.out_project.build(input_shape[:-1] + (c * self.factor // 2,))

    def call(self, x, training=None):
        # LayerNorm and the projections act per pixel, on the NHWC tensor; only
        # the gating unit's spatial Dense sees the grid/block partition.
        shortcut = x
        x = self.layer_norm(x)
        u, v = self.in_project(x, split=2)  # Dense + GELU, split in halves
        x = self.gating.gate(u, v)
        return self.out_project(x, residual=shortcut, training=training)  # + dropout

    def compute_output_shape(self, input_shape):
        return input_shape


class MultiAxisGmlpBlock(_Block):
    """Multi-axis gated MLP block (paper Fig. 3a; official
    ``ResidualSplitHeadMultiAxisGmlpLayer``): LayerNorm, Dense(C*f) + GELU,
    split the channels in two heads, one through the grid gMLP (global,
    dilated) and one through the block gMLP (local), concatenate, Dense(C),
    dropout, residual.

    Args:
        block_size: ``(fh, fw)`` of the block gMLP (int or pair).
        grid_size: ``(gh, gw)`` of the grid gMLP (int or pair).
        block_gmlp_factor: hidden expansion inside the block gMLP. Defaults to 2.
        grid_gmlp_factor: hidden expansion inside the grid gMLP. Defaults to 2.
        input_proj_factor: expansion of the input projection. Defaults to 2.
        dropout_rate: dropout before the residual adds. Defaults to 0.
        use_bias: whether the sub-layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, block_size, grid_size, block_gmlp_factor=2, grid_gmlp_factor=2,
                 input_proj_factor=2, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            block_size=pair(block_size), grid_size=pair(grid_size),
            block_gmlp_factor=block_gmlp_factor, grid_gmlp_factor=grid_gmlp_factor,
            input_proj_factor=input_proj_factor, dropout_rate=dropout_rate, use_bias=use_bias)
        self.layer_norm_in = self._norm("LayerNorm_in")
        self.grid_gmlp = GmlpLayer("grid", self.grid_size, factor=grid_gmlp_factor,
                                   dropout_rate=dropout_rate, use_bias=use_bias,
                                   name="GridGmlpLayer", dtype=self.dtype_policy)
        self.block_gmlp = GmlpLayer("block", self.block_size, factor=block_gmlp_factor,
                                    dropout_rate=dropout_rate, use_bias=use_bias,
                                    name="BlockGmlpLayer", dtype=self.dtype_policy)
        self.in_project = None
        self.out_project = None

    def build(self, input_shape):
        c = input_shape[-1]
        hidden = c * self.input_proj_factor
        self.in_project = self._dense(hidden, "in_project", activation="gelu")
        self.out_project = self._dense(c, "out_project", dropout=True)
        self.layer_norm_in.build(input_shape)
        self.in_project.build(input_shape)
        half = input_shape[:-1] + (hidden // 2,)
        self.grid_gmlp.build(half)
        self.block_gmlp.build(half)
        self.out_project.build(input_shape[:-1] + (hidden,))

    def call(self, x, training=None):
        shortcut = x
        x = self.layer_norm_in(x)
        u, v = self.in_project(x, split=2)  # Dense + GELU, split in two heads
        u = self.grid_gmlp(u, training=training)  # global mixing
        v = self.block_gmlp(v, training=training)  # local mixing
        # Dense(concat([u, v])) + dropout + shortcut
        return self.out_project([u, v], residual=shortcut, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape


class BottleneckBlock(_Block):
    """Bottleneck of the UNet (official ``BottleneckBlock``): 1x1 input
    projection, ``num_groups`` x (multi-axis gMLP block + RDCAB), long skip.

    Args:
        features: output channels.
        block_size: block size of the multi-axis gMLP blocks.
        grid_size: grid size of the multi-axis gMLP blocks.
        num_groups: number of (gMLP block, RDCAB) pairs. Defaults to 1.
        block_gmlp_factor, grid_gmlp_factor, input_proj_factor: expansions of
            the multi-axis gMLP blocks. Default to 2.
        channels_reduction: channel reduction of the RDCABs. Defaults to 4.
        dropout_rate: dropout inside the blocks. Defaults to 0.
        use_bias: whether the sub-layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, block_size, grid_size, num_groups=1, block_gmlp_factor=2,
                 grid_gmlp_factor=2, input_proj_factor=2, channels_reduction=4,
                 dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=pair(block_size), grid_size=pair(grid_size),
            num_groups=num_groups, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
            channels_reduction=channels_reduction, dropout_rate=dropout_rate, use_bias=use_bias)
        self.input_proj = self._conv(features, 1, "input_proj")
        self.mabs, self.rdcabs = [], []
        for i in range(num_groups):
            self.mabs.append(MultiAxisGmlpBlock(
                self.block_size, self.grid_size, block_gmlp_factor=block_gmlp_factor,
                grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
                dropout_rate=dropout_rate, use_bias=use_bias,
                name=f"SplitHeadMultiAxisGmlpLayer_{i}", dtype=self.dtype_policy))
            # "channel_attention_block_1_{i}" here but "channel_attention_block_1{i}" (no
            # underscore) in UNetEncoderBlock: both are the official Flax module names,
            # spelled so in the official code (maxim/models/maxim.py: f"..._1_{i}" in
            # BottleneckBlock, f"..._1{i}" in UNetEncoderBlock), hence in the parameter
            # paths of every released checkpoint (e.g. stage_0_global_block_0/
            # channel_attention_block_1_0/ and stage_0_encoder_block_0/
            # channel_attention_block_10/). The converter maps variables by name
            # (conversion/checkpoint.py), so both spellings must stay as they are.
            self.rdcabs.append(RDCAB(
                features, reduction=channels_reduction, dropout_rate=dropout_rate,
                use_bias=use_bias, name=f"channel_attention_block_1_{i}",
                dtype=self.dtype_policy))

    def build(self, input_shape):
        self.input_proj.build(input_shape)
        feat = input_shape[:-1] + (self.features,)
        for mab, rdcab in zip(self.mabs, self.rdcabs):
            mab.build(feat)
            rdcab.build(feat)

    def call(self, x, training=None):
        x = self.input_proj(x)
        shortcut_long = x
        for mab, rdcab in zip(self.mabs, self.rdcabs):
            x = mab(x, training=training)
            x = rdcab(x, training=training)
        return x + shortcut_long

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.features,)


class SpatialGatingWeights(_Block):
    """Gating weights of the cross-gating block (official
    ``GetSpatialGatingWeights``): LayerNorm, Dense(C*f) + GELU, split; one half
    mixed over the grid cells (``Dense_0``), the other over the pixels of each
    block (``Dense_1``); concatenate; Dense(C); dropout.

    Args:
        features: channels of the input and output.
        block_size: block size ``(fh, fw)`` (int or pair).
        grid_size: grid size ``(gh, gw)`` (int or pair).
        input_proj_factor: expansion of the input projection. Defaults to 2.
        dropout_rate: output dropout. Defaults to 0.
        use_bias: whether the sub-layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, block_size, grid_size, input_proj_factor=2,
                 dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=pair(block_size), grid_size=pair(grid_size),
            input_proj_factor=input_proj_factor, dropout_rate=dropout_rate, use_bias=use_bias)
        self.layer_norm_in = self._norm("LayerNorm_in")
        self.in_project = self._dense(features * input_proj_factor, "in_project",
                                      activation="gelu", init="lecun")
        self.dense_grid = self._spatial_dense("grid", self.grid_size, "Dense_0", bias_init="ones")
        self.dense_block = self._spatial_dense("block", self.block_size, "Dense_1", bias_init="ones")
        self.out_project = self._dense(features, "out_project", dropout=True, init="lecun")

    def build(self, input_shape):
        self.layer_norm_in.build(input_shape)
        self.in_project.build(input_shape)
        self.dense_grid.build(input_shape)
        self.dense_block.build(input_shape)
        self.out_project.build(input_shape[:-1] + (self.features * self.input_proj_factor,))

    def call(self, x, training=None):
        x = self.layer_norm_in(x)
        u, v = self.in_project(x, split=2)  # Dense + GELU, split in halves
        u = self.dense_grid(u)  # mix across grid cells (global)
        v = self.dense_block(v)  # mix inside blocks (local)
        return self.out_project([u, v], training=training)  # Dense(concat) + dropout

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.features,)


class CrossGatingBlock(_Block):
    """Cross-gating block (paper Fig. 3b; official ``CrossGatingBlock``): two
    feature streams gate each other.

    ``x`` and ``y`` are projected by 1x1 convolutions (``y`` upsampled first
    when ``upsample_y``), normalised and projected with GELU; each stream's
    :class:`SpatialGatingWeights` multiply the other stream; Dense, dropout and
    the shortcuts follow. Returns ``(x, y)``: x gated by the weights from y plus
    all shortcuts, and y gated by the weights from x.

    Args:
        features: output channels of both streams.
        block_size: block size of the gating weights (int or pair).
        grid_size: grid size of the gating weights (int or pair).
        input_proj_factor: accepted for the official signature; the gating
            weights always use 2, as the official block does. Defaults to 2.
        dropout_rate: dropout before the residual adds. Defaults to 0.
        upsample_y: upsample ``y`` x2 with a transposed convolution first.
            Defaults to True.
        use_bias: whether the sub-layers have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, block_size, grid_size, input_proj_factor=2,
                 dropout_rate=0.0, upsample_y=True, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=pair(block_size), grid_size=pair(grid_size),
            input_proj_factor=input_proj_factor, dropout_rate=dropout_rate, upsample_y=upsample_y,
            use_bias=use_bias)
        self.conv_up = self._conv_up(features, "ConvTranspose_0") if upsample_y else None
        self.conv_x = self._conv(features, 1, "Conv_0")
        self.conv_y = self._conv(features, 1, "Conv_1")
        self.layer_norm_x = self._norm("LayerNorm_x")
        self.layer_norm_y = self._norm("LayerNorm_y")
        self.in_project_x = self._dense(features, "in_project_x", activation="gelu", init="lecun")
        self.in_project_y = self._dense(features, "in_project_y", activation="gelu", init="lecun")
        # The official block builds its gating-weight modules with the default
        # input projection factor (2), whatever the model's input_proj_factor.
        self.gating_x = SpatialGatingWeights(
            features, self.block_size, self.grid_size, input_proj_factor=2,
            dropout_rate=dropout_rate, use_bias=use_bias,
            name="SplitHeadMultiAxisGating_x", dtype=self.dtype_policy)
        self.gating_y = SpatialGatingWeights(
            features, self.block_size, self.grid_size, input_proj_factor=2,
            dropout_rate=dropout_rate, use_bias=use_bias,
            name="SplitHeadMultiAxisGating_y", dtype=self.dtype_policy)
        self.out_project_x = self._dense(features, "out_project_x", dropout=True, init="lecun")
        self.out_project_y = self._dense(features, "out_project_y", dropout=True, init="lecun")

    def build(self, x_shape, y_shape):
        if self.conv_up is not None:
            self.conv_up.build(y_shape)
            y_shape = y_shape[:-1] + (self.features,)
        self.conv_x.build(x_shape)
        self.conv_y.build(y_shape)
        feat = x_shape[:-1] + (self.features,)
        for layer in (self.layer_norm_x, self.layer_norm_y, self.in_project_x, self.in_project_y,
                      self.gating_x, self.gating_y, self.out_project_x, self.out_project_y):
            layer.build(feat)

    def call(self, x, y, training=None):
        if self.conv_up is not None:
            y = self.conv_up(y)
        x = self.conv_x(x)
        y = self.conv_y(y)
        shortcut_x, shortcut_y = x, y

        x = self.in_project_x(self.layer_norm_x(x))  # Dense + GELU
        gx = self.gating_x(x, training=training)
        y = self.in_project_y(self.layer_norm_y(y))
        gy = self.gating_y(y, training=training)

        # y = shortcut_y + dropout(Dense(y * gx)); x = y + shortcut_x + dropout(Dense(x * gy))
        y = self.out_project_y(y * gx, residual=shortcut_y, training=training)
        x = self.out_project_x(x * gy, residual=y + shortcut_x, training=training)
        return x, y

    def compute_output_shape(self, x_shape, y_shape):
        out = x_shape[:-1] + (self.features,)
        return out, out


class UNetEncoderBlock(_Block):
    """UNet encoder block (official ``UNetEncoderBlock``): [concatenate the
    skip] 1x1 conv, ``num_groups`` x (multi-axis gMLP block + RCAB), long skip,
    optional cross-gating with the previous stage, optional 4x4/2
    down-convolution. Returns ``(x_down, x)`` when ``downsample`` else ``x``.

    Args:
        features: output channels.
        block_size: block size of the multi-axis gMLP blocks (int or pair).
        grid_size: grid size of the multi-axis gMLP blocks (int or pair).
        num_groups: number of (gMLP block, RCAB) pairs. Defaults to 1.
        lrelu_slope: accepted for the official signature; the RCABs use 0.2,
            as the official block does. Defaults to 0.2.
        block_gmlp_factor, grid_gmlp_factor, input_proj_factor: expansions of
            the multi-axis gMLP blocks (and of the cross-gating block's input
            projection factor argument). Default to 2.
        channels_reduction: channel reduction of the RCABs. Defaults to 4.
        dropout_rate: dropout inside the blocks. Defaults to 0.
        downsample: end with the 4x4 stride-2 convolution and return
            ``(x_down, x)``. Defaults to True.
        use_global_mlp: include the multi-axis gMLP blocks (False: RCABs
            only). Defaults to True.
        use_bias: whether the sub-layers have biases. Defaults to True.
        use_cross_gating: build the cross-gating block that takes ``cross``.
            Defaults to False.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Call arguments:
        x: ``[N, H, W, C]`` features.
        skip: optional features concatenated to ``x`` first.
        cross: optional features of the previous stage (its encoder + decoder
            outputs at this level), cross-gated with ``x``.
    """

    def __init__(self, features, block_size, grid_size, num_groups=1, lrelu_slope=0.2,
                 block_gmlp_factor=2, grid_gmlp_factor=2, input_proj_factor=2,
                 channels_reduction=4, dropout_rate=0.0, downsample=True,
                 use_global_mlp=True, use_bias=True, use_cross_gating=False, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=pair(block_size), grid_size=pair(grid_size),
            num_groups=num_groups, lrelu_slope=lrelu_slope, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
            channels_reduction=channels_reduction, dropout_rate=dropout_rate,
            downsample=downsample, use_global_mlp=use_global_mlp, use_bias=use_bias,
            use_cross_gating=use_cross_gating)
        self.conv_in = self._conv(features, 1, "Conv_0")
        self.mabs, self.rcabs = [], []
        for i in range(num_groups):
            if use_global_mlp:
                self.mabs.append(MultiAxisGmlpBlock(
                    self.block_size, self.grid_size, block_gmlp_factor=block_gmlp_factor,
                    grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
                    dropout_rate=dropout_rate, use_bias=use_bias,
                    name=f"SplitHeadMultiAxisGmlpLayer_{i}", dtype=self.dtype_policy))
            # The official encoder leaves RCAB's slope at its default (0.2),
            # whatever lrelu_slope says; kept so converted checkpoints match.
            # "channel_attention_block_1{i}" without an underscore: the official Flax
            # module name (f"channel_attention_block_1{i}" in the official
            # UNetEncoderBlock, f"..._1_{i}" in its BottleneckBlock); see the comment
            # in BottleneckBlock. Checkpoint parameter paths carry it, and the converter
            # reads num_groups from it (conversion/checkpoint.py).
            self.rcabs.append(RCAB(
                features, reduction=channels_reduction, lrelu_slope=0.2, use_bias=use_bias,
                name=f"channel_attention_block_1{i}", dtype=self.dtype_policy))
        self.cross_gating = None
        if use_cross_gating:
            self.cross_gating = CrossGatingBlock(
                features, self.block_size, self.grid_size, input_proj_factor=input_proj_factor,
                dropout_rate=dropout_rate, upsample_y=False, use_bias=use_bias,
                name="cross_gating_block", dtype=self.dtype_policy)
        self.conv_down = self._conv(features, 4, "Conv_1", strides=2) if downsample else None

    def build(self, x_shape, skip_shape=None, cross_shape=None):
        c_in = x_shape[-1] + (skip_shape[-1] if skip_shape is not None else 0)
        self.conv_in.build(x_shape[:-1] + (c_in,))
        feat = x_shape[:-1] + (self.features,)
        for layer in self.mabs + self.rcabs:
            layer.build(feat)
        if self.cross_gating is not None and cross_shape is not None:
            self.cross_gating.build(feat, cross_shape)
        if self.conv_down is not None:
            self.conv_down.build(feat)

    def call(self, x, skip=None, cross=None, training=None):
        if skip is not None:
            x = ops.concatenate([x, skip], axis=-1)
        x = self.conv_in(x)
        shortcut_long = x
        for i, rcab in enumerate(self.rcabs):
            if self.use_global_mlp:
                x = self.mabs[i](x, training=training)
            x = rcab(x)
        x = x + shortcut_long
        if cross is not None:
            if self.cross_gating is None:
                raise ValueError(f"{self.name}: got `cross` but use_cross_gating=False")
            x, _ = self.cross_gating(x, cross, training=training)
        if self.conv_down is not None:
            return self.conv_down(x), x
        return x

    def compute_output_shape(self, x_shape, skip_shape=None, cross_shape=None):
        out = _scaled(x_shape, 1, self.features)
        if self.conv_down is not None:
            return _scaled(x_shape, 0.5, self.features), out
        return out


class UNetDecoderBlock(_Block):
    """UNet decoder block (official ``UNetDecoderBlock``): 2x2 stride-2
    transposed conv, then an encoder block (no downsampling) fed the bridge
    features as its skip.

    Args:
        features: output channels.
        block_size, grid_size, num_groups, lrelu_slope, block_gmlp_factor,
            grid_gmlp_factor, channels_reduction, dropout_rate, use_global_mlp,
            use_bias: as :class:`UNetEncoderBlock`.
        input_proj_factor: accepted for the official signature; the inner
            encoder block uses 2, as the official decoder does. Defaults to 2.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Call arguments:
        x: ``[N, H, W, C]`` features of the coarser level.
        bridge: optional ``[N, 2H, 2W, C']`` features from the encoder side.
    """

    def __init__(self, features, block_size, grid_size, num_groups=1, lrelu_slope=0.2,
                 block_gmlp_factor=2, grid_gmlp_factor=2, input_proj_factor=2,
                 channels_reduction=4, dropout_rate=0.0, use_global_mlp=True, use_bias=True,
                 **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=pair(block_size), grid_size=pair(grid_size),
            num_groups=num_groups, lrelu_slope=lrelu_slope, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
            channels_reduction=channels_reduction, dropout_rate=dropout_rate,
            use_global_mlp=use_global_mlp, use_bias=use_bias)
        self.conv_up = self._conv_up(features, "ConvTranspose_0")
        # The official decoder does not forward input_proj_factor to its inner
        # encoder block, which therefore always uses 2.
        self.block = UNetEncoderBlock(
            features, self.block_size, self.grid_size, num_groups=num_groups,
            lrelu_slope=lrelu_slope, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=2,
            channels_reduction=channels_reduction, dropout_rate=dropout_rate,
            downsample=False, use_global_mlp=use_global_mlp, use_bias=use_bias,
            name="UNetEncoderBlock_0", dtype=self.dtype_policy)

    def build(self, x_shape, bridge_shape=None):
        self.conv_up.build(x_shape)
        self.block.build(x_shape[:-1] + (self.features,), bridge_shape)

    def call(self, x, bridge=None, training=None):
        x = self.conv_up(x)
        return self.block(x, skip=bridge, training=training)

    def compute_output_shape(self, x_shape, bridge_shape=None):
        return _scaled(x_shape, 2, self.features)


class UpSampleRatio(_Block):
    """Rescale features by ``ratio`` (a power of two) and project with a 1x1 conv.

    Downscaling is the antialiased bilinear resize of ``jax.image.resize`` in
    its exact convolution form; upscaling is half-pixel bilinear. The 1x1 conv
    runs at the lower of the two resolutions (bilinear weights sum to one, so
    conv and resize commute exactly up to float rounding) to save compute.

    Args:
        features: output channels of the 1x1 convolution.
        ratio: scale factor, a power of two (0.25, 0.5, 1, 2, 4 ...).
        use_bias: whether the convolution has a bias. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, features, ratio, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(features=features, ratio=float(ratio), use_bias=use_bias)
        self.conv = self._conv(features, 1, "Conv_0")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x):
        # The portable graph (TFLite, ONNX) of a dynamic-size model writes the resizes
        # with ops whose shapes do not depend on the input size, so LiteRT's XNNPACK
        # delegate takes them; same values up to float rounding. (At a fixed size the
        # converter folds the shapes and XNNPACK takes the plain forms.)
        any_size = fused.is_portable() and None in tuple(x.shape)[1:3]
        if self.ratio < 1:
            down = resize.antialiased_downsample_any_size if any_size else resize.antialiased_downsample
            return self.conv(down(x, int(round(1 / self.ratio))))
        if self.ratio > 1:
            up = resize.bilinear_upsample_any_size if any_size else resize.bilinear_upsample
            return up(self.conv(x), int(round(self.ratio)))
        return self.conv(x)

    def compute_output_shape(self, input_shape):
        return _scaled(input_shape, self.ratio, self.features)


class SAM(_Block):
    """Supervised attention module between stages (from MPRNet; official ``SAM``).

    Returns ``(features, image)``: the restored image at this stage (conv +
    input image when 3 channels) and the input features re-weighted by an
    attention map computed from that image:
    ``image = conv(x) + input_image``,
    ``features = conv(x) * sigmoid(conv(image)) + x``.

    Args:
        features: channels of ``x`` and of the returned features.
        output_channels: channels of the image. Defaults to 3.
        use_bias: whether the convolutions have biases. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Call arguments:
        x: ``[N, H, W, features]`` stage features.
        image: ``[N, H, W, output_channels]`` input image at this scale.
    """

    def __init__(self, features, output_channels=3, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(features=features, output_channels=output_channels, use_bias=use_bias)
        self.conv_0 = self._conv(features, 3, "Conv_0")
        self.conv_1 = self._conv(output_channels, 3, "Conv_1")
        self.conv_2 = self._conv(features, 3, "Conv_2")

    def build(self, x_shape, image_shape):
        self.conv_0.build(x_shape)
        self.conv_1.build(x_shape)
        self.conv_2.build(x_shape[:-1] + (self.output_channels,))

    def call(self, x, image):
        x1 = self.conv_0(x)
        image_out = self.conv_1(x)
        if self.output_channels == 3:
            image_out = image_out + image
        attention = ops.sigmoid(self.conv_2(image_out))
        return x1 * attention + x, image_out

    def compute_output_shape(self, x_shape, image_shape):
        return x_shape[:-1] + (self.features,), x_shape[:-1] + (self.output_channels,)


class NearestDownsample(keras.layers.Layer):
    """Nearest-neighbour ×1/factor downscale of the input image (the multi-scale
    inputs of Fig. 2), as ``jax.image.resize(..., "nearest")``.

    Args:
        factor: integer downscale factor (1, 2, 4 ...).
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        return resize.nearest_downsample(x, self.factor)

    def compute_output_shape(self, s):
        f = self.factor
        return (s[0], None if s[1] is None else s[1] // f, None if s[2] is None else s[2] // f, s[3])

    def get_config(self):
        config = super().get_config()
        config.update(factor=self.factor)
        return config


LAYERS = (
    MlpBlock, ChannelAttention, RCAB, RDCAB, GatingUnit, GmlpLayer, MultiAxisGmlpBlock,
    BottleneckBlock, SpatialGatingWeights, CrossGatingBlock, UNetEncoderBlock,
    UNetDecoderBlock, UpSampleRatio, SAM, NearestDownsample,
)
for _cls in LAYERS:
    keras.saving.register_keras_serializable(package="maxim_tf")(_cls)
