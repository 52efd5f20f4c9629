"""Keras 3 layers of MAXIM (Tu et al., "MAXIM: Multi-Axis MLP for Image
Processing", CVPR 2022), one class per block of the paper's Fig. 2/3.

Sub-layers carry the names of the official Flax modules (``LayerNorm_in``,
``in_project``, ``GridGmlpLayer``, ``Dense_0`` ...), so a Keras variable path
such as ``stage_0_encoder_block_0/SplitHeadMultiAxisGmlpLayer_0/in_project/kernel``
is the official parameter path; the checkpoint converter is a name lookup.

Numerics follow Flax: LayerNorm epsilon 1e-6, tanh-approximated GELU.
"""

import keras
from keras import ops

from maxim_tf import fused
from maxim_tf import ops as mops

LN_EPS = 1e-6  # Flax nn.LayerNorm default (Keras defaults to 1e-3).


def _pair(v):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"Expected an int or a pair of ints. Received: {v}")
    return v


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
    def _dense(self, units, name, init="normal", bias_init="zeros"):
        kernel_init = (keras.initializers.RandomNormal(stddev=2e-2) if init == "normal"
                       else "lecun_normal")
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            name=name,
            dtype=self.dtype_policy,
        )

    def _conv(self, filters, kernel_size, name, strides=1):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer="lecun_normal",
            name=name,
            dtype=self.dtype_policy,
        )

    def _conv_up(self, filters, name):
        return keras.layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", use_bias=self.use_bias,
            kernel_initializer="lecun_normal", name=name, dtype=self.dtype_policy,
        )

    def _norm(self, name):
        return keras.layers.LayerNormalization(epsilon=LN_EPS, name=name, dtype=self.dtype_policy)

    def _dropout(self, name):
        return keras.layers.Dropout(self.dropout_rate, name=name, dtype=self.dtype_policy)

    def _project(self, dense, dropout, x, residual, training):
        """``residual + dropout(dense(x))``; without active dropout the add is
        fused into the matmul."""
        if training and self.dropout_rate > 0:
            return dropout(fused.dense(dense, x), training=training) + residual
        return fused.dense(dense, x, residual=residual)

    def _project_concat(self, dense, dropout, u, v, residual, training):
        """``residual + dropout(dense(concat([u, v])))`` as two matmuls (no
        concatenated copy; the bias and residual ride on the first)."""
        if training and self.dropout_rate > 0:
            return dropout(fused.dense(dense, ops.concatenate([u, v], axis=-1)),
                           training=training) + residual
        h = u.shape[-1]
        y = fused.dense(dense, v, rows=(h, h + v.shape[-1]), residual=residual)
        return fused.dense(dense, u, rows=(0, h), residual=y, use_bias=False)

    def _project_split(self, dense, x):
        """``split(gelu(dense(x)), 2)`` as two fused matmuls (no split copy)."""
        half = dense.units // 2
        return (fused.dense(dense, x, "gelu", columns=(0, half)),
                fused.dense(dense, x, "gelu", columns=(half, 2 * half)))


class MlpBlock(_Block):
    """Dense -> GELU -> Dropout -> Dense over channels (RDCAB's channel mixing)."""

    def __init__(self, mlp_dim, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(mlp_dim=mlp_dim, dropout_rate=dropout_rate, use_bias=use_bias)
        self.dense_0 = self._dense(mlp_dim, "Dense_0")
        self.dropout = self._dropout("dropout")
        self.dense_1 = None

    def build(self, input_shape):
        self.dense_1 = self._dense(input_shape[-1], "Dense_1")
        self.dense_0.build(input_shape)
        self.dense_1.build(input_shape[:-1] + (self.mlp_dim,))

    def call(self, x, training=None):
        x = fused.dense(self.dense_0, x, "gelu")
        x = self.dropout(x, training=training)
        return fused.dense(self.dense_1, x)

    def compute_output_shape(self, input_shape):
        return input_shape


class ChannelAttention(_Block):
    """Squeeze-and-excitation channel attention (official ``CALayer``)."""

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
        y = ops.mean(x, axis=(1, 2), keepdims=True)
        y = ops.relu(self.conv_0(y))
        y = ops.sigmoid(self.conv_1(y))
        return x * y

    def compute_output_shape(self, input_shape):
        return input_shape


class RCAB(_Block):
    """Residual channel attention block: LN, conv3x3, leaky ReLU, conv3x3, CA."""

    def __init__(self, features, reduction=4, lrelu_slope=0.2, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, reduction=reduction, lrelu_slope=lrelu_slope, use_bias=use_bias)
        self.layer_norm = self._norm("LayerNorm")
        self.conv1 = self._conv(features, 3, "conv1")
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
        y = fused.layer_norm(self.layer_norm, x)
        y = fused.conv(self.conv1, y, "leaky_relu", self.lrelu_slope)
        y = fused.conv(self.conv2, y)
        return self.channel_attention(y) + x

    def compute_output_shape(self, input_shape):
        return input_shape


class RDCAB(_Block):
    """Residual dense channel attention block (used in the bottleneck)."""

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
        y = fused.layer_norm(self.layer_norm, x)
        y = self.channel_mixing(y, training=training)
        y = self.channel_attention(y)
        return x + y

    def compute_output_shape(self, input_shape):
        return input_shape


class GatingUnit(_Block):
    """Spatial gating unit of gMLP over the grid axis or the block axis.

    Splits channels into (u, v), normalises v, mixes v spatially with a Dense
    over either the grid cells (``mode="grid"``, official ``GridGatingUnit``)
    or the pixels of a block (``mode="block"``, ``BlockGatingUnit``), and
    returns ``u * (v + 1)``.
    """

    def __init__(self, mode, size, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(mode=mode, size=_pair(size), use_bias=use_bias)
        if mode not in ("grid", "block"):
            raise ValueError(f"mode must be 'grid' or 'block'. Received: mode={mode!r}")
        n = self.size[0] * self.size[1]
        self.intermediate_layernorm = self._norm("intermediate_layernorm")
        self.dense_0 = self._dense(n, "Dense_0")

    def build(self, input_shape):
        c = input_shape[-1] // 2
        self.intermediate_layernorm.build(input_shape[:-1] + (c,))
        self.dense_0.build((None, self.size[0] * self.size[1]))

    def call(self, x):
        u, v = ops.split(x, 2, axis=-1)
        return self.gate(u, v)

    def gate(self, u, v):
        """``u * (mix(LayerNorm(v)) + 1)`` for the two halves given apart."""
        v = fused.layer_norm(self.intermediate_layernorm, v)
        # The "+ 1" rides on the Dense bias.
        return u * fused.mix(self.dense_0, v, self.mode, self.size, bias_shift=1.0)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (input_shape[-1] // 2,)


class GmlpLayer(_Block):
    """Residual gMLP over one axis: grid gMLP (global) or block gMLP (local).

    ``mode="grid"`` is the official ``GridGmlpLayer`` with ``size`` = grid size;
    ``mode="block"`` is ``BlockGmlpLayer`` with ``size`` = block size.
    """

    def __init__(self, mode, size, factor=2, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            mode=mode, size=_pair(size), factor=factor, dropout_rate=dropout_rate,
            use_bias=use_bias)
        unit = "GridGatingUnit" if mode == "grid" else "BlockGatingUnit"
        self.layer_norm = self._norm("LayerNorm")
        self.gating = GatingUnit(mode, self.size, use_bias, name=unit, dtype=self.dtype_policy)
        self.dropout = self._dropout("dropout")
        self.in_project = None
        self.out_project = None

    def build(self, input_shape):
        c = input_shape[-1]
        self.in_project = self._dense(c * self.factor, "in_project")
        self.out_project = self._dense(c, "out_project")
        self.layer_norm.build(input_shape)
        self.in_project.build(input_shape)
        hidden = input_shape[:-1] + (c * self.factor,)
        self.gating.build(hidden)
        self.out_project.build(input_shape[:-1] + (c * self.factor // 2,))

    def call(self, x, training=None):
        # LayerNorm and the projections act per pixel, so they run on the
        # NHWC tensor; only the gating unit needs the blocked layout.
        y = fused.layer_norm(self.layer_norm, x)
        y = self.gating.gate(*self._project_split(self.in_project, y))
        return self._project(self.out_project, self.dropout, y, x, training)

    def compute_output_shape(self, input_shape):
        return input_shape


class MultiAxisGmlpBlock(_Block):
    """Multi-axis gated MLP block (MAB): split heads into grid and block gMLP.

    Official ``ResidualSplitHeadMultiAxisGmlpLayer``: LN, Dense(C*f), GELU,
    split channels, half through the grid gMLP (global, dilated), half through
    the block gMLP (local), concat, Dense(C), dropout, residual.
    """

    def __init__(self, block_size, grid_size, block_gmlp_factor=2, grid_gmlp_factor=2,
                 input_proj_factor=2, dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            block_size=_pair(block_size), grid_size=_pair(grid_size),
            block_gmlp_factor=block_gmlp_factor, grid_gmlp_factor=grid_gmlp_factor,
            input_proj_factor=input_proj_factor, dropout_rate=dropout_rate, use_bias=use_bias)
        self.layer_norm_in = self._norm("LayerNorm_in")
        self.grid_gmlp = GmlpLayer("grid", self.grid_size, grid_gmlp_factor, dropout_rate,
                                   use_bias, name="GridGmlpLayer", dtype=self.dtype_policy)
        self.block_gmlp = GmlpLayer("block", self.block_size, block_gmlp_factor, dropout_rate,
                                    use_bias, name="BlockGmlpLayer", dtype=self.dtype_policy)
        self.dropout = self._dropout("dropout")
        self.in_project = None
        self.out_project = None

    def build(self, input_shape):
        c = input_shape[-1]
        hidden = c * self.input_proj_factor
        self.in_project = self._dense(hidden, "in_project")
        self.out_project = self._dense(c, "out_project")
        self.layer_norm_in.build(input_shape)
        self.in_project.build(input_shape)
        half = input_shape[:-1] + (hidden // 2,)
        self.grid_gmlp.build(half)
        self.block_gmlp.build(half)
        self.out_project.build(input_shape[:-1] + (hidden,))

    def call(self, x, training=None):
        shortcut = x
        x = fused.layer_norm(self.layer_norm_in, x)
        u, v = self._project_split(self.in_project, x)
        u = self.grid_gmlp(u, training=training)
        v = self.block_gmlp(v, training=training)
        return self._project_concat(self.out_project, self.dropout, u, v, shortcut, training)

    def compute_output_shape(self, input_shape):
        return input_shape


class BottleneckBlock(_Block):
    """Bottleneck: 1x1 input projection, num_groups x (MAB + RDCAB), long skip."""

    def __init__(self, features, block_size, grid_size, num_groups=1, block_gmlp_factor=2,
                 grid_gmlp_factor=2, input_proj_factor=2, channels_reduction=4,
                 dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=_pair(block_size), grid_size=_pair(grid_size),
            num_groups=num_groups, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
            channels_reduction=channels_reduction, dropout_rate=dropout_rate, use_bias=use_bias)
        self.input_proj = self._conv(features, 1, "input_proj")
        self.mabs, self.rdcabs = [], []
        for i in range(num_groups):
            self.mabs.append(MultiAxisGmlpBlock(
                self.block_size, self.grid_size, block_gmlp_factor, grid_gmlp_factor,
                input_proj_factor, dropout_rate, use_bias,
                name=f"SplitHeadMultiAxisGmlpLayer_{i}", dtype=self.dtype_policy))
            self.rdcabs.append(RDCAB(
                features, channels_reduction, dropout_rate, use_bias,
                name=f"channel_attention_block_1_{i}", dtype=self.dtype_policy))

    def build(self, input_shape):
        self.input_proj.build(input_shape)
        feat = input_shape[:-1] + (self.features,)
        for mab, rdcab in zip(self.mabs, self.rdcabs):
            mab.build(feat)
            rdcab.build(feat)

    def call(self, x, training=None):
        x = fused.conv(self.input_proj, x)
        shortcut_long = x
        for mab, rdcab in zip(self.mabs, self.rdcabs):
            x = mab(x, training=training)
            x = rdcab(x, training=training)
        return x + shortcut_long

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.features,)


class SpatialGatingWeights(_Block):
    """Gating weights of the cross-gating block (official ``GetSpatialGatingWeights``).

    LN, Dense(C*f), GELU, split; one half mixed over grid cells (``Dense_0``),
    the other over block pixels (``Dense_1``); concat; Dense(C); dropout.
    """

    def __init__(self, features, block_size, grid_size, input_proj_factor=2,
                 dropout_rate=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=_pair(block_size), grid_size=_pair(grid_size),
            input_proj_factor=input_proj_factor, dropout_rate=dropout_rate, use_bias=use_bias)
        self.layer_norm_in = self._norm("LayerNorm_in")
        self.in_project = self._dense(features * input_proj_factor, "in_project", init="lecun")
        self.dense_grid = self._dense(self.grid_size[0] * self.grid_size[1], "Dense_0",
                                      bias_init="ones")
        self.dense_block = self._dense(self.block_size[0] * self.block_size[1], "Dense_1",
                                       bias_init="ones")
        self.out_project = self._dense(features, "out_project", init="lecun")
        self.dropout = self._dropout("dropout")

    def build(self, input_shape):
        self.layer_norm_in.build(input_shape)
        self.in_project.build(input_shape)
        self.dense_grid.build((None, self.grid_size[0] * self.grid_size[1]))
        self.dense_block.build((None, self.block_size[0] * self.block_size[1]))
        self.out_project.build(input_shape[:-1] + (self.features * self.input_proj_factor,))

    def call(self, x, training=None):
        x = fused.layer_norm(self.layer_norm_in, x)
        u, v = self._project_split(self.in_project, x)
        u = fused.mix(self.dense_grid, u, "grid", self.grid_size)
        v = fused.mix(self.dense_block, v, "block", self.block_size)
        # out_project(concat([u, v])) without the concatenated copy.
        h = u.shape[-1]
        x = fused.dense(self.out_project, v, rows=(h, h + v.shape[-1]))
        x = fused.dense(self.out_project, u, rows=(0, h), residual=x, use_bias=False)
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.features,)


class CrossGatingBlock(_Block):
    """Cross-gating MLP block (CGB): two feature streams gate each other.

    Returns ``(x, y)``: x gated by the weights from y plus all shortcuts, and y
    gated by the weights from x.
    """

    def __init__(self, features, block_size, grid_size, input_proj_factor=2,
                 dropout_rate=0.0, upsample_y=True, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=_pair(block_size), grid_size=_pair(grid_size),
            input_proj_factor=input_proj_factor, dropout_rate=dropout_rate, upsample_y=upsample_y,
            use_bias=use_bias)
        self.conv_up = self._conv_up(features, "ConvTranspose_0") if upsample_y else None
        self.conv_x = self._conv(features, 1, "Conv_0")
        self.conv_y = self._conv(features, 1, "Conv_1")
        self.layer_norm_x = self._norm("LayerNorm_x")
        self.layer_norm_y = self._norm("LayerNorm_y")
        self.in_project_x = self._dense(features, "in_project_x", init="lecun")
        self.in_project_y = self._dense(features, "in_project_y", init="lecun")
        # The official block builds its gating-weight modules with the default
        # input projection factor (2), whatever the model's input_proj_factor.
        self.gating_x = SpatialGatingWeights(
            features, self.block_size, self.grid_size, 2, dropout_rate, use_bias,
            name="SplitHeadMultiAxisGating_x", dtype=self.dtype_policy)
        self.gating_y = SpatialGatingWeights(
            features, self.block_size, self.grid_size, 2, dropout_rate, use_bias,
            name="SplitHeadMultiAxisGating_y", dtype=self.dtype_policy)
        self.out_project_x = self._dense(features, "out_project_x", init="lecun")
        self.out_project_y = self._dense(features, "out_project_y", init="lecun")
        self.dropout_x = self._dropout("dropout_x")
        self.dropout_y = self._dropout("dropout_y")

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
        x = fused.conv(self.conv_x, x)
        y = fused.conv(self.conv_y, y)
        shortcut_x, shortcut_y = x, y

        x = fused.dense(self.in_project_x, fused.layer_norm(self.layer_norm_x, x), "gelu")
        gx = self.gating_x(x, training=training)
        y = fused.dense(self.in_project_y, fused.layer_norm(self.layer_norm_y, y), "gelu")
        gy = self.gating_y(y, training=training)

        y = self._project(self.out_project_y, self.dropout_y, y * gx, shortcut_y, training)
        x = self._project(self.out_project_x, self.dropout_x, x * gy, y + shortcut_x, training)
        return x, y

    def compute_output_shape(self, x_shape, y_shape):
        out = x_shape[:-1] + (self.features,)
        return out, out


class UNetEncoderBlock(_Block):
    """UNet encoder block: [concat skip] 1x1 conv, num_groups x (MAB + RCAB),
    long skip, optional cross-gating with the previous stage, optional 4x4/2
    down-convolution. Returns ``(x_down, x)`` when ``downsample`` else ``x``.
    """

    def __init__(self, features, block_size, grid_size, num_groups=1, lrelu_slope=0.2,
                 block_gmlp_factor=2, grid_gmlp_factor=2, input_proj_factor=2,
                 channels_reduction=4, dropout_rate=0.0, downsample=True,
                 use_global_mlp=True, use_bias=True, use_cross_gating=False, **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=_pair(block_size), grid_size=_pair(grid_size),
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
                    self.block_size, self.grid_size, block_gmlp_factor, grid_gmlp_factor,
                    input_proj_factor, dropout_rate, use_bias,
                    name=f"SplitHeadMultiAxisGmlpLayer_{i}", dtype=self.dtype_policy))
            # The official encoder leaves RCAB's slope at its default (0.2),
            # whatever lrelu_slope says; kept so converted checkpoints match.
            self.rcabs.append(RCAB(
                features, channels_reduction, 0.2, use_bias,
                name=f"channel_attention_block_1{i}", dtype=self.dtype_policy))
        self.cross_gating = None
        if use_cross_gating:
            self.cross_gating = CrossGatingBlock(
                features, self.block_size, self.grid_size, input_proj_factor, dropout_rate,
                upsample_y=False, use_bias=use_bias, name="cross_gating_block",
                dtype=self.dtype_policy)
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
        """Args: x; skip: features concatenated to x first; cross: the previous
        stage's encoder + decoder features, cross-gated with x."""
        if skip is not None:
            x = ops.concatenate([x, skip], axis=-1)
        x = fused.conv(self.conv_in, x)
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
            return fused.conv(self.conv_down, x), x
        return x

    def compute_output_shape(self, x_shape, skip_shape=None, cross_shape=None):
        out = _scaled(x_shape, 1, self.features)
        if self.conv_down is not None:
            return _scaled(x_shape, 0.5, self.features), out
        return out


class UNetDecoderBlock(_Block):
    """UNet decoder block: 2x2/2 transposed conv, then an encoder block
    (no downsampling) fed the bridge features as skip."""

    def __init__(self, features, block_size, grid_size, num_groups=1, lrelu_slope=0.2,
                 block_gmlp_factor=2, grid_gmlp_factor=2, input_proj_factor=2,
                 channels_reduction=4, dropout_rate=0.0, use_global_mlp=True, use_bias=True,
                 **kwargs):
        super().__init__(**kwargs)
        self._store(
            features=features, block_size=_pair(block_size), grid_size=_pair(grid_size),
            num_groups=num_groups, lrelu_slope=lrelu_slope, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
            channels_reduction=channels_reduction, dropout_rate=dropout_rate,
            use_global_mlp=use_global_mlp, use_bias=use_bias)
        self.conv_up = self._conv_up(features, "ConvTranspose_0")
        # The official decoder does not forward input_proj_factor to its inner
        # encoder block, which therefore always uses 2.
        self.block = UNetEncoderBlock(
            features, self.block_size, self.grid_size, num_groups, lrelu_slope,
            block_gmlp_factor, grid_gmlp_factor, 2, channels_reduction, dropout_rate,
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
    """

    def __init__(self, features, ratio, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._store(features=features, ratio=float(ratio), use_bias=use_bias)
        self.conv = self._conv(features, 1, "Conv_0")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x):
        if self.ratio < 1:
            return fused.conv(self.conv, mops.antialiased_downsample(x, int(round(1 / self.ratio))))
        if self.ratio > 1:
            return mops.bilinear_upsample(fused.conv(self.conv, x), int(round(self.ratio)))
        return fused.conv(self.conv, x)

    def compute_output_shape(self, input_shape):
        return _scaled(input_shape, self.ratio, self.features)


class SAM(_Block):
    """Supervised attention module between stages (from MPRNet).

    Returns ``(features, image)``: the restored image at this stage (conv +
    input image when 3 channels) and the input features re-weighted by an
    attention map computed from that image.
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
        x1 = fused.conv(self.conv_0, x)
        out = fused.conv(self.conv_1, x)
        if self.output_channels == 3:
            out = out + image
        x2 = ops.sigmoid(fused.conv(self.conv_2, out))
        return x1 * x2 + x, out

    def compute_output_shape(self, x_shape, image_shape):
        return x_shape[:-1] + (self.features,), x_shape[:-1] + (self.output_channels,)


class NearestDownsample(keras.layers.Layer):
    """Nearest-neighbour ×1/factor downscale of the input image (multi-scale inputs)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        return mops.nearest_downsample(x, self.factor)

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
