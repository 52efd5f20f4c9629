"""The one place that checks and loads ``.keras`` model files.

Every command that takes a model file (``restore``, ``eval``, ``export``,
``train --init-from``) and the Python API go through :func:`load_keras_model`,
so a bad file gets the same one-line :class:`~maxim_tf.errors.ModelFileError`
naming the file and what is wrong with it, whoever reads it:

* missing, a folder, empty, or not ending in ``.keras``;
* not a zip archive (a text file, an HDF5 file, a truncated download);
* a zip archive that is damaged or lacks the ``config.json`` Keras writes;
* a zip bomb: ``config.json`` (or ``metadata.json``) larger than
  :data:`MAX_CONFIG_BYTES` (64 MiB), declared or actually inflated, or a large
  member that inflates more than :data:`MAX_COMPRESSION_RATIO` times (weights
  barely compress); checked before anything is inflated, and the config is read
  with a bounded streaming read;
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
# Zip-bomb bounds of a .keras archive (the MAXIM configs are a few hundred KB).
MAX_CONFIG_BYTES = 64 << 20  # config.json and metadata.json
MAX_COMPRESSION_RATIO = 100  # for members over MAX_CONFIG_BYTES (float weights: about 1.1)
_SMALL_MEMBERS = (_KERAS_CONFIG, "metadata.json")


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
            check_member_sizes(path, archive)
            config = json.loads(read_member(path, archive, _KERAS_CONFIG))
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: damaged model archive ({type(e).__name__}: "
                             f"{_first_line(e)})") from e
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: {_KERAS_CONFIG} is not a Keras model config")
    return config


def check_member_sizes(path, archive):
    """Raise :class:`ModelFileError` if a member's declared size makes the archive a zip bomb.

    Args:
        path: the archive's path (for the message).
        archive: the open ``zipfile.ZipFile``.
    """
    for info in archive.infolist():
        if info.filename in _SMALL_MEMBERS and info.file_size > MAX_CONFIG_BYTES:
            raise ModelFileError(
                f"{path}: {info.filename} declares {info.file_size / 2**20:.0f} MiB, more than "
                f"the {MAX_CONFIG_BYTES >> 20} MiB a model config may have (a zip bomb?); refused "
                f"before reading it")
        if info.file_size > MAX_CONFIG_BYTES \
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise ModelFileError(
                f"{path}: {info.filename} inflates {info.file_size / max(info.compress_size, 1):.0f}"
                f" times to {info.file_size / 2**20:.0f} MiB (model weights barely compress; a zip "
                f"bomb?); refused before reading it")


def read_member(path, archive, name, limit=MAX_CONFIG_BYTES, chunk=1 << 20):
    """The bytes of ``name``, read in chunks and stopped past ``limit`` whatever its header says.

    Raises:
        ModelFileError: the member inflates to more than ``limit`` bytes.
    """
    parts, total = [], 0
    with archive.open(name) as member:
        while block := member.read(min(chunk, limit + 1 - total)):
            parts.append(block)
            total += len(block)
            if total > limit:
                raise ModelFileError(
                    f"{path}: {name} inflates to more than {limit >> 20} MiB (its header "
                    f"understates it: a zip bomb?); refused")
    return b"".join(parts)


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
    path = pathlib.Path(path)
    check_keras_file(path)  # before TensorFlow is imported: a bad file costs no time

    import keras

    import maxim_tf.model  # noqa: F401  (registers MAXIM and its layers for deserialization)

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
