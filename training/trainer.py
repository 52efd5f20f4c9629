"""MAXIM training loop on tf.distribute.

One code path for a single device, ``MirroredStrategy`` (GPUs, or logical CPU
devices), ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``) and ``TPUStrategy``:

* the model (``return_all_outputs=True``), Adam and the step counter live in
  ``strategy.scope()``; the loss of :mod:`maxim_tf.training.losses` is
  averaged over the *global* batch, so 1 replica and N replicas follow the
  same trajectory for the same global batch;
* optional clipping uses the norm of the all-reduced (global) gradient;
* checkpoints (model, optimizer, step; the data position is a function of the
  step) every ``checkpoint_every`` steps with ``tf.train.CheckpointManager``,
  whose state file is replaced atomically: a kill during a save leaves the
  previous checkpoint as the latest;
* a non-finite loss stops the run with :class:`TrainingDiverged` before
  anything is saved, so the last good checkpoint stays the latest;
* at the end, the chief writes the same ``.keras`` artifact as the converter
  (``MAXIM(**config)``, one output, float32), atomically.

Entry point: :func:`train`.
"""

import contextlib
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import maxim_tf
from maxim_tf import errors, fileio
from maxim_tf.training import config as config_lib
from maxim_tf.training import data as data_lib
from maxim_tf.training import losses

log = logging.getLogger("maxim_tf.training")


class TrainingDiverged(errors.MaximError, RuntimeError):
    """The loss became NaN or infinite."""

    exit_code = errors.EXIT_DIVERGED


class MissingCheckpoint(errors.MaximError, FileNotFoundError):
    """``--resume`` or ``--export-only`` without a checkpoint to start from."""


# ---------------------------------------------------------------- strategy

def configure_cpu_replicas(n):
    """Split the first CPU into ``n`` logical devices (must run before any TF op)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(n))
    except RuntimeError as e:
        raise RuntimeError(
            f"Cannot split the CPU into {n} logical devices: TensorFlow is already "
            f"initialised ({e}). Configure devices before building anything.") from None


def make_strategy(name, tpu=None):
    """The tf.distribute strategy called ``name`` (see the config's ``strategy``)."""
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "single"
    if name == "single":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise RuntimeError("strategy 'multi_worker' needs the TF_CONFIG environment "
                               "variable (cluster spec and this worker's task).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}")


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                            and "chief" not in resolver.cluster_spec().as_dict())


def _worker_id(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        return f"{resolver.task_type}_{resolver.task_id}"
    return "chief"


# ---------------------------------------------------------------- model & optimizer

def learning_rate_schedule(opt, steps):
    """Cosine decay ``learning_rate`` -> ``end_learning_rate`` (optional linear warmup)."""
    lr, end, warmup = opt["learning_rate"], opt["end_learning_rate"], opt["warmup_steps"]
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=steps - warmup, alpha=end / lr,
            warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr, decay_steps=steps, alpha=end / lr)


def _model_config(cfg, init_model):
    loaded = dict(init_model.maxim_config) if init_model is not None else None
    if cfg["variant"] is None:
        from maxim_tf.presets import DEFAULT_CONFIG
        model_config = dict(loaded if loaded is not None else DEFAULT_CONFIG)
        model_config.update(cfg["model"])
    else:
        model_config = maxim_tf.variant_config(cfg["variant"], **cfg["model"])
    if loaded is not None:
        def norm(c):
            return {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()}

        a, b = norm(model_config), norm(loaded)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "dropout_rate")
        if diff:
            raise config_lib.ConfigError(
                f"init_from {cfg['init_from']} was built with a different MAXIM config: "
                + ", ".join(f"{k}: model {b.get(k)!r} vs config {a.get(k)!r}" for k in diff)
                + ". Set variant to null (and drop those model keys) to train the model "
                  "as it was built.")
    return model_config


def _load_init_model(path):
    """The model of ``init_from``: a .keras path, a saved name or a preset (fine-tuning an
    official checkpoint), through the one resolver :func:`maxim_tf.hub.load_model`."""
    from maxim_tf import hub

    try:
        model = hub.load_model(path)
    except errors.ModelFileError as e:
        raise errors.ModelFileError(f"init_from: {e}") from None
    if not hasattr(model, "maxim_config"):
        raise config_lib.ConfigError(f"init_from {path} is not a maxim_tf.MAXIM model.")
    if getattr(model, "any_size", False):
        model = model.with_any_size(False)
    return model


def export_keras(model_config, model, path):
    """Write the ``.keras`` artifact (one output, float32) atomically; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        artifact = maxim_tf.MAXIM(**model_config, return_all_outputs=False)
        artifact.copy_weights_from(model)  # every weight of the artifact must be there
        with fileio.atomic_path(path, suffix=".keras") as tmp:
            artifact.save(tmp)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return path


# ---------------------------------------------------------------- the run

class _Progress:
    """tqdm bar with ETA, loss and images/s (chief only).

    images/s counts the time spent in training steps only (not evaluation or
    checkpointing) and skips the first step (tracing).
    """

    def __init__(self, enabled, start, total, global_batch):
        self.bar = None
        self.global_batch = global_batch
        self.seconds, self.steps, self.first = 0.0, 0, True
        self.rate = float("nan")
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                            file=sys.stderr, smoothing=0.1)

    def update(self, seconds, loss):
        if self.first:
            self.first = False
        else:
            self.seconds += seconds
            self.steps += 1
            self.rate = self.steps * self.global_batch / self.seconds
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{self.rate:.1f}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def train(config, resume=False, progress=True, export_only=False):
    """Train MAXIM as described by ``config`` (dict or path; see config.DEFAULTS).

    Args:
        config: config dict (already loaded) or anything :func:`config.load_config` takes.
        resume: continue from the latest checkpoint in ``model_dir``. Without it,
            a ``model_dir`` that already holds checkpoints is an error.
        progress: show a progress bar (chief only).
        export_only: write the ``.keras`` artifact from the latest checkpoint
            without training (needs ``resume=True``).

    Returns:
        dict with ``step``, ``loss``, ``images_per_sec``, ``export`` (path or None),
        ``checkpoint`` (latest path).

    Raises:
        TrainingDiverged: the loss became NaN/inf (the last good checkpoint is kept).
    """
    cfg = config_lib.load_config(config)  # idempotent on an already loaded config
    strategy = make_strategy(cfg["strategy"], cfg["tpu"])  # first: before other TF work
    if not cfg["graph_optimizations"]:
        # Grappler takes minutes on MAXIM's large training graph on small CPUs.
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    if cfg["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    chief = _is_chief(strategy)
    model_dir = pathlib.Path(cfg["model_dir"]).expanduser()
    ckpt_dir = model_dir / "checkpoints"
    if not chief:  # non-chief workers must save too (collectives), into throw-away dirs
        ckpt_dir = model_dir / "checkpoints_tmp" / _worker_id(strategy)

    existing = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    if export_only and not (existing and resume):
        raise MissingCheckpoint(f"--export-only needs --resume and a checkpoint in "
                                f"{model_dir / 'checkpoints'} (found: {existing}).")
    if resume and not existing:
        raise MissingCheckpoint(
            f"--resume: no checkpoint in {model_dir / 'checkpoints'} to resume from (a mistyped "
            f"--model-dir?); drop --resume to start a new run there.")
    if existing and not resume:
        raise FileExistsError(
            f"{model_dir} already holds checkpoints (latest {existing}). Pass --resume to "
            f"continue that run, or choose another model_dir.")

    GB, S_crop, seed = cfg["global_batch_size"], cfg["crop_size"], cfg["seed"]
    if GB % strategy.num_replicas_in_sync:
        raise config_lib.ConfigError(
            f"global_batch_size={GB} is not divisible by the {strategy.num_replicas_in_sync} "
            f"replicas.")

    log.info("Training on %d replica(s) with %s", strategy.num_replicas_in_sync,
             type(strategy).__name__)
    source = data_lib.make_source(cfg["data"], "train", crop_size=S_crop)
    log.info("Training data: %s", source.description)

    previous_policy = keras.mixed_precision.global_policy()
    if cfg["mixed_precision"]:
        keras.mixed_precision.set_global_policy(cfg["mixed_precision"])
    created = fileio.make_dirs(model_dir)
    try:
        return _run(cfg, strategy, chief, model_dir, ckpt_dir, existing, source, GB, S_crop,
                    seed, progress, export_only)
    except BaseException:
        # A run that fails before writing anything leaves no empty model_dir behind.
        fileio.remove_empty_dirs(created)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            shutil.rmtree(model_dir / "checkpoints_tmp" / _worker_id(strategy),
                          ignore_errors=True)


def trim_log(path, step):
    """Keep ``train_log.jsonl`` consistent with a checkpoint of ``step``.

    Records of steps after ``step`` (written before a kill, replayed by the resumed
    run) and a half-written last line are dropped, atomically.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        fileio.atomic_write_bytes(path, "".join(kept).encode())
        log.info("train_log.jsonl: dropped %d record(s) after the checkpoint of step %d",
                 dropped, step)
    return dropped


def zero_output_convs(model):
    """Zero the last stage's output convs (kernel and bias); returns their names.

    Each of them adds its output to the (resized) input image, so with zeros the
    model starts as the identity and learns a residual, instead of starting from the
    O(1-100) outputs of the official random initialisation.
    """
    last = model.maxim_config["num_stages"] - 1
    names = []
    for layer in model.layers:
        if layer.name.startswith(f"stage_{last}_output_conv_"):
            for v in layer.weights:
                v.assign(tf.zeros_like(v))
            names.append(layer.name)
    if not names:
        raise RuntimeError("zero_init_output: found no stage_*_output_conv_* layers")
    return names


def _run(cfg, strategy, chief, model_dir, ckpt_dir, existing, source, GB, crop, seed, progress,
         export_only):
    init_model = _load_init_model(cfg["init_from"]) if cfg["init_from"] else None
    model_config = _model_config(cfg, init_model)
    S = model_config["num_supervision_scales"]
    opt_cfg, loss_cfg = cfg["optimizer"], cfg["loss"]

    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = maxim_tf.MAXIM(**model_config, return_all_outputs=True)
        mh, mw = model.size_multiple
        if crop % mh or crop % mw:
            raise config_lib.ConfigError(
                f"crop_size={crop} must be a multiple of the model's size multiple {mh}x{mw}.")
        if cfg["zero_init_output"] and init_model is None:
            zeroed = zero_output_convs(model)
            log.info("Zero-initialised the output convs %s: the model starts as the identity",
                     zeroed)
        if init_model is not None:
            model.copy_weights_from(init_model, allow_missing=True)
            missing = sorted({v.path for v in model.weights} - {v.path for v in init_model.weights})
            log.info("Initialised from %s%s", cfg["init_from"],
                     f" ({len(missing)} weights not in it keep their random init: "
                     f"{missing[:4]}...)" if missing else "")
        optimizer = keras.optimizers.Adam(
            learning_rate_schedule(opt_cfg, cfg["steps"]), beta_1=opt_cfg["beta_1"],
            beta_2=opt_cfg["beta_2"])
        if cfg["mixed_precision"] == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    del init_model

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir),
                                         max_to_keep=cfg["keep_checkpoints"])
    if existing:
        checkpoint.restore(existing).assert_existing_objects_matched()
        log.info("Resumed from %s at step %d", existing, int(step.numpy()))
    start = int(step.numpy())
    if existing and chief:
        trim_log(model_dir / "train_log.jsonl", start)
    if export_only:
        export = export_keras(model_config, model, cfg["export"] or model_dir / "model.keras") \
            if chief else None
        return {"step": start, "loss": float("nan"), "images_per_sec": float("nan"),
                "export": str(export) if export else None, "checkpoint": existing}

    dist_ds = strategy.distribute_datasets_from_function(
        lambda ctx: data_lib.train_dataset(
            source, global_batch_size=GB, crop_size=crop, seed=seed, start_step=start,
            augment=cfg["augment"], input_context=ctx))
    iterator = iter(dist_ds)
    variables = model.trainable_variables
    clip = opt_cfg["clip_global_norm"]
    nan_at = cfg["debug"].get("nan_at_step")
    eps, lam = loss_cfg["charbonnier_epsilon"], loss_cfg["frequency_weight"]

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            per_example, terms = losses.maxim_loss(outputs, y, S, eps, lam)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GB)
            if nan_at is not None:
                loss = tf.where(step + 1 == nan_at, tf.constant(float("nan")), loss)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        norm = tf.constant(0.0)
        if clip:
            # Norm of the global gradient (the sum over replicas), identical on every
            # replica; scaling the local parts scales their sum by the same factor.
            total = tf.distribute.get_replica_context().all_reduce("sum", grads)
            norm = tf.linalg.global_norm(total) / tf.cast(optimizer.scale_loss(1.0), tf.float32)
            factor = tf.minimum(1.0, clip / tf.maximum(norm, 1e-12))
            grads = [g * tf.cast(factor, g.dtype) for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
        terms = {k: tf.nn.compute_average_loss(v, global_batch_size=GB) for k, v in terms.items()}
        return loss, terms, norm

    @tf.function(jit_compile=bool(cfg["jit_compile"]) or None)
    def train_step(it):
        x, y = next(it)
        loss, terms, norm = strategy.run(replica_step, args=(x, y))
        step.assign_add(1)

        def total(v):
            return strategy.reduce("sum", v, axis=None)

        return (total(loss), {k: total(v) for k, v in terms.items()},
                strategy.reduce("mean", norm, axis=None))

    writer = tf.summary.create_file_writer(str(model_dir / "tensorboard")) if chief \
        else tf.summary.create_noop_writer()
    evaluator = _Evaluator(cfg, strategy, model, source, crop, seed) if cfg["eval_every"] else None
    log_path = model_dir / "train_log.jsonl"
    bar = _Progress(progress and chief, start, cfg["steps"], GB)
    last = {"loss": float("nan")}
    try:
        log_file = open(log_path, "a") if chief else contextlib.nullcontext()
        with writer.as_default(), log_file as jl:
            for s in range(start + 1, cfg["steps"] + 1):
                lr = float(optimizer.learning_rate)  # the rate this step uses
                t0 = time.perf_counter()
                try:
                    loss, terms, norm = train_step(iterator)
                except tf.errors.InvalidArgumentError as e:
                    if not data_lib.is_drop_limit_error(e):
                        raise
                    raise data_lib.DataError(
                        f"{data_lib.MAX_CONSECUTIVE_DROPS} training examples in a row could not "
                        f"be decoded or cropped (files changed or corrupt since the start?); "
                        f"stopped at step {s}. See the warnings above for the files.") from None
                loss = float(loss)
                seconds = time.perf_counter() - t0
                if not math.isfinite(loss):
                    kept = manager.latest_checkpoint
                    raise TrainingDiverged(
                        f"Loss became {loss} at step {s}; stopped without saving. The last good "
                        f"checkpoint is {kept or 'none (no checkpoint was saved yet)'}; lower "
                        f"the learning rate or enable optimizer.clip_global_norm, then resume.")
                bar.update(seconds, loss)
                last = {"step": s, "loss": loss}
                if jl is not None:
                    jl.write(json.dumps({"step": s, "loss": loss, "lr": lr}) + "\n")
                    jl.flush()
                if s % cfg["log_every"] == 0 or s == cfg["steps"]:
                    tf.summary.scalar("loss/total", loss, step=s)
                    for k, v in terms.items():
                        tf.summary.scalar(f"loss/{k}", float(v), step=s)
                    tf.summary.scalar("learning_rate", lr, step=s)
                    if math.isfinite(bar.rate):
                        tf.summary.scalar("images_per_sec", bar.rate, step=s)
                    if clip:
                        tf.summary.scalar("grad_global_norm", float(norm), step=s)
                if s % cfg["checkpoint_every"] == 0 or s == cfg["steps"]:
                    manager.save(checkpoint_number=s)
                    if not chief:
                        shutil.rmtree(ckpt_dir, ignore_errors=True)
                if evaluator and (s % cfg["eval_every"] == 0 or s == cfg["steps"]):
                    evaluator.run(s)
                if cfg["debug"].get("step_delay"):
                    time.sleep(cfg["debug"]["step_delay"])
            writer.flush()
    finally:
        bar.close()

    dump = cfg["debug"].get("dump_weights")
    if dump:
        np.savez(f"{dump}.{_worker_id(strategy)}.npz",
                 **{f"{i:04d}": v.numpy() for i, v in enumerate(model.weights)})
    export = None
    if chief:
        export = export_keras(model_config, model,
                              cfg["export"] or model_dir / "model.keras")
        log.info("Wrote %s", export)
    return {"step": int(step.numpy()), "loss": last["loss"], "images_per_sec": bar.rate,
            "export": str(export) if export else None,
            "checkpoint": manager.latest_checkpoint if chief else None}


class _Evaluator:
    """Validation PSNR/SSIM and input | output | target image summaries."""

    def __init__(self, cfg, strategy, model, train_source, crop, seed):
        data = cfg["data"]
        has_val = any(data.get(k) for k in ("val_root", "val_folder", "val_split"))
        source = data_lib.make_source(data, "val", crop_size=crop) if has_val else train_source
        self.tag = "val" if has_val else "train_sample"
        replicas = strategy.num_replicas_in_sync
        count = max(replicas, cfg["eval_images"] // replicas * replicas)
        base = data_lib.eval_dataset(source, crop_size=crop, seed=seed + 1, count=count,
                                     batch_size=1).unbatch()

        def fn(ctx):
            ds = base.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
            return ds.batch(1, drop_remainder=True)

        self.dataset = strategy.distribute_datasets_from_function(fn)
        self.strategy, self.model = strategy, model

        def replica_eval(x, y):
            out = model(x, training=False)
            if isinstance(out, (list, tuple)):  # all stage x scale outputs: the last is the image
                out = out[-1]
            out = tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 1.0)
            return (tf.reduce_sum(tf.image.psnr(out, y, 1.0)),
                    tf.reduce_sum(tf.image.ssim(out, y, 1.0)),
                    tf.cast(tf.shape(x)[0], tf.float32), out)

        @tf.function
        def eval_step(x, y):
            return strategy.run(replica_eval, args=(x, y))

        self.eval_step = eval_step

    def run(self, s):
        psnr = ssim = n = 0.0
        shown = None
        for x, y in self.dataset:
            p, q, c, out = self.eval_step(x, y)
            psnr += float(self.strategy.reduce("sum", p, axis=None))
            ssim += float(self.strategy.reduce("sum", q, axis=None))
            n += float(self.strategy.reduce("sum", c, axis=None))
            if shown is None:
                local = self.strategy.experimental_local_results
                shown = tf.concat([local(x)[0], local(out)[0], local(y)[0]], axis=2)
        if n:
            tf.summary.scalar(f"{self.tag}/psnr", psnr / n, step=s)
            tf.summary.scalar(f"{self.tag}/ssim", ssim / n, step=s)
            tf.summary.image(f"{self.tag}/input|output|target", shown, step=s, max_outputs=1)
            log.info("step %d: %s PSNR %.2f dB, SSIM %.4f over %d images", s, self.tag,
                     psnr / n, ssim / n, int(n))
        return (psnr / n, ssim / n) if n else (float("nan"), float("nan"))
