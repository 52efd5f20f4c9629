"""The ``maxim-tf`` console command.

Each subcommand lives in ``maxim_tf/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``
(the exit status). Subcommands only parse arguments and call the Python API.
"""

import argparse
import importlib
import os
import pkgutil
import sys


def build_parser():
    from maxim_tf import __version__, commands

    parser = argparse.ArgumentParser(
        prog="maxim-tf",
        description="MAXIM (Multi-Axis MLP for Image Processing) in TensorFlow/Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"maxim-tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"maxim_tf.commands.{info.name}").register(sub)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
