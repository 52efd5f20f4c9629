"""Helpers the subcommands share: renamed flags, and turning library errors into
:class:`maxim_tf.errors.MaximError` (printed once, by :func:`maxim_tf.cli.main`).

The vocabulary of ``maxim-tf`` (one meaning per flag, every subcommand):

=========================  ======================================================
``-v/--verbose``           TensorFlow's log output and full tracebacks (all)
``-q/--quiet``             no progress bars (all)
``-o/--output[-dir]``      where the results go
``-m/--model``             a .keras file, saved name or preset (restore, eval)
``--max-pixels``           refuse input images, and model calls after padding, larger (restore, eval)
``--tile-batch``           tiles / ensemble views per model call (restore, eval)
``--image-format``         format of written images (restore)
``--jpeg-quality``         JPEG quality of written images (restore)
``--to``                   artifact kind: savedmodel, tflite, onnx (export)
``--quantize``             TFLite weight/activation type (export)
``--input-size``,          fixed input shape of an export (export)
``--input-batch``
``--graph-max-pixels``     in-graph size limit of a SavedModel (export)
``--model-name``,          TF Serving name and version (export)
``--model-version``
``--measure``              speed or quality (benchmark)
``--model-config``         JSON of MAXIM constructor arguments (convert)
``--config``               training configuration (train)
=========================  ======================================================
"""

import argparse

from maxim_tf import errors


class _Renamed(argparse.Action):
    """A removed spelling: using it stops with one line naming the new flag (exit 2)."""

    def __init__(self, option_strings, dest, new=None, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs="?", help=argparse.SUPPRESS)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed: use {self.new} (see {parser.prog} --help)")


def renamed(parser, *old, new):
    """Make the old spellings ``old`` of a flag stop with a pointer to ``new``."""
    parser.add_argument(*old, action=_Renamed, new=new)


# The argparse types below chain no cause to their ArgumentTypeError: argparse prints only
# the message, and the int()/float() error it replaces says nothing the message does not.
def int_at_least(low, high=None):
    """An ``argparse`` type: an int ``>= low`` (and ``<= high``), else a usage error
    naming the range (exit 2, before any work)."""
    span = f"from {low} to {high}" if high is not None else f">= {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def _finite_number(text, low, strict):
    """``float(text)``, finite and above ``low`` (``strict``) or at least ``low``, else a
    usage error that names the range."""
    import math

    span = f"{'>' if strict else '>='} {low:g}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {span}, got {text!r}") from None
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}")
    return value


def positive_number(text):
    """An ``argparse`` type: a finite number > 0 (``1e6`` allowed), else a usage error."""
    return _finite_number(text, 0, strict=True)


def non_negative_number(text):
    """An ``argparse`` type: a finite number >= 0, else a usage error."""
    return _finite_number(text, 0, strict=False)


def usage_error(error):
    """A library exception that means "bad input, nothing done" as a UsageError (exit 2);
    a MaximError is returned unchanged (it has its own exit code)."""
    if isinstance(error, errors.MaximError):
        return error
    return errors.UsageError(str(error))


def run_failed(error):
    """An exception of a run that was attempted and failed (a converter error, say) as
    a RunFailedError (exit 1); a MaximError is returned unchanged."""
    if isinstance(error, errors.MaximError):
        return error
    return errors.RunFailedError(str(error))
