"""``maxim-tf export``: .keras -> TF Serving SavedModel, TFLite or ONNX (optionally verified)."""

import pathlib
import sys

FORMATS = ("savedmodel", "tflite", "onnx")


def _size(text):
    import argparse

    parts = text.lower().replace(",", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x256, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def register(subparsers):
    p = subparsers.add_parser(
        "export",
        help="export a .keras MAXIM to a TF Serving SavedModel, TFLite or ONNX",
        description="Export a MAXIM .keras model for deployment. Every artifact takes float32 "
                    "[N, H, W, 3] images in [0, 1] of any size (padding and cropping are in the "
                    "graph). --verify runs the artifact in its own runtime against Keras.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="a .keras file, a saved name (denoise, deblur) or a preset of "
                        "`maxim-tf models` (downloaded and converted on first use)")
    p.add_argument("--format", "-f", required=True, choices=FORMATS, help="export format")
    p.add_argument("-o", "--output",
                   help="savedmodel: base directory (writes <output>/<name>/<version>/, default "
                        "./serving); tflite/onnx: output file (default <model>_<quant>.tflite / "
                        "<model>.onnx beside the model)")
    p.add_argument("--verify", action="store_true",
                   help="after export, compare the artifact in its runtime with the Keras model "
                        "(non-zero exit if it disagrees)")
    g = p.add_argument_group("savedmodel")
    g.add_argument("--name", default="maxim", help="TF Serving model name (default maxim)")
    g.add_argument("--version", type=int, help="model version (default: next free number)")
    g.add_argument("--max-pixels", type=int, default=2048 * 2048,
                   help="largest H*W accepted in-graph (default 4194304)")
    g.add_argument("--max-request-pixels", type=int,
                   help="largest N*H*W of one request, all its images together "
                        "(default: --max-pixels)")
    g.add_argument("--no-warmup", action="store_true", help="do not write the warmup requests")
    g.add_argument("--overwrite", action="store_true", help="replace an existing version")
    g = p.add_argument_group("tflite")
    g.add_argument("--quantization", "-q", default="fp32",
                   choices=("fp32", "fp16", "dynamic", "int8"),
                   help="fp32, fp16 weights, dynamic-range int8 or full int8 (default fp32)")
    g.add_argument("--input-size", type=_size,
                   help="fixed input size HxW for GPU/NNAPI delegates (default: dynamic)")
    g.add_argument("--batch-size", type=int, help="fixed batch size (default 1 with --input-size)")
    g.add_argument("--representative-data",
                   help="folder of images for int8 calibration (default: synthetic patches)")
    g.add_argument("--num-calibration-images", type=int, default=8,
                   help="calibration samples for int8 (default 8)")
    g.add_argument("--int8-io", default="float32", choices=("float32", "uint8", "int8"),
                   help="input/output type of a full-int8 model (default float32)")
    g = p.add_argument_group("onnx")
    g.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def default_output(args):
    model = pathlib.Path(args.model)
    if args.format == "savedmodel":
        return pathlib.Path("serving")
    if args.format == "tflite":
        size = f"_{args.input_size[0]}x{args.input_size[1]}" if args.input_size else ""
        return model.with_name(f"{model.stem}_{args.quantization}{size}.tflite")
    return model.with_suffix(".onnx")


def options(args):
    if args.format == "savedmodel":
        return dict(name=args.name, version=args.version, max_pixels=args.max_pixels,
                    warmup=not args.no_warmup, overwrite=args.overwrite,
                    max_request_pixels=args.max_request_pixels)
    if args.format == "tflite":
        return dict(quantization=args.quantization, input_size=args.input_size,
                    batch_size=args.batch_size, representative_data=args.representative_data,
                    num_calibration_images=args.num_calibration_images, int8_io=args.int8_io)
    return dict(opset=args.opset)


def run(args):
    from maxim_tf import hub
    from maxim_tf.errors import MaximError, ModelFileError
    from maxim_tf.export import export_model
    from maxim_tf.export.verify import VerificationError
    from maxim_tf.modelfile import check_keras_file

    try:
        model = hub.resolve_model(args.model)  # a path, a shipped name or a preset
        check_keras_file(model)  # before TensorFlow starts: one line, exit 2
    except MaximError as e:
        print(f"maxim-tf export: error: {e}", file=sys.stderr)
        return e.exit_code
    output = pathlib.Path(args.output) if args.output else default_output(args)
    try:
        path, checks = export_model(model, output, args.format, verify=args.verify,
                                    **options(args))
    except ModelFileError as e:
        print(f"maxim-tf export: error: {e}", file=sys.stderr)
        return e.exit_code
    except VerificationError as e:
        print(f"maxim-tf export: verification failed: {e}", file=sys.stderr)
        return 3
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"maxim-tf export: error: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    for check in checks:
        print(check)
    if checks:
        print(f"Verified {len(checks)} runtime/input checks against Keras: all passed.")
    return 0
