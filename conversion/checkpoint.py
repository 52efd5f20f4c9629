"""Convert official MAXIM JAX/Flax checkpoints (``.npz``) to Keras ``.keras`` files.

Pipeline: read the ``.npz`` safely -> take the model config (given, a named
variant, or inferred from tensor names and shapes) -> build the Keras MAXIM ->
map every Keras variable to its official parameter **by name** (the Keras
sub-layers carry the Flax module names, so the table is derived from the
module structure) -> refuse on any missing / unexpected / mis-shaped tensor ->
optionally compare against reference outputs -> save atomically.
"""

import json
import math
import numbers
import os
import re
import zipfile

import numpy as np

from maxim_tf import fileio
from maxim_tf.errors import CheckFailedError, MaximError

PARAM_PREFIX = "opt/target/"
OPTIMIZER_PREFIX = "opt/state/"


class ConversionError(MaximError, ValueError):
    """The checkpoint cannot be converted; the message says why."""


class ReferenceMismatchError(CheckFailedError, ConversionError):
    """The converted model differs from the ``reference`` outputs by more than the
    tolerance (``maxim-tf convert --reference`` exits 3, as ``export --verify`` does)."""


# --------------------------------------------------------------------------
# Reading


def load_official_params(path):
    """Read the model parameters of an official checkpoint.

    Args:
        path: ``checkpoint.npz`` in the released layout (flat ``/``-joined keys,
            parameters under ``opt/target/``; optimizer state under
            ``opt/state/`` is ignored). A file holding bare parameter paths
            (no ``opt/target/`` prefix) is accepted too.

    Returns:
        ``(params, ignored)``: dict Flax path (e.g.
        ``stage_0_input_conv_0/kernel``) -> float32 array, and the number of
        ignored non-parameter entries.

    Raises:
        ConversionError: unreadable, truncated, pickled or non-npz file, or
            tensors holding NaN or Inf (listed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such checkpoint file")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path}: the file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path}: not an .npz checkpoint (not a zip archive; truncated download?)")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            has_prefix = any(k.startswith(PARAM_PREFIX) for k in keys)
            params, ignored = {}, 0
            for key in keys:
                if has_prefix and not key.startswith(PARAM_PREFIX):
                    ignored += 1
                    continue
                name = key[len(PARAM_PREFIX):] if has_prefix else key
                try:
                    array = data[key]
                except ValueError as e:  # object arrays need pickle: refused
                    raise ConversionError(
                        f"{path}: entry {key!r} holds a pickled Python object, which is "
                        f"refused for safety (allow_pickle=False): {e}") from e
                if not isinstance(array, np.ndarray):
                    raise ConversionError(
                        f"{path}: entry {key!r} is not a .npy array (a foreign file in the archive)")
                if array.dtype.kind not in "fiu":
                    raise ConversionError(
                        f"{path}: entry {key!r} has dtype {array.dtype}, expected numbers")
                params[name] = array.astype(np.float32)
    except ConversionError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise ConversionError(f"{path}: corrupt or truncated .npz ({type(e).__name__}: {e})") from e
    if not params:
        raise ConversionError(f"{path}: no model parameters found (expected keys under {PARAM_PREFIX!r})")
    non_finite = sorted(k for k, v in params.items() if not np.isfinite(v).all())
    if non_finite:
        shown = ", ".join(non_finite[:10]) + (f" and {len(non_finite) - 10} more"
                                              if len(non_finite) > 10 else "")
        raise ConversionError(f"{path}: {len(non_finite)} tensor(s) hold NaN or Inf values "
                              f"(a corrupt or diverged checkpoint): {shown}")
    return params, ignored


# --------------------------------------------------------------------------
# Config inference


def _count(params, pattern):
    rx = re.compile(pattern)
    found = set()
    for k in params:
        m = rx.match(k)
        if m:
            found.add(int(m.group(1)))
    return len(found)


def _square(n, what):
    r = math.isqrt(int(n))
    if r * r != n:
        raise ConversionError(
            f"cannot infer {what}: {n} positions is not a square; pass --config with the sizes")
    return (r, r)


def infer_config(params):
    """Infer the MAXIM constructor config from parameter names and shapes.

    Block/grid sizes are inferred as squares (all released models use square
    sizes); ``dropout_rate``, ``lrelu_slope`` and ``grid_size_lr`` leave no
    trace in the weights and take the official defaults.
    """
    from maxim_tf.presets import DEFAULT_CONFIG

    def get(key, ndim):
        if key not in params:
            raise ConversionError(f"cannot infer the config: tensor {key!r} is missing")
        if params[key].ndim != ndim:
            raise ConversionError(f"cannot infer the config: tensor {key!r} has shape "
                                  f"{params[key].shape}, expected {ndim} dimensions")
        return params[key]

    c = dict(DEFAULT_CONFIG)
    c["num_stages"] = _count(params, r"stage_(\d+)_")
    c["num_supervision_scales"] = _count(params, r"stage_0_input_conv_(\d+)/")
    c["depth"] = _count(params, r"stage_0_encoder_block_(\d+)/")
    c["num_bottleneck_blocks"] = _count(params, r"stage_0_global_block_(\d+)/")
    if not (c["num_stages"] and c["num_supervision_scales"] and c["depth"]):
        raise ConversionError("cannot infer the config: this does not look like a MAXIM checkpoint "
                              "(no stage_0_input_conv_* / stage_0_encoder_block_* tensors)")
    c["features"] = int(get("stage_0_input_conv_0/kernel", 4).shape[-1])
    c["use_bias"] = "stage_0_input_conv_0/bias" in params
    enc0 = "stage_0_encoder_block_0/"
    c["num_groups"] = _count(params, enc0 + r"channel_attention_block_1(\d+)/")
    c["use_global_mlp"] = any(k.startswith(enc0 + "SplitHeadMultiAxisGmlpLayer_0/") for k in params)
    c["use_cross_gating"] = any(k.startswith("stage_0_cross_gating_block_") for k in params)
    ca = get(enc0 + "channel_attention_block_10/channel_attention/Conv_0/kernel", 4)
    c["channels_reduction"] = int(ca.shape[2] // ca.shape[3])
    last = c["num_stages"] - 1
    c["num_outputs"] = int(get(f"stage_{last}_output_conv_0/kernel", 4).shape[-1])

    if c["num_bottleneck_blocks"]:
        mab = "stage_0_global_block_0/SplitHeadMultiAxisGmlpLayer_0/"
        k = get(mab + "in_project/kernel", 2)
        c["input_proj_factor"] = int(k.shape[1] // k.shape[0])
        half = k.shape[1] // 2
        c["grid_gmlp_factor"] = int(get(mab + "GridGmlpLayer/in_project/kernel", 2).shape[1] // half)
        c["block_gmlp_factor"] = int(get(mab + "BlockGmlpLayer/in_project/kernel", 2).shape[1] // half)
        c["block_size_lr"] = _square(
            get(mab + "BlockGmlpLayer/BlockGatingUnit/Dense_0/kernel", 2).shape[0], "block_size_lr")

    # Per-level (block, grid) sizes, from the encoder MABs or, without global
    # MLPs, from the cross-gating blocks.
    levels = []
    for i in range(c["depth"]):
        enc = f"stage_0_encoder_block_{i}/SplitHeadMultiAxisGmlpLayer_0/"
        cgb = f"stage_0_cross_gating_block_{i}/SplitHeadMultiAxisGating_x/"
        if enc + "BlockGmlpLayer/BlockGatingUnit/Dense_0/kernel" in params:
            b = get(enc + "BlockGmlpLayer/BlockGatingUnit/Dense_0/kernel", 2).shape[0]
            g = get(enc + "GridGmlpLayer/GridGatingUnit/Dense_0/kernel", 2).shape[0]
        elif cgb + "Dense_1/kernel" in params:
            b = get(cgb + "Dense_1/kernel", 2).shape[0]
            g = get(cgb + "Dense_0/kernel", 2).shape[0]
        else:
            levels.append(None)
            continue
        levels.append((_square(b, f"block size of level {i}"), _square(g, f"grid size of level {i}")))
    known = [lv for lv in levels if lv is not None]
    if known:
        lr = (c["block_size_lr"], c["block_size_lr"])
        c["block_size_hr"], c["grid_size_hr"] = known[0]
        # High-res levels come first; the first level using the low-res sizes
        # (different from the high-res ones) ends them.
        hr_levels = c["depth"]
        for i, lv in enumerate(levels):
            if lv is not None and lv == lr and lv != known[0]:
                hr_levels = i
                break
        c["high_res_stages"] = hr_levels
    return c


# --------------------------------------------------------------------------
# Mapping


def flax_path(keras_path):
    """Official parameter path of a Keras variable path (names match by design)."""
    head, _, leaf = keras_path.rpartition("/")
    leaf = {"gamma": "scale", "beta": "bias"}.get(leaf, leaf)
    return f"{head}/{leaf}"


def to_keras(flax_name, array):
    """Port one tensor: the only layout change is Flax ConvTranspose -> Keras
    Conv2DTranspose (kernel (kh, kw, in, out) -> flipped spatially, (kh, kw, out, in))."""
    if re.search(r"(^|/)ConvTranspose_\d+/kernel$", flax_name):
        return np.ascontiguousarray(array[::-1, ::-1].transpose(0, 1, 3, 2))
    return array


def expected_parameters(model):
    """Official parameter names and shapes a Keras MAXIM expects: {path: shape}."""
    out = {}
    for v in model.weights:
        name = flax_path(v.path)
        shape = tuple(v.shape)
        if re.search(r"(^|/)ConvTranspose_\d+/kernel$", name):
            shape = shape[:2] + (shape[3], shape[2])
        if name in out:
            raise RuntimeError(f"two Keras variables map to {name!r}")
        out[name] = shape
    return out


def assign_weights(model, params):
    """Assign every Keras variable exactly once from ``params`` (by name).

    Raises:
        ConversionError: listing missing, unexpected and mis-shaped tensors.
    """
    expected = expected_parameters(model)
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    misshaped = sorted(
        (k, tuple(params[k].shape), expected[k]) for k in set(expected) & set(params)
        if tuple(params[k].shape) != expected[k])
    if missing or unexpected or misshaped:
        lines = ["checkpoint does not match the model configuration:"]

        def show(title, items):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {it}" for it in items[:20])
                if len(items) > 20:
                    lines.append(f"    ... and {len(items) - 20} more")

        show("missing tensors", missing)
        show("unexpected tensors", unexpected)
        show("mis-shaped tensors (name, checkpoint shape, expected shape)", misshaped)
        raise ConversionError("\n".join(lines))
    for v in model.weights:
        name = flax_path(v.path)
        v.assign(to_keras(name, params[name]))
    return len(expected)


# --------------------------------------------------------------------------
# Verification and saving


def read_reference(case_path):
    """``(input, {stage{s}_out{k}: array})`` of a reference case ``.npz``; ConversionError if unusable."""
    case_path = os.fspath(case_path)
    if not os.path.isfile(case_path):
        raise ConversionError(f"{case_path}: no such reference file")
    try:
        with np.load(case_path, allow_pickle=False) as case:
            if "input" not in case.files:
                raise ConversionError(f"{case_path}: the reference has no 'input' array "
                                      f"(found {sorted(case.files)[:10]})")
            x = case["input"]
            refs = {k: case[k] for k in case.files if k.startswith("stage")}
    except ConversionError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise ConversionError(f"{case_path}: not a readable reference .npz "
                              f"({type(e).__name__}: {e})") from e
    if not refs:
        raise ConversionError(f"{case_path}: the reference has no stage*_out* arrays")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ConversionError(f"{case_path}: reference input must be [N, H, W, 3]. "
                              f"Received: shape={x.shape}")
    return x.astype(np.float32), refs


def compare_with_reference(model_all_outputs, case_path):
    """Max abs error of every stage/scale output against a reference ``case_*.npz``.

    Returns:
        dict ``stage{s}_out{k}`` -> max abs error.
    """
    x, refs = read_reference(case_path)
    # One eager call: tracing a graph for a single batch costs more than it saves.
    outs = model_all_outputs(x, training=False)
    outs = [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
    names = list(model_all_outputs.output_names)
    errors = {}
    for name, out in zip(names, outs):
        if name in refs:
            errors[name] = float(np.max(np.abs(out - refs[name])))
    missing = sorted(set(refs) - set(errors))
    if missing:
        raise ConversionError(f"{case_path}: model has no outputs for {missing}")
    return errors


def check_output(output, overwrite=True):
    """Raise ConversionError unless ``output`` is a ``.keras`` path that can be written
    (and, without ``overwrite``, does not exist yet)."""
    output = os.fspath(output)
    if os.path.isdir(output):
        raise ConversionError(f"{output}: is a directory; pass the .keras file to write "
                              f"(e.g. {os.path.join(output, 'model.keras')})")
    if not output.endswith(".keras"):
        raise ConversionError(f"output must end with .keras. Received: {output}")
    if not overwrite and os.path.lexists(output):
        raise ConversionError(f"{output}: already exists; pass --overwrite to replace it")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ConversionError(f"output directory does not exist: {directory}")
    if not os.access(directory, os.W_OK):
        raise ConversionError(f"output directory is not writable: {directory}")
    return output


def read_config(config):
    """A MAXIM config from a dict or a JSON file; ConversionError unless it is an object."""
    source = config
    if isinstance(config, (str, os.PathLike)):
        try:
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConversionError(f"{source}: cannot read the JSON config ({e})") from e
    if not isinstance(config, dict):
        raise ConversionError(f"{source if source is not config else 'config'}: the config must be "
                              f"a JSON object of MAXIM constructor arguments. Received: a "
                              f"{type(config).__name__}")
    return config


def save_atomic(model, output, overwrite=True):
    """Save a Keras model to ``output`` (.keras) via a temp file + rename."""
    output = check_output(output, overwrite=overwrite)
    with fileio.atomic_path(output, suffix=".keras") as tmp:
        model.save(tmp)
    return output


def convert_checkpoint(checkpoint, output=None, *, variant=None, config=None,
                       return_all_outputs=False, reference=None, tolerance=1e-4,
                       overwrite=True):
    """Convert an official MAXIM checkpoint to a Keras model (and ``.keras`` file).

    Args:
        checkpoint: path to the official ``checkpoint.npz``.
        output: path of the ``.keras`` file to write (atomically); None to only
            return the model.
        variant: "S-1" ... "M-3"; the config of that variant (with 3 supervision
            scales, as released).
        config: dict (or path to a JSON file) of MAXIM constructor arguments;
            overrides ``variant``. With neither, the config is inferred from the
            tensor names and shapes.
        return_all_outputs: build the saved model to return every stage/scale
            output instead of only the restored image.
        reference: optional ``case_*.npz`` (``input`` + ``stage{s}_out{k}``) to
            verify against; raises :class:`ReferenceMismatchError` if any output
            differs by more than ``tolerance``.
        tolerance: largest absolute error allowed against ``reference`` (a finite
            number >= 0).
        overwrite: replace an existing ``output`` (the ``maxim-tf convert`` command
            passes False unless ``--overwrite``: an existing file is then refused
            before any work).

    Returns:
        ``(model, report)``; report holds the config, counts and, with a
        reference, the max abs error per output.

    Example:
        >>> model, report = convert_checkpoint("checkpoint.npz", "maxim_s3_sidd.keras")
    """
    import maxim_tf
    from maxim_tf.presets import variant_config

    # Everything that can be checked without the weights is checked first: a bad
    # output path or reference must not cost a whole conversion.
    if output is not None:
        check_output(output, overwrite=overwrite)
    if not _is_number(tolerance) or not math.isfinite(tolerance) or tolerance < 0:
        raise ConversionError(f"tolerance must be a finite number >= 0. Received: "
                              f"tolerance={tolerance!r}")
    if config is not None:
        config = read_config(config)
    if reference is not None:
        read_reference(reference)
    params, ignored = load_official_params(checkpoint)
    if config is not None:
        base = variant_config(variant) if variant else {}
        base.update(config)
        cfg = base
    elif variant is not None:
        cfg = variant_config(variant)
    else:
        try:
            cfg = infer_config(params)
        except (IndexError, ZeroDivisionError, TypeError) as e:
            raise ConversionError(f"{checkpoint}: cannot infer the config from the tensor shapes "
                                  f"({type(e).__name__}: {e}); pass --config or --variant") from e
    cfg = {k: v for k, v in cfg.items() if k != "return_all_outputs"}
    try:
        model = maxim_tf.MAXIM(**cfg, return_all_outputs=True)
    except (TypeError, ValueError, KeyError) as e:
        raise ConversionError(f"invalid MAXIM config {cfg}: {e}") from e
    n = assign_weights(model, params)
    report = {"config": model.maxim_config, "tensors": n, "ignored_entries": ignored}
    if reference is not None:
        errors = compare_with_reference(model, reference)
        report["max_abs_error"] = errors
        worst = max(errors.values())
        if worst > tolerance:
            raise ReferenceMismatchError(
                f"converted model differs from {reference}: max abs error {worst:.3g} > {tolerance}"
                f" ({errors})")
    if not return_all_outputs:
        model = model.with_outputs(False)
    if output is not None:
        report["output"] = save_atomic(model, output, overwrite=overwrite)
    return model, report


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
