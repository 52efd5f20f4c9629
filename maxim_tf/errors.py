"""The exception family of maxim_tf and the exit codes the ``maxim-tf`` command maps them to.

Every error the library raises on purpose derives from :class:`MaximError`, so a
caller can catch one class; ``maxim-tf`` prints its message as one line and exits
with its ``exit_code``:

====  ==============================================================
code  meaning
====  ==============================================================
0     success
1     some inputs failed (the others were processed)
2     usage, configuration, model-file or data error (nothing done)
3     a result failed its check: training diverged (loss not finite), an
      exported artifact disagrees with the Keras model (``export --verify``), or a
      converted model with its reference outputs (``convert --reference``)
130   interrupted (Ctrl-C); 143: terminated (SIGTERM)
====  ==============================================================

This module imports nothing heavy: the command line imports it before TensorFlow.
"""

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_DIVERGED = EXIT_CHECK_FAILED
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class MaximError(Exception):
    """Base class of the errors maxim_tf raises on purpose; the message names the problem."""

    exit_code = EXIT_USAGE


class UsageError(MaximError, ValueError):
    """A bad argument or option value."""


class RunFailedError(MaximError):
    """The work was attempted and failed (e.g. a converter error); exit 1."""

    exit_code = EXIT_SOME_FAILED


class NoInputsError(MaximError):
    """Nothing to process: no input files were found (exit 1, like failed inputs)."""

    exit_code = EXIT_SOME_FAILED


class ModelFileError(MaximError, ValueError):
    """A model file (or name) that cannot be used: missing, not a model, truncated, unsafe."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """No model file, saved name or preset of that name; the message lists the available ones."""


class DownloadError(MaximError, OSError):
    """A preset's checkpoint could not be downloaded, or failed its checks (nothing was cached).

    The message names the URL, the reason and the manual alternative.
    """


class CheckFailedError(MaximError):
    """A result failed its check (exit 3): a converted model that disagrees with its
    ``--reference``, an export that disagrees with Keras (``export --verify``)."""

    exit_code = EXIT_CHECK_FAILED


class MissingDependencyError(MaximError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module, extra, feature=None):
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    Args:
        module: dotted module name, e.g. ``"ai_edge_litert.interpreter"``.
        extra: the maxim-tf extra that installs it, e.g. ``"export"``.
        feature: what needs it, for the message (default: the module name).

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{feature or module} needs the optional package {module.split('.')[0]!r} "
            f"({e.name or module} is missing): pip install \"maxim-tf[{extra}]\"") from e


def is_out_of_memory(error):
    """True if ``error`` is an out-of-memory error: ``MemoryError`` or TensorFlow's
    ``ResourceExhaustedError`` (checked without importing TensorFlow: when TensorFlow
    is not imported yet, no TensorFlow error can have been raised)."""
    if isinstance(error, MemoryError):
        return True
    import sys

    tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    return tf_errors is not None and isinstance(error, tf_errors.ResourceExhaustedError)


class Terminated(BaseException):
    """Raised in the main thread by the ``maxim-tf`` SIGTERM handler so clean-up code runs."""
