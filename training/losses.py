"""MAXIM training loss (Tu et al., CVPR 2022, Sec. 3.4).

    L = sum over stages s and scales n of
        L_char(R_sn, T_n) + lambda * L_freq(R_sn, T_n)

with ``T_n`` the target bilinearly rescaled to the size of scale ``n``,
``L_char`` the Charbonnier loss (epsilon = 1e-3) and ``L_freq`` the L1
distance between the 2-D FFTs of output and target (lambda = 0.1).

Conventions (the paper gives the formulas, not the reductions; these follow
the implementations it cites, MPRNet for Charbonnier and MIMO-UNet for the
frequency loss):

* Charbonnier: ``mean(sqrt((R - T)**2 + eps**2))`` over H, W and channels.
* Frequency: unnormalised 2-D DFT over H and W of each channel; L1 is the
  mean over H, W, channels and {real, imaginary} of the absolute difference,
  i.e. ``mean(|Re dF| + |Im dF|) / 2``.
* The target is rescaled with ``tf.image.resize(..., "bilinear",
  antialias=True)`` (equal to ``jax.image.resize(..., "bilinear")``).

Every function returns one value per example (shape ``[N]``) so that a
distributed loop can average over the *global* batch with
``tf.nn.compute_average_loss``. Everything is computed in float32, whatever
the dtype of the model outputs (mixed precision).
"""

import tensorflow as tf

CHARBONNIER_EPSILON = 1e-3
FREQUENCY_WEIGHT = 0.1


def charbonnier(output, target, epsilon=CHARBONNIER_EPSILON):
    """Per-example Charbonnier loss ``mean(sqrt(d**2 + eps**2))``, shape [N]."""
    d = tf.cast(output, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.sqrt(d * d + epsilon * epsilon), axis=[1, 2, 3])


def frequency_l1(output, target):
    """Per-example L1 between the 2-D FFTs of NHWC images, shape [N]."""
    d = tf.cast(output, tf.float32) - tf.cast(target, tf.float32)
    # The DFT is linear: FFT(R) - FFT(T) == FFT(R - T). fft2d works on the
    # two innermost axes, hence NHWC -> NCHW.
    spectrum = tf.signal.fft2d(tf.complex(tf.transpose(d, [0, 3, 1, 2]), 0.0))
    per_elem = tf.abs(tf.math.real(spectrum)) + tf.abs(tf.math.imag(spectrum))
    return 0.5 * tf.reduce_mean(per_elem, axis=[1, 2, 3])


def rescale_target(target, size):
    """Bilinear (antialiased) resize of ``target`` to ``size`` = (h, w); no-op if equal."""
    target = tf.cast(target, tf.float32)
    if target.shape[1] == size[0] and target.shape[2] == size[1] and size[0] is not None:
        return target
    return tf.image.resize(target, size, method="bilinear", antialias=True)


def target_pyramid(target, num_supervision_scales):
    """The ground truth of each supervised scale, coarsest first: ``target`` resized
    (:func:`rescale_target`) to ``H // 2**j x W // 2**j``, the sizes of the model's
    scale outputs (:class:`maxim_tf.layers.NearestDownsample`); the last is ``target``.

    Computing these before a step compiled by XLA keeps the antialiased resize
    (``ScaleAndTranslate``, which XLA has no kernel for) out of it.
    """
    target = tf.cast(target, tf.float32)
    S = int(num_supervision_scales)
    shape = tf.shape(target)
    out = []
    for k in range(S):
        f = 2 ** (S - 1 - k)
        h = target.shape[1] // f if target.shape[1] is not None else shape[1] // f
        w = target.shape[2] // f if target.shape[2] is not None else shape[2] // f
        out.append(target if f == 1 else rescale_target(target, (h, w)))
    return out


def maxim_loss(outputs, target, num_supervision_scales, epsilon=CHARBONNIER_EPSILON,
               frequency_weight=FREQUENCY_WEIGHT):
    """The paper's multi-stage, multi-scale loss.

    Args:
        outputs: flat list of model outputs in the official order
            ``[stage0_scale0 (coarsest), ..., stage0_scale{S-1} (full), stage1_scale0, ...]``
            (``MAXIM(..., return_all_outputs=True)``).
        target: float [N, H, W, 3] ground truth at full resolution, or the list of
            the S scales' targets, coarsest first (:func:`target_pyramid`).
        num_supervision_scales: S, the number of scales per stage.
        epsilon: Charbonnier epsilon.
        frequency_weight: lambda of the frequency term.

    Returns:
        ``(total, terms)``: ``total`` float32 [N], the per-example loss summed over
        all stages and scales; ``terms`` a dict ``{"stage{s}_scale{k}": [N]}``
        with each output's contribution (Charbonnier + lambda * frequency).
    """
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    S = int(num_supervision_scales)
    if not outputs or len(outputs) % S:
        raise ValueError(
            f"Expected a multiple of num_supervision_scales={S} outputs. "
            f"Received: {len(outputs)} outputs.")
    pyramid = list(target) if isinstance(target, (list, tuple)) else None
    if pyramid is not None and len(pyramid) != S:
        raise ValueError(f"Expected {S} targets (one per supervised scale). "
                         f"Received: {len(pyramid)}.")
    targets = {}
    terms = {}
    total = None
    for i, out in enumerate(outputs):
        size = (out.shape[1], out.shape[2])
        if size[0] is None or size[1] is None:
            size_t = tf.shape(out)[1:3]
            key = i % S
        else:
            size_t = size
            key = size
        if pyramid is not None:
            t = tf.cast(pyramid[i % S], tf.float32)
        else:
            if key not in targets:
                targets[key] = rescale_target(target, size_t)
            t = targets[key]
        term = charbonnier(out, t, epsilon) + frequency_weight * frequency_l1(out, t)
        terms[f"stage{i // S}_scale{i % S}"] = term
        total = term if total is None else total + term
    return total, terms
