"""The one place that checks and loads ``.keras`` model files.

Every command that takes a model file (``restore``, ``eval``, ``export``,
``train --init-from``) and the Python API go through :func:`load_keras_model`,
so a bad file gets the same one-line :class:`~maxim_tf.errors.ModelFileError`
naming the file and what is wrong with it, whoever reads it:

* missing, a folder, empty, or not ending in ``.keras``;
* not a zip archive (a text file, an HDF5 file, a truncated download);
* a zip archive that is damaged or lacks the ``config.json`` Keras writes;
* a config that safe mode refuses (``Lambda`` layers, arbitrary functions) or
  that names classes this package does not provide.

Loading always uses Keras' ``safe_mode=True``: a model file can never run code.
"""

import json
import os
import pathlib
import zipfile

from maxim_tf.errors import ModelFileError

_KERAS_CONFIG = "config.json"


def check_keras_path(path):
    """Raise :class:`ModelFileError` unless ``path`` is an existing file named ``*.keras``.

    Returns:
        ``pathlib.Path(path)``.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a .keras model file")
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: not a .keras model file (save models with "
                             f"model.save('name.keras'))")
    return path


def check_keras_file(path):
    """Raise :class:`ModelFileError` unless ``path`` looks like a complete ``.keras`` file.

    Reads only the zip directory and ``config.json`` (no weights, no TensorFlow).

    Args:
        path: the file to check.

    Returns:
        The parsed ``config.json`` (a dict).
    """
    path = check_keras_path(path)
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the model file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a Keras model archive (not a zip file; a text file, "
                             f"or a truncated download?)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if _KERAS_CONFIG not in names:
                raise ModelFileError(f"{path}: a zip archive without {_KERAS_CONFIG}, not a Keras "
                                     f"model file")
            config = json.loads(archive.read(_KERAS_CONFIG))
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: damaged model archive ({type(e).__name__}: "
                             f"{_first_line(e)})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: {_KERAS_CONFIG} is not a Keras model config")
    return config


def load_keras_model(path, require_maxim=False):
    """Load a ``.keras`` file safely after :func:`check_keras_file`.

    Args:
        path: the ``.keras`` file.
        require_maxim: also require a MAXIM-like model (a ``size_multiple`` attribute).

    Returns:
        The Keras model (not compiled).

    Raises:
        ModelFileError: one line naming the file and the problem.
    """
    import keras

    import maxim_tf.model  # noqa: F401  (registers MAXIM and its layers for deserialization)

    path = pathlib.Path(path)
    check_keras_file(path)
    try:
        model = keras.saving.load_model(os.fspath(path), compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for bad configs/weights
        raise ModelFileError(f"{path}: cannot load the model: {_describe_load_error(e)}") from e
    if require_maxim and not hasattr(model, "size_multiple"):
        raise ModelFileError(f"{path}: not a MAXIM model (a {type(model).__name__} without "
                             f"size_multiple)")
    return model


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _describe_load_error(error):
    text = str(error)
    if "Lambda" in text or "safe_mode" in text:
        return ("it contains a Lambda layer or a Python function, refused because loading it "
                "could run arbitrary code (Keras safe mode)")
    return f"{type(error).__name__}: {_first_line(error)}"
