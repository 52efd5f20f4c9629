"""On-the-fly synthetic degradations for training on folders of clean photos.

A degradation pipeline is a list of specs applied in order, e.g.::

    [{"type": "gaussian_blur", "sigma": [0.5, 2.0], "p": 0.5},
     {"type": "gaussian_noise", "sigma": [5, 50]},
     {"type": "jpeg", "quality": [40, 95], "p": 0.5}]

Each spec draws its parameters uniformly from the given ``[low, high]``
ranges and is applied with probability ``p`` (default 1). All randomness is
stateless, driven by a ``[2]`` int seed, so an example's degradation is a
pure function of (run seed, example counter): reproducible and resumable.

Types and parameters (images are float32 HWC in [0, 1]):

* ``gaussian_noise``: ``sigma`` in 8-bit levels (e.g. [0, 50]).
* ``poisson_noise``: ``peak`` photons at white (smaller = noisier, e.g. [10, 500]).
* ``gaussian_blur``: ``sigma`` in pixels.
* ``defocus_blur``: disk of ``radius`` pixels (antialiased edge).
* ``motion_blur``: line of ``length`` pixels at ``angle`` degrees.
* ``jpeg``: JPEG re-encoding at integer ``quality`` (1..100).
* ``quantize``: clip to [0, 1] and round to ``levels`` (default 256: 8-bit
  files, as users' noisy photos are stored).
* ``one_of``: apply exactly one of ``options`` (a list of specs), chosen
  uniformly, e.g. Gaussian *or* defocus blur.
"""

import math

import tensorflow as tf

_PARAMS = {
    "gaussian_noise": ("sigma",),
    "poisson_noise": ("peak",),
    "gaussian_blur": ("sigma",),
    "defocus_blur": ("radius",),
    "motion_blur": ("length", "angle"),
    "jpeg": ("quality",),
    "quantize": (),
    "one_of": (),
}
_DEFAULT_RANGES = {"angle": [0.0, 180.0]}
_EXTRA_KEYS = {"quantize": {"levels"}, "one_of": {"options"}}


def validate(specs):
    """Check a list of degradation specs; returns a normalised copy or raises ValueError."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ValueError(f"degradations must be a non-empty list of specs. Received: {specs!r}")
    out = []
    for i, spec in enumerate(specs):
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in _PARAMS:
            raise ValueError(
                f"degradations[{i}]: unknown type {kind!r}; choose one of {sorted(_PARAMS)}. "
                f"Received: {spec!r}")
        unknown = set(spec) - {"type", "p", *_PARAMS[kind], *_EXTRA_KEYS.get(kind, ())}
        if unknown:  # first: a typo explains the "missing" parameter better than its absence
            raise ValueError(f"degradations[{i}] ({kind}): unknown keys {sorted(unknown)}; "
                             f"{kind} takes {sorted({'p', *_PARAMS[kind], *_EXTRA_KEYS.get(kind, ())})}.")
        p = spec.get("p", 1.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise ValueError(f"degradations[{i}] ({kind}): p must be a number in [0, 1]. "
                             f"Received: p={p!r}")
        norm = {"type": kind, "p": float(p)}
        if not 0.0 <= norm["p"] <= 1.0:
            raise ValueError(f"degradations[{i}]: p must be in [0, 1]. Received: p={norm['p']}")
        if kind == "quantize":
            levels = spec.get("levels", 256)
            if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
                raise ValueError(f"degradations[{i}] (quantize): levels must be an integer "
                                 f">= 2. Received: levels={levels!r}")
            norm["levels"] = levels
        if kind == "one_of":
            options = spec.get("options")
            if not isinstance(options, (list, tuple)) or not options:
                raise ValueError(f"degradations[{i}] (one_of): options must be a non-empty "
                                 f"list of specs. Received: {options!r}")
            try:
                norm["options"] = validate(options)
            except ValueError as e:
                raise ValueError(f"degradations[{i}] (one_of): {e}") from e
        for name in _PARAMS[kind]:
            rng = spec.get(name, _DEFAULT_RANGES.get(name))
            if isinstance(rng, (int, float)):
                rng = [rng, rng]
            if (not isinstance(rng, (list, tuple)) or len(rng) != 2
                    or not all(isinstance(v, (int, float)) for v in rng) or rng[0] > rng[1]):
                raise ValueError(
                    f"degradations[{i}] ({kind}): {name} must be a number or [low, high] "
                    f"with low <= high. Received: {name}={rng!r}")
            norm[name] = [float(rng[0]), float(rng[1])]
        if kind == "jpeg" and not (1 <= norm["quality"][0] and norm["quality"][1] <= 100):
            raise ValueError(f"degradations[{i}]: jpeg quality must be within [1, 100]. "
                             f"Received: {norm['quality']}")
        if kind in ("gaussian_blur", "defocus_blur", "motion_blur", "poisson_noise"):
            key = _PARAMS[kind][0]
            if norm[key][0] <= 0:
                raise ValueError(f"degradations[{i}] ({kind}): {key} must be > 0. "
                                 f"Received: {norm[key]}")
        out.append(norm)
    return out


def _uniform(seed, rng):
    return tf.random.stateless_uniform([], seed, rng[0], rng[1]) if rng[1] > rng[0] \
        else tf.constant(rng[0], tf.float32)


def _convolve(image, kernel):
    """Same-size convolution of an HWC image with a 2-D kernel (reflect padding)."""
    k = kernel.shape[0]
    r = k // 2
    x = tf.pad(image[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")[0]


def _grid(radius):
    ax = tf.range(-radius, radius + 1, dtype=tf.float32)
    return tf.meshgrid(ax, ax, indexing="ij")  # (y, x)


def gaussian_kernel(sigma, radius):
    y, x = _grid(radius)
    k = tf.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return k / tf.reduce_sum(k)


def disk_kernel(r, radius):
    y, x = _grid(radius)
    k = tf.clip_by_value(r + 0.5 - tf.sqrt(x * x + y * y), 0.0, 1.0)
    return k / tf.reduce_sum(k)


def motion_kernel(length, angle_deg, radius):
    """Antialiased line segment of ``length`` pixels through the centre."""
    y, x = _grid(radius)
    a = angle_deg * (math.pi / 180.0)
    c, s = tf.cos(a), tf.sin(a)
    along = x * c - y * s  # image y points down: positive angles go counter-clockwise
    across = x * s + y * c
    half = tf.maximum(length - 1.0, 0.0) / 2.0
    beyond = tf.maximum(tf.abs(along) - half, 0.0)
    k = tf.maximum(1.0 - tf.sqrt(across * across + beyond * beyond), 0.0)
    return k / tf.reduce_sum(k)


def blur_kernel(spec, seed):
    """The 2-D kernel a validated ``gaussian_blur`` / ``defocus_blur`` / ``motion_blur``
    spec draws with ``seed`` (as :func:`degrade` applies it; a fixed-level spec such as
    ``{"sigma": [2, 2]}`` always gives the same kernel)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    kind = spec["type"]
    if kind == "gaussian_blur":
        radius = max(1, int(math.ceil(3.0 * spec["sigma"][1])))
        return gaussian_kernel(_uniform(seeds[0], spec["sigma"]), radius)
    if kind == "defocus_blur":
        radius = int(math.ceil(spec["radius"][1])) + 1
        return disk_kernel(_uniform(seeds[0], spec["radius"]), radius)
    if kind == "motion_blur":
        radius = int(math.ceil(spec["length"][1] / 2.0)) + 1
        return motion_kernel(_uniform(seeds[0], spec["length"]),
                             _uniform(seeds[2], spec["angle"]), radius)
    raise ValueError(f"{kind!r} is not a blur degradation")


def _apply_one(image, spec, seed):
    seeds = tf.random.experimental.stateless_split(seed, 4)
    kind = spec["type"]
    if kind == "gaussian_noise":
        sigma = _uniform(seeds[0], spec["sigma"]) / 255.0
        return image + sigma * tf.random.stateless_normal(tf.shape(image), seeds[1])
    if kind == "poisson_noise":
        peak = _uniform(seeds[0], spec["peak"])
        counts = tf.random.stateless_poisson(tf.shape(image), seeds[1], image * peak,
                                             dtype=tf.float32)
        return counts / peak
    if kind in ("gaussian_blur", "defocus_blur", "motion_blur"):
        return _convolve(image, blur_kernel(spec, seed))
    if kind == "jpeg":
        lo, hi = int(spec["quality"][0]), int(spec["quality"][1])
        image = tf.clip_by_value(image, 0.0, 1.0)
        if lo == hi:
            out = tf.image.adjust_jpeg_quality(image, lo)
        else:
            out = tf.image.stateless_random_jpeg_quality(image, lo, hi + 1, seeds[0])
        return tf.reshape(out, tf.shape(image))
    if kind == "quantize":
        scale = float(spec["levels"] - 1)
        return tf.round(tf.clip_by_value(image, 0.0, 1.0) * scale) / scale
    if kind == "one_of":
        options = spec["options"]
        pick = tf.random.stateless_uniform([], seeds[0], 0, len(options), dtype=tf.int32)
        branches = [lambda o=o: degrade(image, [o], seeds[1], clip=False) for o in options]
        return tf.switch_case(pick, branches)
    raise ValueError(f"Unknown degradation type {kind!r}")


def degrade(image, specs, seed, clip=True):
    """Apply a validated list of degradation specs to one float32 HWC image in [0, 1].

    Args:
        image: float32 [H, W, 3] in [0, 1].
        specs: list from :func:`validate`.
        seed: int32/int64 [2] stateless seed.
        clip: clip the result to [0, 1] (default).

    Returns:
        The degraded image, float32 [H, W, 3].
    """
    image = tf.convert_to_tensor(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), len(specs) * 2)
    for i, spec in enumerate(specs):
        coin_seed, op_seed = seeds[2 * i], seeds[2 * i + 1]
        if spec["p"] >= 1.0:
            image = _apply_one(image, spec, op_seed)
        elif spec["p"] > 0.0:
            take = tf.random.stateless_uniform([], coin_seed) < spec["p"]
            image = tf.cond(take, lambda s=spec, o=op_seed, x=image: _apply_one(x, s, o),
                            lambda x=image: x)
    return tf.clip_by_value(image, 0.0, 1.0) if clip else image
