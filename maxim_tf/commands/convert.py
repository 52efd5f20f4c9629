"""``maxim-tf convert``: official JAX checkpoint (.npz) -> Keras (.keras)."""

import json

from maxim_tf.commands._common import non_negative_number, renamed


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
    p.set_defaults(func=run)


def run(args):
    from maxim_tf.conversion import convert_checkpoint

    # ConversionError (a MaximError): exit 2; a failed --reference check
    # (ReferenceMismatchError): exit 3, nothing written.
    _, report = convert_checkpoint(
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
    return 0
