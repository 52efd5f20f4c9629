"""``maxim-tf train``: train or fine-tune MAXIM with tf.distribute."""

import logging

from maxim_tf import errors
from maxim_tf.commands._common import int_at_least, renamed


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train or fine-tune MAXIM (single device, multi-GPU, multi-worker, TPU)",
        description="Train MAXIM with the paper's loss and schedule. CONFIG is a JSON file or "
                    "a bundled config name (denoise, deblur, derain, dehaze, enhance).")
    p.add_argument("--config", required=True, help="JSON config file or bundled config name")
    p.add_argument("--model-dir", help="checkpoints, TensorBoard logs and model.keras go here")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from the latest checkpoint in --model-dir")
    p.add_argument("--strategy", choices=["auto", "single", "mirrored", "multi_worker", "tpu"])
    p.add_argument("--tpu", help="TPU name or grpc:// address (strategy tpu)")
    p.add_argument("--cpu-replicas", type=int_at_least(1), metavar="N",
                   help="split the CPU into N logical devices (try mirrored without GPUs)")
    p.add_argument("--steps", type=int)
    p.add_argument("--global-batch-size", type=int)
    p.add_argument("--mixed-precision", choices=["mixed_bfloat16", "mixed_float16"])
    p.add_argument("--init-from", metavar="MODEL.keras",
                   help="fine-tune from this .keras model (e.g. a converted official checkpoint)")
    p.add_argument("--export", metavar="PATH.keras", help="final model path "
                   "(default MODEL_DIR/model.keras)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optimizer.warmup_steps=1000 "
                        "--set data.folder=/photos (value parsed as JSON when possible)")
    p.add_argument("--export-only", action="store_true",
                   help="with --resume: write the .keras model from the latest checkpoint, "
                        "no training")
    renamed(p, "--no-progress", new="-q/--quiet")
    p.set_defaults(func=run)


def run(args, hooks=None):
    """Run ``maxim-tf train`` with the parsed ``args``; returns the exit status.

    ``hooks`` (a :class:`maxim_tf.training.trainer.TrainHooks`) is for tests that
    run the command in-process (``tests/train_hooked.py``); the CLI passes none.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    if args.cpu_replicas:
        # Logical devices must exist before TensorFlow initialises anything.
        from maxim_tf.training.trainer import configure_cpu_replicas
        configure_cpu_replicas(args.cpu_replicas)
    from maxim_tf.training import config as config_lib
    from maxim_tf.training import trainer

    overrides = list(args.set)
    for flag, key in (("model_dir", "model_dir"), ("strategy", "strategy"), ("tpu", "tpu"),
                      ("steps", "steps"), ("global_batch_size", "global_batch_size"),
                      ("mixed_precision", "mixed_precision"), ("init_from", "init_from"),
                      ("export", "export")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}" if isinstance(value, int)
                             else f"{key}={_json_str(value)}")
    try:  # MaximErrors (config, data, model file, checkpoint; diverged: exit 3) pass through
        config = config_lib.load_config(args.config, overrides)
        result = trainer.train(config, resume=args.resume, progress=not args.quiet,
                               export_only=args.export_only, hooks=hooks)
    except trainer.TrainingDiverged as e:
        raise trainer.TrainingDiverged(f"training diverged: {e}") from e
    except (FileExistsError, FileNotFoundError) as e:
        raise errors.UsageError(str(e)) from e
    if args.export_only:
        print(f"Exported the checkpoint of step {result['step']}.")
    else:
        print(f"Trained to step {result['step']} (loss {result['loss']:.5f}, "
              f"{result['images_per_sec']:.2f} images/s).")
    if result["export"]:
        print(f"Model: {result['export']}")
    return 0


def _json_str(value):
    import json
    return json.dumps(value)
