"""The multi-stage, multi-scale MAXIM network as a Keras 3 functional model."""

import math
import numbers

import keras
import numpy as np

from maxim_tf import fused, padding, partition
from maxim_tf import layers as L
from maxim_tf._utils import PRECISIONS
from maxim_tf.presets import VARIANTS, variant_config
from maxim_tf.tracing import TraceSwitch

_TUPLE_KEYS = ("block_size_hr", "block_size_lr", "grid_size_hr", "grid_size_lr")
_PADDED = TraceSwitch("padded_inputs")


def padded_inputs():
    """Inside: calls of a MAXIM on unknown H, W add no in-graph size check.

    For graphs that pad to the multiple themselves (the export signatures): the
    check could never fire there, and an Assert op is not a TFLite builtin.
    """
    return _PADDED.on()


# Keyword arguments passed on to keras.Model; anything else is a typo (Keras would ignore it).
_KERAS_KWARGS = ("name", "trainable", "dtype")


@keras.saving.register_keras_serializable(package="maxim_tf")
class MAXIM(keras.Model):
    """MAXIM: Multi-Axis MLP for Image Processing (Tu et al., CVPR 2022).

    A Keras functional model equal to the official JAX/Flax ``MAXIM`` (same
    constructor arguments, same parameter tree). It takes float32 NHWC images
    in [0, 1] of any batch size and any H, W that are multiples of
    ``model.size_multiple`` (64 for the official variants), without a rebuild;
    with ``any_size=True``, of any H, W (the official pad-and-crop inside the
    graph, see :mod:`maxim_tf.padding`).

    The official variants are ``MAXIM.from_variant("S-1" ... "M-3")``; every
    released checkpoint is ``MAXIM.from_preset(name)`` (``maxim-tf models``).
    Defaults below are the official constructor's (``presets.DEFAULT_CONFIG``).

    Args:
        features: channels at full resolution; level ``i`` of the UNet has
            ``features * 2**i``. Defaults to 64 (S variants: 32).
        depth: number of UNet downsamplings (levels - 1). Defaults to 3.
        num_stages: number of stacked UNets (the "-1/-2/-3" of the variant
            names). Defaults to 2.
        num_groups: (multi-axis gMLP block, RCAB) pairs per encoder/decoder
            block. Defaults to 1 (variants: 2).
        use_bias: biases in every Dense/Conv. Defaults to True.
        num_supervision_scales: scales with an input image and a restored
            output (1 = full resolution only; the released checkpoints use 3).
            Defaults to 1.
        lrelu_slope: leaky-ReLU slope of the stage input convs. Defaults to 0.2.
        use_global_mlp: include the multi-axis gMLP blocks (False: RCABs only).
            Defaults to True.
        use_cross_gating: cross-gate the skip connections of each UNet (the
            cross-gating blocks of Fig. 2). Defaults to True.
        high_res_stages: UNet levels ``< high_res_stages`` use the ``*_hr``
            block/grid sizes, the others the ``*_lr`` ones. Defaults to 2.
        block_size_hr: ``(fh, fw)`` of block gMLP at high-resolution levels.
            Defaults to (16, 16).
        block_size_lr: block size at low-resolution levels, also their grid
            size (see Notes). Defaults to (8, 8).
        grid_size_hr: ``(gh, gw)`` of grid gMLP at high-resolution levels.
            Defaults to (16, 16).
        grid_size_lr: accepted for the official signature; unused (see
            Notes). Defaults to (8, 8).
        num_bottleneck_blocks: bottleneck blocks between encoder and decoder.
            Defaults to 1 (variants: 2).
        block_gmlp_factor: hidden expansion inside block gMLP. Defaults to 2.
        grid_gmlp_factor: hidden expansion inside grid gMLP. Defaults to 2.
        input_proj_factor: expansion of the multi-axis blocks' input
            projection. Defaults to 2.
        channels_reduction: channel reduction of the channel attention.
            Defaults to 4.
        num_outputs: channels of the restored image. Defaults to 3.
        dropout_rate: dropout inside the blocks (training only). Defaults to 0.
        return_all_outputs: if False (default) the model returns the restored
            image (last scale of the last stage). If True it returns the flat
            list of every stage x scale output in the official nesting order
            ``[stage0_scale0 (coarsest), ..., stage0_scaleK (full), stage1_scale0,
            ...]``; its last element is the restored image.
        any_size: if True the graph reflect-pads its input to ``size_multiple``
            as the official evaluation does and crops the output back
            (:class:`~maxim_tf.padding.PadToMultiple` /
            :class:`~maxim_tf.padding.CropToInput` layers), so ``model.predict``,
            tf.data pipelines and exports take images of any H, W. Needs
            ``return_all_outputs=False``. Defaults to False.
        graph_form: which of the equivalent graphs (same numerics up to float
            rounding) the model's traces write: ``"auto"`` (default:
            ``MAXIM_TF_GRAPH_FORM`` if set, else the best for this machine,
            :func:`maxim_tf.fused.choose_graph_form`), ``"stock"`` (TensorFlow's
            own forms), ``"avx2"`` (for x86 CPUs without AVX-512 running oneDNN)
            or ``"portable"`` (ops every converter understands); see
            :func:`maxim_tf.fused.active_graph_form`. A runtime option like the
            device: not part of ``get_config`` (a saved ``.keras`` file loads
            with ``"auto"``), settable later (``model.graph_form = "stock"``;
            traced functions are re-traced), and a trace inside
            :func:`maxim_tf.fused.graph_form_scope` (``Restorer(graph_form=...)``,
            the exporters) takes that scope's form.

    Example:
        >>> model = maxim_tf.MAXIM.from_variant("S-3")
        >>> restored = model(images)  # images: float32 [N, H, W, 3] in [0, 1]
        >>> model = maxim_tf.MAXIM.from_preset("maxim-s3-denoising-sidd", any_size=True)
        >>> restored = model.predict(photos_500x375)

    Notes (kept for exact parity with the official code):
        * low-resolution levels and the bottleneck use ``block_size_lr`` as
          their *grid* size (``grid_size_lr`` is accepted but unused);
        * RCABs use a leaky-ReLU slope of 0.2 whatever ``lrelu_slope`` is;
        * decoder blocks and cross-gating weights use an input projection
          factor of 2 whatever ``input_proj_factor`` is;
        * encoder blocks of stages > 0 always cross-gate with the previous
          stage, even with ``use_cross_gating=False``.
    """

    def __init__(self, features=64, depth=3, num_stages=2, num_groups=1, use_bias=True,
                 num_supervision_scales=1, lrelu_slope=0.2, use_global_mlp=True,
                 use_cross_gating=True, high_res_stages=2, block_size_hr=(16, 16),
                 block_size_lr=(8, 8), grid_size_hr=(16, 16), grid_size_lr=(8, 8),
                 num_bottleneck_blocks=1, block_gmlp_factor=2, grid_gmlp_factor=2,
                 input_proj_factor=2, channels_reduction=4, num_outputs=3, dropout_rate=0.0,
                 return_all_outputs=False, any_size=False, graph_form="auto", **kwargs):
        config = dict(
            features=features, depth=depth, num_stages=num_stages, num_groups=num_groups,
            use_bias=use_bias, num_supervision_scales=num_supervision_scales,
            lrelu_slope=lrelu_slope, use_global_mlp=use_global_mlp,
            use_cross_gating=use_cross_gating, high_res_stages=high_res_stages,
            block_size_hr=block_size_hr, block_size_lr=block_size_lr,
            grid_size_hr=grid_size_hr, grid_size_lr=grid_size_lr,
            num_bottleneck_blocks=num_bottleneck_blocks, block_gmlp_factor=block_gmlp_factor,
            grid_gmlp_factor=grid_gmlp_factor, input_proj_factor=input_proj_factor,
            channels_reduction=channels_reduction, num_outputs=num_outputs,
            dropout_rate=dropout_rate,
        )
        unknown = sorted(set(kwargs) - set(_KERAS_KWARGS))
        if unknown:
            raise TypeError(
                f"MAXIM got unexpected keyword argument(s) {', '.join(map(repr, unknown))}. "
                f"Valid: {', '.join(sorted(config))}, return_all_outputs, "
                f"{', '.join(_KERAS_KWARGS)}.")
        config = _checked_config(config)
        fused.check_graph_form(graph_form)
        if any_size and return_all_outputs:
            raise ValueError("any_size=True crops the restored image back to the input size; it "
                             "needs return_all_outputs=False. Received: return_all_outputs=True")
        multiple = _size_multiple(config)
        dtype = kwargs.pop("dtype", None)
        inputs = keras.Input(shape=(None, None, 3), name="images")
        x = padding.PadToMultiple(multiple, name="pad_to_multiple", dtype=dtype)(inputs) \
            if any_size else inputs
        outputs = _build_graph(x, config, dtype)
        if not return_all_outputs:
            outputs = outputs[-1]
        if any_size:
            outputs = padding.CropToInput(multiple, name="crop_to_input", dtype="float32")(
                [outputs, inputs])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.maxim_config = config
        self.return_all_outputs = return_all_outputs
        self.any_size = bool(any_size)
        self.size_multiple = multiple
        self._graph_form = graph_form
        # The layers' dtype policy (keras.Model keeps its own at float32: inputs and
        # outputs are float32 whatever the layers compute in).
        self.layer_dtype_policy = keras.dtype_policies.get(dtype) if dtype is not None \
            else keras.config.dtype_policy()

    @classmethod
    def from_variant(cls, variant, **overrides):
        """Build a named official variant ("S-1" ... "M-3"), randomly initialised.

        Uses ``num_supervision_scales=3`` as the released checkpoints do;
        any constructor argument can be overridden.
        """
        return cls(**variant_config(variant, **overrides))

    @classmethod
    def untrained(cls, architecture):
        """A randomly initialised MAXIM (seed 0): an architecture to benchmark or train.

        Args:
            architecture: an official variant name (``"S-1"`` ... ``"M-3"``, as
                :meth:`from_variant`) or the path of a JSON file holding an object of
                constructor arguments.

        Raises:
            ModelFileError: the JSON file is unreadable or not an object.
        """
        import json
        import os
        import pathlib

        from maxim_tf.errors import ModelFileError

        keras.utils.set_random_seed(0)
        text = os.fspath(architecture)
        if text in VARIANTS:
            return cls.from_variant(text)
        path = pathlib.Path(text).expanduser()
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{path}: not a readable JSON model config ({e})") from e
        if not isinstance(config, dict):
            raise ModelFileError(f"{path}: a JSON model config must be an object of "
                                 f"maxim_tf.MAXIM arguments")
        return cls(**config)

    @classmethod
    def from_preset(cls, name, any_size=False, progress=True, graph_form="auto"):
        """A pretrained MAXIM by preset name (downloaded and cached on first use) or path.

        Args:
            name: a preset of ``maxim-tf models`` (e.g. ``"maxim-s3-denoising-sidd"``,
                ``"denoise"``), a saved-model name or a ``.keras`` path.
            any_size: return the any-size form (official pad-and-crop in the graph).
            progress: show download/conversion progress on stderr.
            graph_form: the model's ``graph_form`` (see :class:`MAXIM`).

        Returns:
            A :class:`MAXIM` returning the restored image.

        Example:
            >>> model = maxim_tf.MAXIM.from_preset("maxim-s3-deblurring-gopro", any_size=True)
            >>> sharp = model.predict(blurry)  # float32 [N, H, W, 3] in [0, 1], any H, W
        """
        from maxim_tf import hub
        from maxim_tf.errors import ModelFileError

        model = hub.load_model(name, progress=progress)
        if not isinstance(model, MAXIM):
            raise ModelFileError(f"{name!r} is not a maxim_tf.MAXIM model "
                                 f"(loaded a {type(model).__name__}).")
        if model.return_all_outputs:
            model = model.with_outputs(False)
        model = model.with_any_size(any_size)
        model.graph_form = graph_form
        return model

    def with_any_size(self, any_size=True):
        """This model with (or without) the official pad-and-crop inside the graph.

        Returns ``self`` if it already is of that form, else a new MAXIM of the
        same config sharing nothing but copies of the weights.
        """
        if bool(any_size) == self.any_size:
            return self
        new = MAXIM(**self.maxim_config, return_all_outputs=self.return_all_outputs,
                    any_size=any_size, graph_form=self.graph_form, dtype=self.layer_dtype_policy)
        return new.copy_weights_from(self)

    def with_precision(self, precision):
        """This model computing in ``precision``: ``"float32"`` or ``"bfloat16"``.

        bfloat16 is Keras' ``mixed_bfloat16`` policy: weights stay float32, the
        convolutions, matmuls and elementwise ops run in bfloat16, and the layer
        norms compute their statistics in float32 (Keras does so for half
        types); inputs and outputs stay float32. It pays off only on hardware
        with bfloat16 units (AVX512-BF16 or AMX CPUs, recent GPUs/TPUs); see
        docs/benchmarks.md. Returns ``self`` when already in that precision, else
        a new MAXIM with copies of the weights.
        """
        policy = PRECISIONS.get(precision)
        if policy is None:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. "
                             f"Received: precision={precision!r}")
        if self.layer_dtype_policy.name == policy:
            return self
        new = MAXIM(**self.maxim_config, return_all_outputs=self.return_all_outputs,
                    any_size=self.any_size, graph_form=self.graph_form, dtype=policy)
        return new.copy_weights_from(self)

    def copy_weights_from(self, other, *, allow_missing=False):
        """Copy weights from another MAXIM of the same config, matched by name.

        A model that returns only the restored image lacks the output
        convolutions of the coarser scales of the last stage (they do not feed
        it), so weights are matched by variable path, not position. This is the
        one copy-by-name of the project (``with_outputs``, ``with_any_size``, the
        trainer's ``init_from`` and its export use it).

        Args:
            other: the model to copy from.
            allow_missing: leave the weights of this model that ``other`` lacks as
                they are (fine-tuning an all-outputs model from a one-output
                file). By default every weight of this model must exist in ``other``.

        Returns:
            This model.

        Raises:
            ValueError: a weight without counterpart in ``other`` (unless
                ``allow_missing``) or one of another shape; nothing is copied then.
        """
        source = {v.path: v for v in other.weights}
        for v in self.weights:
            src = source.get(v.path)
            if (src is None and not allow_missing) or \
                    (src is not None and tuple(src.shape) != tuple(v.shape)):
                found = "no counterpart" if src is None else f"shape {tuple(src.shape)}"
                raise ValueError(
                    f"Cannot copy weights: {v.path} {tuple(v.shape)} has {found} in "
                    f"{other.name} (configs differ?)")
        for v in self.weights:
            if v.path in source:
                # Through host memory: the two models may live on different devices or
                # under different tf.distribute strategies.
                v.assign(source[v.path].numpy())
        return self

    def with_outputs(self, return_all_outputs):
        """A new MAXIM of the same config returning all outputs or only the
        restored image, with this model's weights."""
        config = dict(self.maxim_config)
        new = MAXIM(**config, return_all_outputs=return_all_outputs,
                    any_size=self.any_size and not return_all_outputs, graph_form=self.graph_form,
                    dtype=self.layer_dtype_policy)
        return new.copy_weights_from(self)

    @property
    def graph_form(self):
        """The graph form setting of this model's traces (see the ``graph_form`` argument)."""
        return self._graph_form

    @graph_form.setter
    def graph_form(self, setting):
        self._graph_form = fused.check_graph_form(setting)
        # Traced functions keep the form they were traced with: drop them.
        for attr in ("predict_function", "test_function", "train_function"):
            if getattr(self, attr, None) is not None:
                setattr(self, attr, None)
        if hasattr(self, "_maxim_restore_predict"):
            object.__delattr__(self, "_maxim_restore_predict")

    def check_input_shape(self, shape):
        """Raise ValueError unless H and W of ``shape`` fit the model."""
        if len(shape) != 4 or (shape[-1] is not None and shape[-1] != 3):
            raise ValueError(
                f"MAXIM expects images of shape [N, H, W, 3]. Received: shape={tuple(shape)}")
        mh, mw = self.size_multiple
        h, w = shape[1], shape[2]
        bad = [(n, v, m) for n, v, m in (("height", h, mh), ("width", w, mw))
               if v is not None and (v == 0 or v % m)]
        if bad:
            what = ", ".join(f"{n} {v} is not a positive multiple of {m}" for n, v, m in bad)
            raise ValueError(
                f"Input {what} (required by block/grid sizes and depth of this model; "
                f"pad the image, e.g. with maxim_tf.Restorer, which pads and crops back). "
                f"Received: shape={tuple(shape)}")

    def call(self, inputs, training=None, mask=None):
        shape = getattr(inputs, "shape", None)
        if shape is not None and not self.any_size:
            self.check_input_shape(tuple(shape))
            if None in tuple(shape)[1:3] and not _PADDED.is_on():
                inputs = _assert_size_multiple(inputs, self.size_multiple)
        with fused.graph_form_scope(self._graph_form):
            return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        config = {k: (list(v) if k in _TUPLE_KEYS else v) for k, v in self.maxim_config.items()}
        config.update(return_all_outputs=self.return_all_outputs, any_size=self.any_size,
                      name=self.name)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _assert_size_multiple(images, multiple):
    """``images`` behind an in-graph check that H and W are positive multiples of ``multiple``.

    With unknown H, W (a ``tf.function`` or serving signature with ``[None, None,
    None, 3]``) the static check cannot run; without this the first block
    partition fails with an opaque Reshape error.
    """
    import tensorflow as tf

    if not isinstance(images, tf.Tensor) or tf.executing_eagerly():
        return images  # eager tensors have static shapes; KerasTensors are symbolic
    mh, mw = multiple
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    fits = tf.logical_and(tf.logical_and(h > 0, h % mh == 0), tf.logical_and(w > 0, w % mw == 0))
    message = tf.strings.format(
        "MAXIM input height {} and width {} must be positive multiples of " + f"{mh} and {mw}"
        + " (the model's size multiple). Pad the images (maxim_tf.Restorer does) or use the "
          "any-size model: MAXIM.from_preset(name, any_size=True) / model.with_any_size().",
        (h, w))
    check = tf.debugging.Assert(fits, [message])
    with tf.control_dependencies([check]):
        return tf.identity(images)


# The one check of the MAXIM constructor's arguments: integers >= 1 (or >= 0), booleans,
# finite numbers, and pairs of positive integers (an int n means (n, n)).
_POSITIVE_INTS = ("features", "depth", "num_stages", "num_groups", "num_supervision_scales",
                  "num_bottleneck_blocks", "block_gmlp_factor", "grid_gmlp_factor",
                  "input_proj_factor", "channels_reduction", "num_outputs")
_NON_NEGATIVE_INTS = ("high_res_stages",)
_BOOLS = ("use_bias", "use_global_mlp", "use_cross_gating")


def _as_int(value):
    """``value`` as an int if it is an integer (``64``, ``np.int64(64)``, ``64.0``), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    return None


def _checked_config(c):
    """The constructor arguments ``c`` checked and normalised (ints, ``(int, int)`` pairs).

    Raises:
        ValueError: one line naming the first bad argument and its value.
    """
    c = dict(c)
    for key in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
        low = 0 if key in _NON_NEGATIVE_INTS else 1
        value = _as_int(c[key])
        if value is None or value < low:
            raise ValueError(f"{key} must be an integer >= {low}. Received: {key}={c[key]!r}")
        c[key] = value
    for key in _BOOLS:
        if not isinstance(c[key], (bool, np.bool_)):
            raise ValueError(f"{key} must be True or False. Received: {key}={c[key]!r}")
        c[key] = bool(c[key])
    for key in _TUPLE_KEYS:
        value = c[key]
        items = (value, value) if _as_int(value) is not None else value
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__") or len(items) != 2:
            items = None
        else:
            items = tuple(_as_int(v) for v in items)
        if items is None or any(v is None or v < 1 for v in items):
            raise ValueError(f"{key} must be a positive integer or a pair of positive "
                             f"integers (height, width). Received: {key}={value!r}")
        c[key] = items
    for key, high in (("lrelu_slope", None), ("dropout_rate", 1.0)):
        value = c[key]
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) \
            and math.isfinite(value) and value >= 0 and (high is None or value < high)
        if not ok:
            span = "a finite number >= 0" + (f" and < {high:g}" if high is not None else "")
            raise ValueError(f"{key} must be {span}. Received: {key}={value!r}")
        c[key] = float(value)
    _check_config(c)
    return c


def _check_config(c):
    if c["num_supervision_scales"] > c["depth"]:
        raise ValueError(
            f"num_supervision_scales must be <= depth. Received: "
            f"num_supervision_scales={c['num_supervision_scales']}, depth={c['depth']}")
    if c["features"] % c["channels_reduction"]:
        raise ValueError(
            f"features must be divisible by channels_reduction. Received: "
            f"features={c['features']}, channels_reduction={c['channels_reduction']}")


def _level_sizes(c, i):
    """(block_size, grid_size) at UNet level i, as the official code picks them."""
    if i < c["high_res_stages"]:
        return c["block_size_hr"], c["grid_size_hr"]
    return c["block_size_lr"], c["block_size_lr"]


def _size_multiple(c):
    levels = [list(_level_sizes(c, i)) for i in range(c["depth"])]
    return partition.size_multiple(levels, c["depth"], c["block_size_lr"])


def _build_graph(inputs, c, dtype):
    """Wire the official MAXIM forward pass (paper Fig. 2); returns the flat list of outputs.

    Per stage: input convolutions (fused with the previous stage's SAM features),
    the encoder, the bottleneck, the cross-gated skip features, the decoder with
    its SAMs / output convolutions. Layers are created in the official order (the
    converter and saved files rely on their names, see :class:`_Wiring`).
    """
    w = _Wiring(c, dtype)
    shortcuts = [inputs] + [
        L.NearestDownsample(2**i, name=f"input_scale_{i}", dtype=dtype)(inputs)
        for i in range(1, w.num_scales)
    ]
    outputs_all = []
    sam_features, encs_prev, decs_prev = [], [], []
    for s in range(c["num_stages"]):
        x_scales = w.stage_inputs(s, shortcuts, sam_features)
        x, encs = w.encoder(s, x_scales, encs_prev=encs_prev, decs_prev=decs_prev)
        x = w.bottleneck(s, x)
        skips = w.skip_features(s, encs, x)
        outputs, decs, sam_features = w.decoder(s, x, skip_features=skips, shortcuts=shortcuts)
        encs_prev, decs_prev = encs[::-1], decs
        outputs_all.extend(
            keras.layers.Activation("linear", dtype="float32", name=f"stage{s}_out{k}")(o)
            for k, o in enumerate(outputs))
    return outputs_all


class _Wiring:
    """The parts of one MAXIM stage, for :func:`_build_graph`.

    Sub-modules the official code leaves unnamed (``UpSampleRatio_k``, ``Conv_k``)
    are numbered over the whole model in creation order, as Flax does; so the
    methods must be called in the order :func:`_build_graph` calls them.
    """

    def __init__(self, c, dtype):
        self.config, self.features, self.depth = c, c["features"], c["depth"]
        self.num_scales = c["num_supervision_scales"]  # scales with an input and an output
        self.common = dict(use_bias=c["use_bias"], dtype=dtype)
        self.mlp = dict(block_gmlp_factor=c["block_gmlp_factor"],
                        grid_gmlp_factor=c["grid_gmlp_factor"], dropout_rate=c["dropout_rate"])
        self.counters = {"UpSampleRatio": 0, "Conv": 0}

    def width(self, level):
        """Channels at UNet level ``level`` (resolution ``1 / 2**level``)."""
        return (2**level) * self.features

    def auto_name(self, kind):
        """Flax's name for the next unnamed ``kind`` sub-module: ``<kind>_<k>``."""
        name = f"{kind}_{self.counters[kind]}"
        self.counters[kind] += 1
        return name

    def conv(self, filters, k, name):
        return keras.layers.Conv2D(filters, k, padding="same", name=name, **self.common)

    def stage_inputs(self, s, shortcuts, sam_features):
        """Per scale: 3x3 conv of the input image; from stage 1 on fused with the
        previous stage's SAM features (cross-gating, or concat + 1x1 conv)."""
        c, x_scales = self.config, []
        for i in range(self.num_scales):
            x_scale = self.conv(self.width(i), 3, f"stage_{s}_input_conv_{i}")(shortcuts[i])
            if s > 0:
                if c["use_cross_gating"]:
                    block, grid = _level_sizes(c, i)
                    x_scale, _ = L.CrossGatingBlock(
                        self.width(i), block, grid, input_proj_factor=c["input_proj_factor"],
                        dropout_rate=c["dropout_rate"], upsample_y=False,
                        name=f"stage_{s}_input_fuse_sam_{i}", **self.common,
                    )(x_scale, sam_features.pop())
                else:
                    cat = keras.layers.Concatenate(name=f"stage_{s}_input_cat_{i}",
                                                   dtype=self.common["dtype"])(
                        [x_scale, sam_features.pop()])
                    x_scale = self.conv(self.width(i), 1, f"stage_{s}_input_catconv_{i}")(cat)
            x_scales.append(x_scale)
        return x_scales

    def encoder(self, s, x_scales, encs_prev, decs_prev):
        """The encoder levels; from stage 1 on each cross-gates with the previous
        stage's encoder + decoder features. Returns ``(x, bridges)``."""
        c, encs = self.config, []
        x = x_scales[0]
        for i in range(self.depth):
            block, grid = _level_sizes(c, i)
            cross = None
            if s > 0:
                enc_prev, dec_prev = encs_prev.pop(), decs_prev.pop()
                cross = keras.layers.Add(name=f"stage_{s}_enc_dec_sum_{i}",
                                         dtype=self.common["dtype"])([enc_prev, dec_prev])
            x, bridge = L.UNetEncoderBlock(
                self.width(i), block, grid, num_groups=c["num_groups"],
                lrelu_slope=c["lrelu_slope"], input_proj_factor=c["input_proj_factor"],
                channels_reduction=c["channels_reduction"], downsample=True,
                use_global_mlp=c["use_global_mlp"], use_cross_gating=s > 0,
                name=f"stage_{s}_encoder_block_{i}", **self.mlp, **self.common,
            )(x, skip=x_scales[i] if i < self.num_scales else None, cross=cross)
            encs.append(bridge)
        return x, encs

    def bottleneck(self, s, x):
        """The bottleneck blocks (grid size = ``block_size_lr``, as the official code)."""
        c = self.config
        for i in range(c["num_bottleneck_blocks"]):
            x = L.BottleneckBlock(
                self.width(self.depth - 1), c["block_size_lr"], c["block_size_lr"],
                num_groups=c["num_groups"], input_proj_factor=c["input_proj_factor"],
                channels_reduction=c["channels_reduction"],
                name=f"stage_{s}_global_block_{i}", **self.mlp, **self.common,
            )(x)
        return x

    def skip_features(self, s, encs, global_feature):
        """Per level (coarse to fine): every encoder bridge resized to the level,
        concatenated, cross-gated with the global feature (or two convs)."""
        c, skips_all = self.config, []
        for i in reversed(range(self.depth)):
            block, grid = _level_sizes(c, i)
            signal = _concat([
                L.UpSampleRatio(self.width(i), 2.0 ** (j - i), name=self.auto_name("UpSampleRatio"),
                                **self.common)(enc)
                for j, enc in enumerate(encs)
            ], f"stage_{s}_skip_signal_{i}", self.common["dtype"])
            if c["use_cross_gating"]:
                skips, global_feature = L.CrossGatingBlock(
                    self.width(i), block, grid, input_proj_factor=c["input_proj_factor"],
                    dropout_rate=c["dropout_rate"], upsample_y=True,
                    name=f"stage_{s}_cross_gating_block_{i}", **self.common,
                )(signal, global_feature)
            else:
                skips = self.conv(self.width(i), 1, self.auto_name("Conv"))(signal)
                skips = self.conv(self.width(i), 3, self.auto_name("Conv"))(skips)
            skips_all.append(skips)
        return skips_all

    def decoder(self, s, x, skip_features, shortcuts):
        """The decoder levels, each fed all skip features resized to it; at the
        supervised scales a SAM (inner stages) or the output conv + input residual
        (last stage). Returns ``(outputs, decoder features, SAM features)``."""
        c, depth = self.config, self.depth
        outputs, decs, sam_features = [], [], []
        for i in reversed(range(depth)):
            block, grid = _level_sizes(c, i)
            signal = _concat([
                L.UpSampleRatio(self.width(i), 2.0 ** (depth - j - 1 - i),
                                name=self.auto_name("UpSampleRatio"), **self.common)(skip)
                for j, skip in enumerate(skip_features)
            ], f"stage_{s}_decoder_signal_{i}", self.common["dtype"])
            x = L.UNetDecoderBlock(
                self.width(i), block, grid, num_groups=c["num_groups"],
                lrelu_slope=c["lrelu_slope"], input_proj_factor=c["input_proj_factor"],
                channels_reduction=c["channels_reduction"], use_global_mlp=c["use_global_mlp"],
                name=f"stage_{s}_decoder_block_{i}", **self.mlp, **self.common,
            )(x, bridge=signal)
            decs.append(x)
            if i < self.num_scales:
                if s < c["num_stages"] - 1:
                    sam, out = L.SAM(
                        self.width(i), c["num_outputs"],
                        name=f"stage_{s}_supervised_attention_module_{i}", **self.common,
                    )(x, shortcuts[i])
                    sam_features.append(sam)
                else:
                    out = self.conv(c["num_outputs"], 3, f"stage_{s}_output_conv_{i}")(x)
                    if c["num_outputs"] == 3:
                        out = keras.layers.Add(name=f"stage_{s}_output_residual_{i}")(
                            [out, shortcuts[i]])
                outputs.append(out)
        return outputs, decs, sam_features


def _concat(tensors, name, dtype):
    """Channel concatenation in the model's policy (a layer left at the global
    float32 policy would cast bfloat16 features to float32 and back)."""
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=-1, name=name, dtype=dtype)(tensors)


def count_official_params(config):
    """Parameter count of the official model with ``config`` (no weights built)."""
    model = MAXIM(**config)
    return int(sum(np.prod(v.shape) for v in model.weights))
