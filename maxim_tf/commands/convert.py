"""``maxim-tf convert``: official JAX checkpoint (.npz) -> Keras (.keras)."""

import argparse
import json
import sys

from maxim_tf.commands._common import non_negative_number, renamed, usage_error


def register(subparsers):
    p = subparsers.add_parser(
        "convert",
        help="convert an official MAXIM checkpoint.npz to a .keras model",
        description="Convert an official MAXIM JAX/Flax checkpoint (released .npz layout) to a "
                    "Keras .keras file. The configuration comes from --model-config, else --variant, "
                    "else it is inferred from the tensor names and shapes.",
    )
    p.add_argument("checkpoint", help="path to the official checkpoint.npz")
    p.add_argument("-o", "--output", required=True, help="output .keras file (written atomically)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (default: refuse it, exit 2)")
    p.add_argument("--variant", choices=["S-1", "S-2", "S-3", "M-1", "M-2", "M-3"],
                   help="official variant of the checkpoint (3 supervision scales, as released)")
    p.add_argument("--model-config", metavar="JSON",
                   help="JSON file of maxim_tf.MAXIM constructor arguments")
    renamed(p, "--config", new="--model-config")
    p.add_argument("--all-outputs", action="store_true",
                   help="save a model returning every stage/scale output (for training)")
    p.add_argument("--reference", help="case .npz with `input` and `stage{s}_out{k}` arrays to "
                                       "verify the converted model against")
    p.add_argument("--tolerance", type=non_negative_number, default=1e-4,
                   help="max abs error allowed against --reference, a number >= 0 (default "
                        "1e-4); a model that differs more is not written (exit 3)")
    p.add_argument("--fast-start", action=argparse.BooleanOptionalAction, default=None,
                   help="also build the model's verified fp32 LiteRT twin, so that `maxim-tf "
                        "restore` starts it in about a second instead of tracing it (once, a few "
                        "minutes; default: yes for models of >= 5 M parameters, the official "
                        "sizes, whose Keras start-up takes tens of seconds)")
    p.set_defaults(func=run)


# Models this large take tens of seconds to load and trace in Keras; smaller ones start in a
# few seconds, not worth minutes of export. Every official variant is larger (S-1: 6.1 M).
FASTSTART_MIN_PARAMS = 5_000_000


def run(args):
    from maxim_tf.conversion import convert_checkpoint

    # ConversionError (a MaximError): exit 2; a failed --reference check
    # (ReferenceMismatchError): exit 3, nothing written.
    model, report = convert_checkpoint(
        args.checkpoint, args.output, variant=args.variant, config=args.model_config,
        return_all_outputs=args.all_outputs, reference=args.reference, tolerance=args.tolerance,
        overwrite=args.overwrite)
    cfg = {k: v for k, v in report["config"].items()}
    print(f"Converted {report['tensors']} tensors "
          f"(ignored {report['ignored_entries']} optimizer/state entries).")
    print("Config: " + json.dumps(cfg, default=list))
    if "max_abs_error" in report:
        worst = max(report["max_abs_error"].values())
        print(f"Max abs error vs reference over {len(report['max_abs_error'])} outputs: {worst:.3g}")
    print(f"Wrote {report['output']}")
    faststart = args.fast_start
    if faststart is None:
        faststart = not args.all_outputs and model.count_params() >= FASTSTART_MIN_PARAMS
    if faststart:
        if args.all_outputs:
            raise usage_error("--fast-start: a model saved with --all-outputs is for training; "
                              "its twin would return only the restored image")
        from maxim_tf.errors import CheckFailedError
        from maxim_tf.export.faststart import build_twin

        try:
            tflite, _ = build_twin(report["output"], model=model,
                                   say=(lambda line: None) if args.quiet else print)
        except CheckFailedError as e:
            if args.fast_start:  # asked for: its failed check is the command's result (exit 3)
                raise
            print(f"maxim-tf convert: warning: {e}", file=sys.stderr)
            return 0
        print(f"Fast start: {tflite}")
    return 0
