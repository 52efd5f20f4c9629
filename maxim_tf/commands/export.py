"""``maxim-tf export``: .keras -> TF Serving SavedModel, TFLite or ONNX (optionally verified)."""

import pathlib

from maxim_tf import errors
from maxim_tf.commands._common import renamed, run_failed, usage_error
from maxim_tf.export import FORMATS  # the one list of artifact kinds (imports nothing heavy)


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


def _positive_int(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def register(subparsers):
    p = subparsers.add_parser(
        "export",
        help="export a .keras MAXIM to a TF Serving SavedModel, TFLite or ONNX",
        description="Export a MAXIM .keras model for deployment. Every artifact takes float32 "
                    "[N, H, W, 3] images in [0, 1] of any size (padding and cropping are in the "
                    "graph). --verify runs the artifact in its own runtime against Keras (exit 3 if it "
                    "disagrees).",
    )
    p.add_argument("model", metavar="MODEL",
                   help="a .keras file, a saved name (denoise, deblur) or a preset of "
                        "`maxim-tf models` (downloaded and converted on first use)")
    p.add_argument("--to", required=True, choices=FORMATS, metavar="KIND",
                   help=f"artifact to write: {', '.join(FORMATS)}")
    renamed(p, "--format", "-f", new="--to")
    p.add_argument("-o", "--output",
                   help="savedmodel: base directory (writes <output>/<name>/<version>/, default "
                        "./serving); tflite/onnx: output file (default <model>_<quant>.tflite / "
                        "<model>.onnx beside the model)")
    p.add_argument("--verify", action="store_true",
                   help="after export, compare the artifact in its runtime with the Keras model "
                        "(non-zero exit if it disagrees)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output: the tflite/onnx file, or the SavedModel "
                        "version folder (default: refuse it before any work, exit 2)")
    g = p.add_argument_group("savedmodel")
    g.add_argument("--model-name", default="maxim", help="TF Serving model name (default maxim)")
    g.add_argument("--model-version", type=_positive_int,
                   help="TF Serving model version (default: next free number)")
    g.add_argument("--graph-max-pixels", type=_positive_int, default=2048 * 2048, metavar="P",
                   help="largest H*W the serving graph accepts (default 4194304)")
    g.add_argument("--graph-max-request-pixels", type=_positive_int, metavar="P",
                   help="largest N*H*W of one request, all its images together "
                        "(default: --graph-max-pixels)")
    g.add_argument("--no-warmup", action="store_true", help="do not write the warmup requests")
    renamed(g, "--name", new="--model-name")
    renamed(g, "--version", new="--model-version")
    renamed(g, "--max-pixels", new="--graph-max-pixels")
    renamed(g, "--max-request-pixels", new="--graph-max-request-pixels")
    g = p.add_argument_group("tflite")
    g.add_argument("--quantize", default="fp32", choices=("fp32", "fp16", "dynamic", "int8"),
                   help="fp32, fp16 weights, dynamic-range int8 or full int8 (default fp32)")
    g.add_argument("--input-size", type=_size,
                   help="fixed input size HxW for GPU/NNAPI delegates, at most 4096x4096 pixels "
                        "(N x H x W) and 16384 per side (default: dynamic)")
    g.add_argument("--input-batch", type=_positive_int, metavar="N",
                   help="fixed batch size N (default 1 with --input-size)")
    renamed(g, "--quantization", new="--quantize")
    renamed(g, "--batch-size", new="--input-batch")
    g.add_argument("--representative-data",
                   help="folder of images for int8 calibration, at least one image file "
                        "(default: synthetic patches)")
    g.add_argument("--num-calibration-images", type=_positive_int, default=8,
                   help="calibration samples for int8 (default 8)")
    g.add_argument("--int8-io", default="float32", choices=("float32", "uint8", "int8"),
                   help="input/output type of a full-int8 model (default float32)")
    g = p.add_argument_group("onnx")
    g.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def default_output(args):
    model = pathlib.Path(args.model)
    if args.to == "savedmodel":
        return pathlib.Path("serving")
    if args.to == "tflite":
        size = f"_{args.input_size[0]}x{args.input_size[1]}" if args.input_size else ""
        return model.with_name(f"{model.stem}_{args.quantize}{size}.tflite")
    return model.with_suffix(".onnx")


def options(args):
    if args.to == "savedmodel":
        return dict(name=args.model_name, version=args.model_version,
                    max_pixels=args.graph_max_pixels, warmup=not args.no_warmup,
                    overwrite=args.overwrite, max_request_pixels=args.graph_max_request_pixels)
    if args.to == "tflite":
        return dict(quantization=args.quantize, input_size=args.input_size,
                    batch_size=args.input_batch, representative_data=args.representative_data,
                    num_calibration_images=args.num_calibration_images, int8_io=args.int8_io,
                    overwrite=args.overwrite)
    return dict(opset=args.opset, overwrite=args.overwrite)


def check_output(args, output):
    """Refuse an existing output without --overwrite, before any work (exit 2)."""
    from maxim_tf.export import check_new_output

    if args.to == "savedmodel":
        if args.model_version is not None:
            version = output / args.model_name / str(args.model_version)
            if version.exists() and not args.overwrite:
                raise errors.UsageError(f"{version}: already exists; pass --overwrite to replace "
                                        f"it, or another --model-version")
        return
    try:
        check_new_output(output, args.overwrite)
    except OSError as e:
        raise usage_error(e) from e


def check_options(args):
    """Refuse bad TFLite shape and calibration options (exit 2) before any work."""
    from maxim_tf.export.io import check_fixed_input, check_representative_data

    if args.to != "tflite":
        return
    try:
        check_fixed_input(args.input_size, args.input_batch)
    except ValueError as e:
        raise usage_error(f"--input-size/--input-batch: {e}") from e
    if args.quantize == "int8" and args.representative_data is not None:
        try:
            check_representative_data(args.representative_data, what="--representative-data")
        except ValueError as e:
            raise usage_error(e) from e


def run(args):
    from maxim_tf import hub
    from maxim_tf.export import export_model
    from maxim_tf.modelfile import check_keras_file

    check_options(args)  # before the model is resolved (a download) or TensorFlow starts
    output = pathlib.Path(args.output) if args.output else default_output(args)
    check_output(args, output)  # before a download or any work
    model = hub.resolve_model(args.model, progress=not args.quiet)  # a path, name or preset
    check_keras_file(model)  # before TensorFlow starts: one line, exit 2
    try:
        path, checks = export_model(model, output, args.to, verify=args.verify, **options(args))
    except (OSError, ValueError, TypeError) as e:  # VerificationError (exit 3) passes through
        raise usage_error(e) from e  # nothing written: exit 2
    except RuntimeError as e:  # a converter failure: exit 1
        raise run_failed(e) from e
    print(f"Wrote {path}")
    for check in checks:
        print(check)
    if checks:
        print(f"Verified {len(checks)} runtime/input checks against Keras: all passed.")
    return 0
