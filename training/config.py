"""Training configuration: JSON files in ``training/configs/`` plus overrides.

A config is a JSON object; :data:`DEFAULTS` lists every key. Values given on
the command line as ``--set key.sub=value`` (``value`` parsed as JSON when it
can be, else taken as a string) override the file.
"""

import copy
import json
import pathlib

from maxim_tf.errors import MaximError

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"

DEFAULTS = {
    "task": None,                 # free text: denoise, deblur, derain, dehaze, enhance
    "variant": "S-3",            # official variant; null: init_from's config, or the
                                  # official constructor defaults + "model"
    "model": {},                  # MAXIM constructor overrides (e.g. a tiny test model)
    "data": {},                   # see maxim_tf.training.data.make_source
    "crop_size": 256,             # square training crops (static shapes)
    "global_batch_size": 8,       # examples per step, over all replicas and workers
    "steps": 100_000,
    "seed": 0,
    "optimizer": {
        "learning_rate": 2e-4,    # paper: Adam, cosine decay 2e-4 -> 1e-7
        "end_learning_rate": 1e-7,
        "warmup_steps": 0,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "clip_global_norm": None,  # e.g. 1.0; norm of the *global* (all-reduced) gradient
    },
    "loss": {"charbonnier_epsilon": 1e-3, "frequency_weight": 0.1},
    "augment": {"flips": True, "rot90": True, "mixup": 0.0, "mixup_alpha": 1.2},
    "mixed_precision": None,      # null, "mixed_bfloat16" or "mixed_float16"
    "strategy": "auto",           # auto, single, mirrored, multi_worker, tpu
    "tpu": None,                  # TPU name/address for strategy "tpu" ("" = local TPU VM)
    "jit_compile": False,         # XLA for the train step (GPU/TPU; fixed crops)
    "deterministic": False,       # tf.config.experimental.enable_op_determinism()
    "graph_optimizations": True,  # Grappler; false starts much faster on small CPU boxes
    "model_dir": None,            # checkpoints, TensorBoard logs, train_log.jsonl
    "export": None,               # final .keras path (default: <model_dir>/model.keras)
    "init_from": None,            # .keras to fine-tune from (e.g. a converted official checkpoint)
    "zero_init_output": False,    # start as the identity (zero output convs): faster from scratch
    "checkpoint_every": 1000,
    "keep_checkpoints": 3,
    "log_every": 50,              # TensorBoard scalars
    "eval_every": 2000,           # validation PSNR/SSIM + image summaries (0 = off)
    "eval_images": 8,
    # (Test hooks are no config keys: tests pass a trainer.TrainHooks to train().)
}

TASKS = ("denoise", "deblur", "derain", "dehaze", "enhance")


class ConfigError(MaximError, ValueError):
    """An invalid training configuration."""


def _merge(base, update, path=""):
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"Unknown config key {path + key!r}. Known keys at this level: "
                              f"{sorted(base)}")
        if isinstance(base[key], dict) and base[key] and key not in ("model", "data"):
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {path + key!r} must be an object. "
                                  f"Received: {value!r}")
            out[key] = _merge(base[key], value, path + key + ".")
        else:
            _check_type(path + key, base[key], value)
            out[key] = copy.deepcopy(value)
    return out


def _check_type(key, default, value):
    """A value of the kind its default has: booleans stay booleans, numbers numbers."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false. Received: {key}={value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number. Received: {key}={value!r}")


def _parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config, overrides):
    """Apply ``["a.b=value", ...]`` to a (nested) dict, in place; returns it."""
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"Override must look like key.sub=value. Received: {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = config
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Cannot set {key!r}: {p!r} is not an object.")
        node[parts[-1]] = _parse_value(text)
    return config


def load_config(source=None, overrides=None):
    """Full config (defaults + file + overrides), validated.

    Args:
        source: a dict, a path to a JSON file, or the name of a bundled config
            (``denoise``, ``deblur``, ``derain``, ``dehaze``, ``enhance``).
        overrides: list of ``key.sub=value`` strings.
    """
    if source is None:
        raw = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = pathlib.Path(source)
        if not path.exists() and (CONFIG_DIR / f"{source}.json").exists():
            path = CONFIG_DIR / f"{source}.json"
        if not path.exists():
            raise ConfigError(f"Config not found: {source} (bundled configs: "
                              f"{sorted(p.stem for p in CONFIG_DIR.glob('*.json'))})")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"Config {path} is not valid JSON: {e}") from e
    raw.pop("_comment", None)
    apply_overrides(raw, overrides)
    config = _merge(DEFAULTS, raw)
    validate(config)
    return config


def _check_model_section(model):
    from maxim_tf.presets import DEFAULT_CONFIG

    if not isinstance(model, dict):
        raise ConfigError(f"Config key 'model' must be an object of MAXIM constructor arguments. "
                          f"Received: {model!r}")
    unknown = sorted(set(model) - set(DEFAULT_CONFIG))
    if unknown:
        raise ConfigError(f"Unknown config key(s) {', '.join(repr('model.' + k) for k in unknown)}"
                          f". Known keys at this level: {sorted(DEFAULT_CONFIG)}")


def validate(c):
    def positive_int(key, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a positive integer. Received: {key}={value!r}")

    for key in ("crop_size", "global_batch_size", "steps", "checkpoint_every",
                "keep_checkpoints", "log_every", "eval_images"):
        positive_int(key, c[key])
    if not isinstance(c["eval_every"], int) or c["eval_every"] < 0:
        raise ConfigError(f"eval_every must be an integer >= 0. Received: {c['eval_every']!r}")
    if c["mixed_precision"] not in (None, "mixed_bfloat16", "mixed_float16", "float32"):
        raise ConfigError("mixed_precision must be null, 'mixed_bfloat16' or 'mixed_float16'. "
                          f"Received: {c['mixed_precision']!r}")
    if c["strategy"] not in ("auto", "single", "mirrored", "multi_worker", "tpu"):
        raise ConfigError("strategy must be auto, single, mirrored, multi_worker or tpu. "
                          f"Received: {c['strategy']!r}")
    opt = c["optimizer"]
    if not opt["learning_rate"] > 0 or opt["end_learning_rate"] < 0:
        raise ConfigError(f"Learning rates must be > 0 (end >= 0). Received: {opt}")
    if not 0 <= opt["warmup_steps"] < c["steps"]:
        raise ConfigError(f"optimizer.warmup_steps must be in [0, steps). Received: "
                          f"warmup_steps={opt['warmup_steps']}, steps={c['steps']}")
    clip = opt["clip_global_norm"]
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                             or not clip > 0):
        raise ConfigError(f"optimizer.clip_global_norm must be null or > 0. "
                          f"Received: {opt['clip_global_norm']!r}")
    _check_model_section(c["model"])
    if not c["model_dir"]:
        raise ConfigError("model_dir is required (checkpoints and logs go there): "
                          "pass --model-dir or set model_dir in the config.")
    if not c["data"]:
        raise ConfigError("The config has no data section (data.source and its folders).")
    if c["variant"] is None and not c["init_from"] and not c["model"]:
        raise ConfigError("Set variant (e.g. 'S-3'), init_from (a .keras model) or a full "
                          "model config.")
    return c
