"""File helpers for the exporters: atomic writes and the calibration image reader.

Models are loaded by the one loader, :func:`maxim_tf.hub.load_model`."""

import os
import pathlib
import shutil

from maxim_tf import fileio, image_io
from maxim_tf.fileio import current_umask  # noqa: F401  (used by the exporters)


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


def load_images(folder, max_pixels=image_io.DEFAULT_MAX_PIXELS):
    """All images under a folder (sorted by path) as float32 RGB HWC arrays in [0, 1].

    Read with :func:`maxim_tf.image_io.read_image` (size limit, EXIF orientation,
    16-bit, grayscale and alpha handled; a bad file raises ImageReadError naming it).
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    return [image_io.rgb_float(image_io.read_image(p, max_pixels=max_pixels))
            for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in image_io.IMAGE_EXTENSIONS and p.is_file()]
