"""File helpers for the exporters: atomic writes, model and image loading."""

import os
import pathlib
import shutil

import numpy as np

from maxim_tf import fileio, image_io
from maxim_tf.fileio import current_umask  # noqa: F401  (used by the exporters)

IMAGE_SUFFIXES = image_io.IMAGE_EXTENSIONS


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` (parent folders created) through a temp file and a rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_bytes(path, data)
    return path


def atomic_replace_dir(tmp_dir, final_dir, overwrite=False):
    """Move a finished directory into place; refuse to clobber unless ``overwrite``."""
    tmp_dir, final_dir = pathlib.Path(tmp_dir), pathlib.Path(final_dir)
    if final_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{final_dir} already exists (pass overwrite=True / --overwrite "
                                  f"to replace it)")
        trash = final_dir.with_name(f".{final_dir.name}.old")
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(final_dir, trash)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)
    return final_dir


def load_model(model, progress=True):
    """Return a Keras MAXIM from a model object, a ``.keras`` path, a saved name or a preset.

    Names and presets go through the one resolver, :func:`maxim_tf.hub.resolve_model`
    (a preset is downloaded and converted on first use).

    Raises:
        maxim_tf.errors.ModelFileError: naming the path and the problem
            (see :func:`maxim_tf.modelfile.load_keras_model`).
    """
    if not isinstance(model, (str, os.PathLike)):
        if not hasattr(model, "size_multiple"):
            raise TypeError(f"Expected a maxim_tf.MAXIM or a .keras path. Received: {type(model)}")
        return model
    from maxim_tf import hub

    return hub.load_model(model, progress=progress, require_maxim=True)


def load_images(folder):
    """All images of a folder as float32 HWC arrays in [0, 1] (sorted by name)."""
    from PIL import Image

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    return out
