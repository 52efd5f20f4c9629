"""MAXIM variants and the released official checkpoints, as data.

Variant configs are the six of the official ``maxim.models.maxim.Model``
factory. Checkpoints: the task/dataset table of the official repository
(google-research/maxim README); PSNR/SSIM as reported there.
"""

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

# Official released checkpoints (google-research/maxim README), stored at
# gs://gresearch/maxim/ckpt/<task>/<checkpoint>/checkpoint.npz.
CHECKPOINTS = [
    # task, evaluated on, checkpoint folder, variant, PSNR, SSIM
    ("Denoising", "SIDD", "SIDD", "S-3", 39.96, 0.960),
    ("Denoising", "DND", "SIDD", "S-3", 39.84, 0.954),
    ("Deblurring", "GoPro", "GoPro", "S-3", 32.86, 0.961),
    ("Deblurring", "HIDE", "GoPro", "S-3", 32.83, 0.956),
    ("Deblurring", "REDS", "REDS", "S-3", 28.93, 0.865),
    ("Deblurring", "RealBlur-R", "RealBlur_R", "S-3", 39.45, 0.962),
    ("Deblurring", "RealBlur-J", "RealBlur_J", "S-3", 32.84, 0.935),
    ("Deraining", "Rain13k", "Rain13k", "S-2", 33.24, 0.933),
    ("Deraining", "Raindrop", "Raindrop", "S-2", 31.87, 0.935),
    ("Dehazing", "RESIDE-Indoor", "SOTS-Indoor", "S-2", 38.11, 0.991),
    ("Dehazing", "RESIDE-Outdoor", "SOTS-Outdoor", "S-2", 34.19, 0.985),
    ("Enhancement", "LOL", "LOL", "S-2", 23.43, 0.863),
    ("Enhancement", "FiveK", "FiveK", "S-2", 26.15, 0.945),
]


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
