"""MAXIM variants and the released official checkpoints, as data.

Variant configs are the six of the official ``maxim.models.maxim.Model``
factory. Checkpoints: the task/dataset table of the official repository
(google-research/maxim README); PSNR/SSIM as reported there. Pure data: importing this module needs no
TensorFlow (``maxim-tf models`` lists the table without it).
"""

import dataclasses
import re

# Defaults of the official MAXIM constructor.
DEFAULT_CONFIG = dict(
    features=64,
    depth=3,
    num_stages=2,
    num_groups=1,
    use_bias=True,
    num_supervision_scales=1,
    lrelu_slope=0.2,
    use_global_mlp=True,
    use_cross_gating=True,
    high_res_stages=2,
    block_size_hr=(16, 16),
    block_size_lr=(8, 8),
    grid_size_hr=(16, 16),
    grid_size_lr=(8, 8),
    num_bottleneck_blocks=1,
    block_gmlp_factor=2,
    grid_gmlp_factor=2,
    input_proj_factor=2,
    channels_reduction=4,
    num_outputs=3,
    dropout_rate=0.0,
)

_COMMON = dict(depth=3, num_groups=2, num_bottleneck_blocks=2, block_gmlp_factor=2,
               grid_gmlp_factor=2, input_proj_factor=2, channels_reduction=4)

# The released checkpoints were trained with supervision at 3 scales.
VARIANTS = {
    "S-1": dict(_COMMON, features=32, num_stages=1),
    "S-2": dict(_COMMON, features=32, num_stages=2),
    "S-3": dict(_COMMON, features=32, num_stages=3),
    "M-1": dict(_COMMON, features=64, num_stages=1),
    "M-2": dict(_COMMON, features=64, num_stages=2),
    "M-3": dict(_COMMON, features=64, num_stages=3),
}
RELEASED_SUPERVISION_SCALES = 3

# Parameter counts of the official parameter trees (3 supervision scales, as
# released), i.e. of tests/fixtures/official/official_variant_manifests.json.
VARIANT_PARAMS = {
    "S-1": 6_139_561, "S-2": 14_176_178, "S-3": 22_212_795,
    "M-1": 19_464_265, "M-2": 43_227_986, "M-3": 66_991_707,
}

OFFICIAL_LICENSE = "Apache-2.0"
OFFICIAL_REPOSITORY = "https://github.com/google-research/maxim"
# Public bucket of the released checkpoints; override with $MAXIM_TF_OFFICIAL_URL.
OFFICIAL_URL = "https://storage.googleapis.com/gresearch/maxim/ckpt"
OFFICIAL_URL_ENV = "MAXIM_TF_OFFICIAL_URL"
# A JSON file of extra presets (a mirror of your own checkpoints), see docs/models.md.
USER_PRESETS_ENV = "MAXIM_TF_PRESETS"
# A preset name is also the name of its cache folder: letters, digits, '.', '_' and '-',
# starting with a letter or digit, at most 100 characters, no '..'; 'all' is reserved
# (`maxim-tf models --clear all`).
NAME_CHARACTERS = "letters, digits, '.', '_' and '-'"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED_NAMES = ("all",)


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named model: a released official checkpoint or a model shipped with maxim_tf.

    Attributes:
        name: stable name, ``maxim-<variant>-<task>-<dataset>`` for the official ones.
        task: "Denoising", "Deblurring", "Deraining", "Dehazing" or "Enhancement".
        dataset: training dataset (the checkpoint folder of the official bucket).
        variant: "S-1" ... "M-3", or None for a custom ``config``.
        path: location of ``checkpoint.npz`` relative to the official base URL
            (``<Task>/<Dataset>/checkpoint.npz``); None for a shipped model.
        results: ``{benchmark: (PSNR, SSIM)}`` as reported by the official README
            (the first item is the benchmark of the training dataset).
        params: parameter count.
        license: license of the weights.
        shipped: file name in ``saved_models/`` for the models shipped in the wheel.
        config: MAXIM constructor arguments overriding ``variant`` (custom presets).
        sha256: expected sha256 of ``checkpoint.npz``, if known (verified on download).
        description: one line for ``maxim-tf models``.
    """

    name: str
    task: str
    dataset: str
    variant: str = None
    path: str = None
    results: dict = dataclasses.field(default_factory=dict)
    params: int = None
    license: str = OFFICIAL_LICENSE
    shipped: str = None
    config: dict = None
    sha256: str = None
    description: str = ""

    @property
    def psnr(self):
        """Reported PSNR on the first benchmark (None if unknown)."""
        return next(iter(self.results.values()))[0] if self.results else None

    @property
    def ssim(self):
        """Reported SSIM on the first benchmark (None if unknown)."""
        return next(iter(self.results.values()))[1] if self.results else None

    def model_config(self):
        """MAXIM constructor arguments of the checkpoint (variant, then ``config``)."""
        base = variant_config(self.variant) if self.variant else {}
        base.update(self.config or {})
        return base


def _official(variant, task, folder, results, description):
    name = f"maxim-{variant.replace('-', '').lower()}-{task.lower()}-" \
           f"{folder.lower().replace('_', '-')}"
    return Preset(name=name, task=task, dataset=folder, variant=variant,
                  path=f"{task}/{folder}/checkpoint.npz", results=results,
                  params=VARIANT_PARAMS[variant], description=description)


# The released checkpoints of google-research/maxim (its README results table):
# 11 checkpoints; PSNR/SSIM as reported there, per benchmark.
OFFICIAL_PRESETS = [
    _official("S-3", "Denoising", "SIDD", {"SIDD": (39.96, 0.960), "DND": (39.84, 0.954)},
              "real camera noise (smartphone sRGB)"),
    _official("S-3", "Deblurring", "GoPro", {"GoPro": (32.86, 0.961), "HIDE": (32.83, 0.956)},
              "motion blur"),
    _official("S-3", "Deblurring", "REDS", {"REDS": (28.93, 0.865)},
              "motion blur with compression artefacts"),
    _official("S-3", "Deblurring", "RealBlur_R", {"RealBlur-R": (39.45, 0.962)},
              "real motion blur (raw-based)"),
    _official("S-3", "Deblurring", "RealBlur_J", {"RealBlur-J": (32.84, 0.935)},
              "real motion blur (JPEG)"),
    _official("S-2", "Deraining", "Rain13k", {"Rain13k": (33.24, 0.933)}, "rain streaks"),
    _official("S-2", "Deraining", "Raindrop", {"Raindrop": (31.87, 0.935)}, "raindrops on glass"),
    _official("S-2", "Dehazing", "SOTS-Indoor", {"RESIDE-Indoor": (38.11, 0.991)}, "indoor haze"),
    _official("S-2", "Dehazing", "SOTS-Outdoor", {"RESIDE-Outdoor": (34.19, 0.985)},
              "outdoor haze"),
    _official("S-2", "Enhancement", "LOL", {"LOL": (23.43, 0.863)}, "low-light enhancement"),
    _official("S-2", "Enhancement", "FiveK", {"FiveK": (26.15, 0.945)}, "photo retouching"),
]

# Trained here on CPU and shipped in the wheel (saved_models/<name>.keras); the
# numbers of these small models are in their model cards (saved_models/<name>.md).
_SHIPPED_CONFIG = dict(features=24, depth=3, num_stages=1, num_groups=1,
                       num_bottleneck_blocks=1, num_supervision_scales=1,
                       block_size_hr=(8, 8), grid_size_hr=(8, 8), block_size_lr=(4, 4),
                       grid_size_lr=(4, 4))
SHIPPED_PRESETS = [
    Preset(name="denoise", task="Denoising", dataset="lomiri photos (synthetic noise)",
           params=1_518_895, license=None,
           shipped="denoise.keras", config=_SHIPPED_CONFIG,
           description="blind colour denoising, noise sigma 0-50 (saved_models/denoise.md)"),
    Preset(name="deblur", task="Deblurring", dataset="lomiri photos (synthetic blur)",
           params=1_518_895, license=None,
           shipped="deblur.keras", config=_SHIPPED_CONFIG,
           description="defocus / Gaussian deblurring (saved_models/deblur.md)"),
]


def name_problem(name):
    """Why ``name`` cannot be a preset name (a string), or None if it can.

    A preset name becomes a folder of the cache, so it must not be able to name any
    other place: see :data:`NAME_CHARACTERS` (no ``/``, ``\\``, ``..``, no empty name).
    """
    if not isinstance(name, str) or not name:
        return "a preset name must be a non-empty string"
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved (`maxim-tf models --clear all`)"
    if ".." in name or not _NAME.fullmatch(name):
        return (f"a preset name may use only {NAME_CHARACTERS}, start with a letter or "
                f"digit, have at most 100 characters and contain no '..'")
    return None


def _user_presets():
    """Presets of the JSON file named by ``$MAXIM_TF_PRESETS`` (none if unset).

    The file maps names to :class:`Preset` fields, e.g.
    ``{"my-denoiser": {"task": "Denoising", "dataset": "mine", "variant": "S-3",
    "path": "Denoising/mine/checkpoint.npz"}}``; ``path`` is relative to the
    official base URL (``$MAXIM_TF_OFFICIAL_URL``).
    """
    import json
    import os

    file = os.environ.get(USER_PRESETS_ENV)
    if not file:
        return []
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise _usage_error(f"${USER_PRESETS_ENV}={file}: cannot read the presets file ({e})") from e
    if not isinstance(data, dict):
        raise _usage_error(f"${USER_PRESETS_ENV}={file}: expected a JSON object of name -> preset")
    fields = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    out = []
    for name, entry in data.items():
        problem = name_problem(name)
        if problem:
            raise _usage_error(f"${USER_PRESETS_ENV}={file}: preset name {name!r} refused: "
                               f"{problem}")
        unknown = sorted(set(entry) - fields) if isinstance(entry, dict) else None
        if unknown is None or unknown or not entry.get("path") or not (
                entry.get("variant") or entry.get("config")):
            raise _usage_error(
                f"${USER_PRESETS_ENV}={file}: preset {name!r} needs task, dataset, path and a "
                f"variant or config; allowed fields: {sorted(fields)}. Received: {entry!r}")
        if entry.get("variant") and entry["variant"] not in VARIANTS:
            raise _usage_error(f"${USER_PRESETS_ENV}={file}: preset {name!r}: unknown variant "
                               f"{entry['variant']!r}; choose one of {sorted(VARIANTS)}")
        entry = dict(entry)
        entry.setdefault("task", "")
        entry.setdefault("dataset", "")
        entry.setdefault("license", "")
        entry["results"] = {k: tuple(v) for k, v in (entry.get("results") or {}).items()}
        out.append(Preset(name=name, **entry))
    return out


def _usage_error(message):
    from maxim_tf.errors import UsageError

    return UsageError(message)


def all_presets():
    """Every preset: shipped, official, then those of ``$MAXIM_TF_PRESETS``.

    Returns:
        dict name -> :class:`Preset`, in that order.
    """
    presets = {}
    for p in SHIPPED_PRESETS + OFFICIAL_PRESETS + _user_presets():
        presets[p.name] = p
    return presets


def get_preset(name):
    """The :class:`Preset` called ``name``, or None."""
    return all_presets().get(name)


def variant_config(variant, **overrides):
    """Full MAXIM config of a named variant ("S-1" ... "M-3").

    Args:
        variant: variant name.
        **overrides: any MAXIM constructor argument.

    Returns:
        dict of constructor arguments (official defaults, then the variant,
        then ``num_supervision_scales=3`` as released, then ``overrides``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}. Choose one of {sorted(VARIANTS)}.")
    config = dict(DEFAULT_CONFIG)
    config.update(VARIANTS[variant])
    config["num_supervision_scales"] = RELEASED_SUPERVISION_SCALES
    config.update(overrides)
    return config
