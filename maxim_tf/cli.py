"""The ``maxim-tf`` console command.

Each subcommand lives in ``maxim_tf/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``
(the exit status). Subcommands only parse arguments and call the Python API.
Command modules import nothing heavy at module level, so ``--help``,
``--version`` and argument errors never import TensorFlow.

Flags mean the same in every subcommand (the vocabulary is in
``maxim_tf/commands/_common.py``); ``-v/--verbose`` and ``-q/--quiet`` are common
to all of them. Errors: a subcommand raises, it does not print; a
:class:`maxim_tf.errors.MaximError` is printed here as one line ``maxim-tf
<command>: error: <message>`` (the prefix argparse uses for usage errors) and ends
the run with its ``exit_code`` (:mod:`maxim_tf.errors` documents the codes); any
other exception is one line too, exit 1 (the traceback only with ``-v/--verbose``).
:func:`console_main` (the installed ``maxim-tf`` script and ``python -m
maxim_tf``) also hides TensorFlow's C++ start-up log lines unless
``--verbose``, turns SIGTERM into a normal exit so clean-up code runs, tunes
glibc's ``malloc`` for TensorFlow's large buffers (:mod:`maxim_tf.allocator`) and
asks TensorFlow for its oneDNN kernels (:func:`maxim_tf.prefer_onednn`).
"""

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import pkgutil
import re
import select
import signal
import sys
import threading
import traceback

from maxim_tf import allocator, errors, prefer_onednn

# Which extra installs a module a command may import (see setup.py's extras_require).
_EXTRA_OF_MODULE = {
    "tensorflow": "cpu", "keras": "cpu", "ai_edge_litert": "export", "tf2onnx": "export",
    "onnx": "export", "onnxruntime": "export", "tensorflow_datasets": "train",
    "tensorboard": "train", "matplotlib": "bench", "bm3d": "bench",
}

# C++ log lines of TensorFlow/absl/oneDNN/XLA, e.g.
#   I0000 00:00:1733012345.123456    4410 cpu_feature_guard.cc:227] This TensorFlow binary ...
#   WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+\S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"  # TF's own C++ log format
    r"|oneDNN custom operations are on"
    r"|INFO: (?:Created TensorFlow Lite|Initialized TensorFlow Lite)"  # LiteRT's delegate notes
    r"|To enable the following instructions:"  # second line of cpu_feature_guard
    r")")


def _add_common_arguments(parser):
    """The flags every subcommand has, with one meaning everywhere."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's own log output and full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars (results and errors are still printed)")


def build_parser():
    """The ``argparse`` parser of every subcommand (imports no TensorFlow)."""
    from maxim_tf import __version__, commands

    parser = argparse.ArgumentParser(
        prog="maxim-tf",
        description="MAXIM (Multi-Axis MLP for Image Processing) in TensorFlow/Keras 3.",
        epilog="Exit status: 0 ok, 1 some inputs failed, 2 usage/config/model/data error, "
               "3 a result failed its check (training diverged, export --verify, convert --reference), "
               "130 interrupted, 143 terminated.")
    parser.add_argument("--version", action="version", version=f"maxim-tf {__version__}")
    _add_common_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _add_common_arguments(common)
    add_parser = sub.add_parser

    def add_parser_with_common(*args, **kwargs):
        kwargs.setdefault("parents", []).append(common)
        return add_parser(*args, **kwargs)

    sub.add_parser = add_parser_with_common
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"maxim_tf.commands.{info.name}").register(sub)
    return parser


def _wants_verbose(argv):
    return any(a in ("-v", "--verbose") for a in argv)


def _wants_quiet(argv):
    return any(a in ("-q", "--quiet") for a in argv)


def configure_logging(verbose):
    """Quiet TensorFlow/absl Python logging (and, before TF is imported, its C++ logging)."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in ("tensorflow", "absl", "keras", "h5py", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings
    for module in ("tensorflow", "keras", "tf2onnx", "onnx", "google.protobuf", "absl"):
        warnings.filterwarnings("ignore", module=module)


def _missing_extra_message(error):
    top = (error.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    if extra == "cpu":
        return (f"TensorFlow is not installed (no module {top!r}): "
                'pip install "maxim-tf[cpu]" (or "maxim-tf[gpu]" on NVIDIA GPUs)')
    return f"this needs the optional package {top!r}: pip install \"maxim-tf[{extra}]\""


def main(argv=None):
    """Run ``maxim-tf`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = _wants_verbose(argv)
    configure_logging(verbose)
    parser = build_parser()
    args = parser.parse_args(argv)  # --help, --version and usage errors exit here (0 / 2)
    if not getattr(args, "func", None):
        parser.print_help()
        return errors.EXIT_USAGE
    # -v/-q may come before the subcommand too (the subcommand's defaults would hide them).
    args.verbose, args.quiet = verbose, args.quiet or _wants_quiet(argv)
    return run_parsed(args)


def run_parsed(args):
    """Run a parsed subcommand (``args.func``) with the one error mapping of the CLI:
    a :class:`~maxim_tf.errors.MaximError` prints one line and returns its exit code,
    any other exception one line (traceback with ``args.verbose``)."""
    verbose = getattr(args, "verbose", False)
    prog = f"maxim-tf {args.command}"
    if getattr(args, "needs_tensorflow", True) and importlib.util.find_spec("tensorflow") is None:
        print(f"{prog}: error: {_missing_extra_message(ModuleNotFoundError(name='tensorflow'))}",
              file=sys.stderr)
        return errors.EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except errors.MaximError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except errors.Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return errors.EXIT_TERMINATED
    except ModuleNotFoundError as e:
        message = _missing_extra_message(e)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return errors.EXIT_USAGE
    except Exception as e:  # noqa: BLE001  (a CLI user gets one line, not a traceback)
        if verbose:
            traceback.print_exc()
        detail = str(e).strip().splitlines()
        print(f"{prog}: error: unexpected {type(e).__name__}: "
              f"{detail[0] if detail else 'no details'}"
              + ("" if verbose else " (run again with --verbose for the traceback)"),
              file=sys.stderr)
        return errors.EXIT_SOME_FAILED


class _StderrFilter:
    """Drop TensorFlow's C++ log lines from file descriptor 2, pass everything else on.

    The lines written before ``absl::InitializeLog()`` come from C++ at
    ``import tensorflow`` and ignore ``TF_CPP_MIN_LOG_LEVEL``; only a filter on the
    file descriptor removes them. Used by :func:`console_main` only: the library
    itself never touches a host program's file descriptors.
    """

    def __init__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, name="maxim-tf-stderr", daemon=True)
        self._thread.start()

    def _emit(self, data):
        while data:
            data = data[os.write(self._saved, data):]

    def _pump(self):
        pending = b""
        while True:
            ready, _, _ = select.select([self._read], [], [], 0.05)
            if not ready:  # a partial line (a progress bar) waits no longer than 50 ms
                if pending:
                    self._emit(pending)
                    pending = b""
                continue
            chunk = os.read(self._read, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            self._emit(b"".join(line + b"\n" for line in lines
                                if not _LOG_LINE.match(line.decode("utf-8", "replace"))))
        if pending and not _LOG_LINE.match(pending.decode("utf-8", "replace")):
            self._emit(pending)

    def close(self):
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the pump sees EOF
        self._thread.join(timeout=5)
        os.close(self._read)
        os.close(self._saved)


@contextlib.contextmanager
def _signals_as_exceptions():
    def on_term(signum, frame):
        raise errors.Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def console_main():
    """Entry point of the installed ``maxim-tf`` script and of ``python -m maxim_tf``."""
    argv = sys.argv[1:]
    allocator.tune_malloc()  # before TensorFlow allocates anything (see maxim_tf/allocator.py)
    prefer_onednn()  # for this process only, before TensorFlow loads (see its docstring)
    stderr_filter = None
    if not _wants_verbose(argv):
        try:
            stderr_filter = _StderrFilter()
        except OSError:
            stderr_filter = None
    try:
        with _signals_as_exceptions():
            status = main(argv)
    except errors.Terminated:
        status = errors.EXIT_TERMINATED
    finally:
        if stderr_filter is not None:
            stderr_filter.close()
    sys.stdout.flush()
    if status in (errors.EXIT_TERMINATED, errors.EXIT_INTERRUPTED):
        _exit_now(status)
    return status


def _exit_now(status):
    """Exit at once after a signal: clean-up has run (``finally`` blocks, then the atexit
    handlers here), but the interpreter's own teardown, which garbage-collects a traced
    TensorFlow graph for seconds, is skipped - a stopped command stops within a moment."""
    import atexit

    atexit._run_exitfuncs()  # e.g. AutoGraph's temporary source files
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(console_main())
