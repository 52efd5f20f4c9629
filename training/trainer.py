"""MAXIM training loop on tf.distribute.

One code path for a single device, ``MirroredStrategy`` (GPUs, or logical CPU
devices), ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``) and ``TPUStrategy``.
Entry point: :func:`train`. A run goes through four parts, each a few small
functions sharing one :class:`_Session` (config, strategy, paths, model,
optimizer, step counter, checkpoint manager):

1. **setup** (:func:`train`, :func:`_open_session`, :func:`_build_model`,
   :func:`_restore`): strategy and TF options; refuses a ``model_dir`` that
   holds checkpoints without ``--resume`` (or lacks them with it); the model
   (``return_all_outputs=True``, optionally from ``init_from``), Adam and the
   step counter in ``strategy.scope()``; then restores the latest checkpoint.
2. **step** (:func:`_make_replica_step`, :func:`_make_train_step`): the loss of
   :mod:`maxim_tf.training.losses` averaged over the *global* batch (so 1 and
   N replicas follow the same trajectory for the same global batch); optional
   clipping by the norm of the all-reduced (global) gradient.
3. **loop** (:func:`_train_loop`, :func:`_one_step`): per step the
   ``train_log.jsonl`` record, TensorBoard scalars, checkpoints every
   ``checkpoint_every`` steps (``tf.train.CheckpointManager``, whose state file
   is replaced atomically: a kill during a save leaves the previous checkpoint
   as the latest; the data position is a function of the step), evaluation
   (:class:`_Evaluator`) and the progress bar (:class:`_Progress`). A
   non-finite loss stops the run with :class:`TrainingDiverged` before anything
   is saved, so the last good checkpoint stays the latest.
4. **finish** (:func:`_finish`, :func:`_export_only`): the chief writes the same
   ``.keras`` artifact as the converter (``MAXIM(**config)``, one output,
   float32), atomically, and the result dict.

Tests observe or perturb a run through :class:`TrainHooks` (``train(...,
hooks=...)``); the production loop has no test-only switches.
"""

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any

import keras
import tensorflow as tf

import maxim_tf
from maxim_tf import errors, fileio
from maxim_tf._utils import last_output
from maxim_tf.training import config as config_lib
from maxim_tf.training import data as data_lib
from maxim_tf.training import losses

log = logging.getLogger("maxim_tf.training")


class TrainingDiverged(errors.MaximError, RuntimeError):
    """The loss became NaN or infinite."""

    exit_code = errors.EXIT_DIVERGED


class MissingCheckpoint(errors.MaximError, FileNotFoundError):
    """``--resume`` or ``--export-only`` without a checkpoint to start from."""


class DamagedCheckpoint(errors.MaximError, ValueError):
    """``--resume`` from a checkpoint that cannot be read (truncated, garbage, written by
    another model); exit 2, the message names the checkpoint's files."""


class TrainHooks:
    """Callbacks :func:`train` calls during a run; the defaults do nothing.

    Subclass and override what you need, then pass an instance as
    ``train(..., hooks=...)`` (``maxim-tf train`` passes none). Tests use them to
    make a step diverge, slow the loop down or dump the final weights.
    """

    def on_step(self, session, step, loss):
        """Called after training step ``step`` (1-based) ran, before its loss is checked,
        logged or checkpointed; returns the loss the loop goes on with (e.g. ``nan``
        to simulate a divergence).

        Args:
            session: the run's :class:`_Session` (model, optimizer, paths, ...).
            step: the number of the step that just ran.
            loss: its global loss (Python float).
        """
        return loss

    def on_end(self, session):
        """Called once after the last training step, before the final export (on every
        worker; ``session.worker_id`` tells them apart)."""


@dataclasses.dataclass
class _Session:
    """What the parts of one run share: set up by :func:`_open_session`,
    :func:`_build_model` and :func:`_restore`, used by the loop and the finish."""

    cfg: dict
    strategy: Any
    chief: bool
    worker_id: str
    model_dir: pathlib.Path
    existing: Any  # latest checkpoint path when the run started, or None
    source: Any  # the training data source (data_lib.make_source)
    hooks: TrainHooks
    model_config: dict = None
    model: Any = None  # MAXIM(return_all_outputs=True), in strategy.scope()
    optimizer: Any = None
    step: Any = None  # tf.Variable: steps done (checkpointed with model and optimizer)
    checkpoint: Any = None
    manager: Any = None  # tf.train.CheckpointManager over ckpt_dir
    start: int = 0  # the step the run started from (restored from `existing`)

    @property
    def ckpt_dir(self):
        """Where this worker saves: ``checkpoints/`` for the chief; non-chief workers must
        save too (collectives), into a throw-away ``checkpoints_tmp/<worker>``."""
        if self.chief:
            return self.model_dir / "checkpoints"
        return self.model_dir / "checkpoints_tmp" / self.worker_id

    @property
    def log_path(self):
        """The per-step ``train_log.jsonl`` (written by the chief)."""
        return self.model_dir / "train_log.jsonl"

    @property
    def export_path(self):
        """Where the final ``.keras`` goes (``export`` or ``<model_dir>/model.keras``)."""
        return self.cfg["export"] or self.model_dir / "model.keras"


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
            f"initialised ({e}). Configure devices before building anything.") from e


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
    """Whether this process writes the log, TensorBoard, checkpoints and the export."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                            and "chief" not in resolver.cluster_spec().as_dict())


def _worker_id(strategy):
    """``<task_type>_<task_id>`` of a multi-worker process, else ``"chief"``."""
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
    """The MAXIM config to train: ``variant`` + ``model`` keys, or ``init_from``'s own
    config; ConfigError if the config and ``init_from``'s model disagree."""
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
        raise errors.ModelFileError(f"init_from: {e}") from e
    if not hasattr(model, "maxim_config"):
        raise config_lib.ConfigError(f"init_from {path} is not a maxim_tf.MAXIM model.")
    if getattr(model, "any_size", False):
        model = model.with_any_size(False)
    return model


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


def export_keras(model_config, model, path):
    """Write the ``.keras`` artifact (one output, float32) atomically; returns the path.

    The weights are copied by name (:meth:`maxim_tf.MAXIM.copy_weights_from`) from
    the trained all-outputs ``model``; every weight of the artifact must be there.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        artifact = maxim_tf.MAXIM(**model_config, return_all_outputs=False)
        artifact.copy_weights_from(model)
        with fileio.atomic_path(path, suffix=".keras") as tmp:
            artifact.save(tmp)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return path


# ---------------------------------------------------------------- 1. setup

def train(config, resume=False, progress=True, export_only=False, *, hooks=None):
    """Train MAXIM as described by ``config`` (dict or path; see config.DEFAULTS).

    Args:
        config: config dict (already loaded) or anything :func:`config.load_config` takes.
        resume: continue from the latest checkpoint in ``model_dir``. Without it,
            a ``model_dir`` that already holds checkpoints is an error.
        progress: show a progress bar (chief only).
        export_only: write the ``.keras`` artifact from the latest checkpoint
            without training (needs ``resume=True``).
        hooks: a :class:`TrainHooks` (default: none) called during the run.

    Returns:
        dict with ``step``, ``loss``, ``images_per_sec``, ``export`` (path or None),
        ``checkpoint`` (latest path).

    Raises:
        TrainingDiverged: the loss became NaN/inf (the last good checkpoint is kept).
    """
    cfg = config_lib.load_config(config)  # idempotent on an already loaded config
    session = _open_session(cfg, resume=resume, export_only=export_only,
                            hooks=TrainHooks() if hooks is None else hooks)
    previous_policy = keras.mixed_precision.global_policy()
    if cfg["mixed_precision"]:
        keras.mixed_precision.set_global_policy(cfg["mixed_precision"])
    created = fileio.make_dirs(session.model_dir)
    try:
        _build_model(session)
        _restore(session)
        if export_only:
            return _export_only(session)
        loss, rate = _train_loop(session, progress=progress)
        return _finish(session, loss=loss, rate=rate)
    except BaseException:
        # A run that fails before writing anything leaves no empty model_dir behind.
        fileio.remove_empty_dirs(created)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not session.chief:
            shutil.rmtree(session.ckpt_dir, ignore_errors=True)


def _open_session(cfg, *, resume, export_only, hooks):
    """Strategy, TF options and checks that need no model; returns the new session.

    The strategy comes first: it must exist before other TF work.
    """
    strategy = make_strategy(cfg["strategy"], cfg["tpu"])
    if not cfg["graph_optimizations"]:
        # Grappler takes minutes on MAXIM's large training graph on small CPUs.
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    if cfg["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    model_dir = pathlib.Path(cfg["model_dir"]).expanduser()
    existing = _check_resume(model_dir / "checkpoints", resume=resume, export_only=export_only)
    batch, replicas = cfg["global_batch_size"], strategy.num_replicas_in_sync
    if batch % replicas:
        raise config_lib.ConfigError(
            f"global_batch_size={batch} is not divisible by the {replicas} replicas.")
    log.info("Training on %d replica(s) with %s", replicas, type(strategy).__name__)
    source = data_lib.make_source(cfg["data"], "train", crop_size=cfg["crop_size"])
    log.info("Training data: %s", source.description)
    return _Session(cfg=cfg, strategy=strategy, chief=_is_chief(strategy),
                    worker_id=_worker_id(strategy), model_dir=model_dir, existing=existing,
                    source=source, hooks=hooks)


def _check_resume(ckpt_dir, *, resume, export_only):
    """The latest checkpoint in ``ckpt_dir`` (or None), if that fits ``resume``/``export_only``.

    Raises:
        MissingCheckpoint: ``resume`` or ``export_only`` without a checkpoint.
        FileExistsError: checkpoints there but no ``resume``.
    """
    existing = tf.train.latest_checkpoint(str(ckpt_dir))
    model_dir = ckpt_dir.parent
    if export_only and not (existing and resume):
        raise MissingCheckpoint(f"--export-only needs --resume and a checkpoint in "
                                f"{ckpt_dir} (found: {existing}).")
    if resume and not existing:
        raise MissingCheckpoint(
            f"--resume: no checkpoint in {ckpt_dir} to resume from (a mistyped "
            f"--model-dir?); drop --resume to start a new run there.")
    if existing and not resume:
        raise FileExistsError(
            f"{model_dir} already holds checkpoints (latest {existing}). Pass --resume to "
            f"continue that run, or choose another model_dir.")
    return existing


def _build_model(s):
    """Set ``s.model_config``, ``s.model``, ``s.optimizer`` and ``s.step`` (in the
    strategy's scope): random, identity (``zero_init_output``) or ``init_from`` weights."""
    cfg = s.cfg
    init_model = _load_init_model(cfg["init_from"]) if cfg["init_from"] else None
    s.model_config = _model_config(cfg, init_model)
    keras.utils.set_random_seed(cfg["seed"])
    with s.strategy.scope():
        s.model = maxim_tf.MAXIM(**s.model_config, return_all_outputs=True)
        mh, mw = s.model.size_multiple
        crop = cfg["crop_size"]
        if crop % mh or crop % mw:
            raise config_lib.ConfigError(
                f"crop_size={crop} must be a multiple of the model's size multiple {mh}x{mw}.")
        if init_model is not None:
            _init_from(s.model, init_model, cfg["init_from"])
        elif cfg["zero_init_output"]:
            zeroed = zero_output_convs(s.model)
            log.info("Zero-initialised the output convs %s: the model starts as the identity",
                     zeroed)
        s.optimizer = _make_optimizer(cfg, s.model)
        s.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def _init_from(model, init_model, name):
    """Copy ``init_model``'s weights into ``model`` by name; weights it lacks (the coarse
    output convs a one-output file does not have) keep their random init."""
    model.copy_weights_from(init_model, allow_missing=True)
    missing = sorted({v.path for v in model.weights} - {v.path for v in init_model.weights})
    log.info("Initialised from %s%s", name,
             f" ({len(missing)} weights not in it keep their random init: "
             f"{missing[:4]}...)" if missing else "")


def _make_optimizer(cfg, model):
    """Adam on the cosine schedule (loss-scaled under ``mixed_float16``), built for
    ``model``'s trainable variables so a checkpoint restores its slots."""
    opt_cfg = cfg["optimizer"]
    optimizer = keras.optimizers.Adam(
        learning_rate_schedule(opt_cfg, cfg["steps"]), beta_1=opt_cfg["beta_1"],
        beta_2=opt_cfg["beta_2"])
    if cfg["mixed_precision"] == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer


def _restore(s):
    """Set up the checkpoint manager, restore ``s.existing`` (if resuming) and set
    ``s.start``; the chief trims ``train_log.jsonl`` back to that step.

    The checkpoint holds ``model``, ``optimizer`` and ``step``: this layout is what
    existing run directories contain, keep it.
    """
    s.checkpoint = tf.train.Checkpoint(model=s.model, optimizer=s.optimizer, step=s.step)
    s.manager = tf.train.CheckpointManager(s.checkpoint, str(s.ckpt_dir),
                                           max_to_keep=s.cfg["keep_checkpoints"])
    if s.existing:
        try:
            s.checkpoint.restore(s.existing).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - a damaged file raises OpError, IndexError, ...
            detail = (getattr(e, "message", None) or str(e)).strip().splitlines()
            raise DamagedCheckpoint(
                f"--resume: cannot restore the checkpoint {s.existing} (files "
                f"{os.path.basename(s.existing)}.index and .data-*): {type(e).__name__}: "
                f"{detail[0] if detail else 'no details'}; resume from an intact copy, or "
                f"remove {s.ckpt_dir} to start again") from e
        log.info("Resumed from %s at step %d", s.existing, int(s.step.numpy()))
    s.start = int(s.step.numpy())
    if s.existing and s.chief:
        trim_log(s.log_path, s.start)


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


# ---------------------------------------------------------------- 2. step

def _make_replica_step(s):
    """The per-replica step ``(x, y) -> (loss, terms, grad_norm)``: the targets of the
    supervised scales; forward, loss averaged over the global batch and gradients
    (compiled by XLA with ``jit_compile``); optional global-norm clipping; Adam update.

    Only the gradient part is compiled: the antialiased target resize has no XLA
    kernel, and the clipping's all-reduce and the update are cross-replica
    synchronisation points, which a nested compiled function may not hold.
    """
    model, optimizer, variables = s.model, s.optimizer, s.model.trainable_variables
    scales = s.model_config["num_supervision_scales"]
    eps = s.cfg["loss"]["charbonnier_epsilon"]
    lam = s.cfg["loss"]["frequency_weight"]
    batch, clip = s.cfg["global_batch_size"], s.cfg["optimizer"]["clip_global_norm"]

    def gradients(x, ys):
        """Loss, per-output terms and gradients on ``x`` and the per-scale targets ``ys``."""
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            per_example, terms = losses.maxim_loss(outputs, ys, scales, eps, lam)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=batch)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        terms = {k: tf.nn.compute_average_loss(v, global_batch_size=batch)
                 for k, v in terms.items()}
        return loss, terms, grads

    if s.cfg["jit_compile"]:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(x, y):
        """One replica's part of the global batch ``(x, y)``."""
        loss, terms, grads = gradients(x, losses.target_pyramid(y, scales))
        norm = tf.constant(0.0)
        if clip:
            grads, norm = _clip_by_global_norm(grads, clip, optimizer)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, terms, norm

    return replica_step


def _clip_by_global_norm(grads, clip, optimizer):
    """``grads`` scaled so the *global* gradient's norm is at most ``clip``; returns
    ``(grads, norm)``, ``norm`` unscaled by the loss scale.

    The norm is that of the sum over replicas, identical on every replica; scaling
    the local parts scales their sum by the same factor.
    """
    total = tf.distribute.get_replica_context().all_reduce("sum", grads)
    norm = tf.linalg.global_norm(total) / tf.cast(optimizer.scale_loss(1.0), tf.float32)
    factor = tf.minimum(1.0, clip / tf.maximum(norm, 1e-12))
    return [g * tf.cast(factor, g.dtype) for g in grads], norm


def _make_train_step(s):
    """The distributed step ``iterator -> (loss, terms, grad_norm)`` (a tf.function):
    the replica step on every replica (its XLA part, with ``jit_compile``, leaves the
    iterator's ``next`` out: XLA has no kernel for it), ``s.step += 1``,
    global sums of the losses and the mean norm."""
    strategy, step = s.strategy, s.step
    replica_step = _make_replica_step(s)

    @tf.function
    def train_step(it):
        """One global step on the next batch of ``it``."""
        x, y = next(it)
        loss, terms, norm = strategy.run(replica_step, args=(x, y))
        step.assign_add(1)

        def total(v):
            return strategy.reduce("sum", v, axis=None)

        return (total(loss), {k: total(v) for k, v in terms.items()},
                strategy.reduce("mean", norm, axis=None))

    return train_step


def _run_step(run, n):
    """``run()`` (one call of the train step, step ``n``); the data pipeline's give-up
    error becomes a DataError."""
    try:
        return run()
    except tf.errors.InvalidArgumentError as e:
        if not data_lib.is_drop_limit_error(e):
            raise
        raise data_lib.DataError(
            f"{data_lib.MAX_CONSECUTIVE_DROPS} training examples in a row could not "
            f"be decoded or cropped (files changed or corrupt since the start?); "
            f"stopped at step {n}. See the warnings above for the files.") from e


# ---------------------------------------------------------------- 3. loop

def _train_loop(s, *, progress):
    """Steps ``s.start + 1 .. steps``; returns ``(last loss, images/s)``."""
    cfg = s.cfg
    dist_ds = s.strategy.distribute_datasets_from_function(
        lambda ctx: data_lib.train_dataset(
            s.source, global_batch_size=cfg["global_batch_size"], crop_size=cfg["crop_size"],
            seed=cfg["seed"], start_step=s.start, augment=cfg["augment"], input_context=ctx))
    iterator = iter(dist_ds)
    train_step = _make_train_step(s)
    if s.chief and not _tensorboard_installed():
        log.warning('TensorBoard is not installed (pip install "maxim-tf[train]"): no '
                    "TensorBoard logs; the losses still go to %s", s.log_path)
    writer = tf.summary.create_file_writer(str(s.model_dir / "tensorboard")) \
        if s.chief and _tensorboard_installed() else tf.summary.create_noop_writer()
    evaluator = _Evaluator(s) if cfg["eval_every"] else None
    bar = _Progress(progress and s.chief, s.start, cfg["steps"], cfg["global_batch_size"])
    loss = float("nan")
    try:
        log_file = open(s.log_path, "a") if s.chief else contextlib.nullcontext()
        with writer.as_default(), log_file as jl:
            try:
                for n in range(s.start + 1, cfg["steps"] + 1):
                    loss = _one_step(s, n, run=lambda: train_step(iterator), bar=bar,
                                     log_file=jl, evaluator=evaluator)
            finally:  # also when stopped: maxim-tf exits without interpreter teardown then
                writer.flush()
    finally:
        bar.close()
    return loss, bar.rate


def _due(s, n, every_key):
    """Whether step ``n`` is one of every ``cfg[every_key]`` steps, or the last."""
    return n % s.cfg[every_key] == 0 or n == s.cfg["steps"]


def _one_step(s, n, *, run, bar, log_file, evaluator):
    """Step ``n``: train (``run()``), hooks, divergence check, log record, TensorBoard,
    checkpoint and evaluation when due; returns the loss."""
    lr = float(s.optimizer.learning_rate)  # the rate this step uses
    t0 = time.perf_counter()
    loss, terms, norm = _run_step(run, n)
    loss = float(loss)
    seconds = time.perf_counter() - t0
    loss = s.hooks.on_step(s, n, loss)
    if not math.isfinite(loss):
        kept = s.manager.latest_checkpoint
        raise TrainingDiverged(
            f"Loss became {loss} at step {n}; stopped without saving. The last good "
            f"checkpoint is {kept or 'none (no checkpoint was saved yet)'}; lower "
            f"the learning rate or enable optimizer.clip_global_norm, then resume.")
    bar.update(seconds, loss)
    if log_file is not None:
        log_file.write(json.dumps({"step": n, "loss": loss, "lr": lr}) + "\n")
        log_file.flush()
    if _due(s, n, "log_every"):
        _write_summaries(s, n, loss=loss, terms=terms, lr=lr, norm=norm, rate=bar.rate)
    if _due(s, n, "checkpoint_every"):
        s.manager.save(checkpoint_number=n)
        if not s.chief:
            shutil.rmtree(s.ckpt_dir, ignore_errors=True)
    if evaluator and _due(s, n, "eval_every"):
        evaluator.run(n)
    return loss


@functools.cache
def _tensorboard_installed():
    """Whether TensorBoard (the ``train`` extra) can be imported: without it TensorFlow's
    ``tf.summary.scalar``/``image`` raise ``TBNotInstalledError`` whatever the writer."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _write_summaries(s, n, *, loss, terms, lr, norm, rate):
    """TensorBoard scalars of step ``n``: losses (total and per stage/scale), learning
    rate, images/s and, with clipping, the global gradient norm (nothing without
    TensorBoard)."""
    if not _tensorboard_installed():
        return
    tf.summary.scalar("loss/total", loss, step=n)
    for k, v in terms.items():
        tf.summary.scalar(f"loss/{k}", float(v), step=n)
    tf.summary.scalar("learning_rate", lr, step=n)
    if math.isfinite(rate):
        tf.summary.scalar("images_per_sec", rate, step=n)
    if s.cfg["optimizer"]["clip_global_norm"]:
        tf.summary.scalar("grad_global_norm", float(norm), step=n)


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
        """Count one step that took ``seconds`` and show its ``loss``."""
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
        """Close the bar (if shown)."""
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- 4. finish

def _finish(s, *, loss, rate):
    """After the last step: the ``on_end`` hook, the chief's export; the result dict."""
    s.hooks.on_end(s)
    export = None
    if s.chief:
        export = export_keras(s.model_config, s.model, s.export_path)
        log.info("Wrote %s", export)
    return {"step": int(s.step.numpy()), "loss": loss, "images_per_sec": rate,
            "export": str(export) if export else None,
            "checkpoint": s.manager.latest_checkpoint if s.chief else None}


def _export_only(s):
    """``--export-only``: the chief writes the restored checkpoint's ``.keras``; the
    result dict (no loss, no images/s)."""
    export = export_keras(s.model_config, s.model, s.export_path) if s.chief else None
    return {"step": s.start, "loss": float("nan"), "images_per_sec": float("nan"),
            "export": str(export) if export else None, "checkpoint": s.existing}


# ---------------------------------------------------------------- evaluation

class _Evaluator:
    """Validation PSNR/SSIM and input | output | target image summaries."""

    def __init__(self, s):
        """The eval dataset (``val_*`` data, else a fixed sample of the training data) and
        step for session ``s`` (its strategy, model, ``crop_size``, ``seed``)."""
        cfg, strategy, model = s.cfg, s.strategy, s.model
        crop, seed, data = cfg["crop_size"], cfg["seed"], cfg["data"]
        has_val = any(data.get(k) for k in ("val_root", "val_folder", "val_split"))
        source = data_lib.make_source(data, "val", crop_size=crop) if has_val else s.source
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
            out = last_output(model(x, training=False))
            out = tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 1.0)
            return (tf.reduce_sum(tf.image.psnr(out, y, 1.0)),
                    tf.reduce_sum(tf.image.ssim(out, y, 1.0)),
                    tf.cast(tf.shape(x)[0], tf.float32), out)

        @tf.function
        def eval_step(x, y):
            return strategy.run(replica_eval, args=(x, y))

        self.eval_step = eval_step

    def run(self, s):
        """Evaluate at step ``s``: PSNR/SSIM and an image summary; returns (psnr, ssim)."""
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
        if n and _tensorboard_installed():
            tf.summary.scalar(f"{self.tag}/psnr", psnr / n, step=s)
            tf.summary.scalar(f"{self.tag}/ssim", ssim / n, step=s)
            tf.summary.image(f"{self.tag}/input|output|target", shown, step=s, max_outputs=1)
        if n:
            log.info("step %d: %s PSNR %.2f dB, SSIM %.4f over %d images", s, self.tag,
                     psnr / n, ssim / n, int(n))
        return (psnr / n, ssim / n) if n else (float("nan"), float("nan"))
