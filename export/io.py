"""File helpers for the exporters: atomic writes and the calibration image reader.

Models are loaded by the one loader, :func:`maxim_tf.hub.load_model`."""

import os
import pathlib
import shutil

from maxim_tf import image_io

# Largest fixed input (N x H x W pixels, and each side) of a TFLite export with an input
# size: the converter folds size-dependent constants, so its memory follows the fixed
# size (an unbounded 100000x100000 took 12 GB and climbing before anything was written).
MAX_FIXED_INPUT_PIXELS = 4096 * 4096
MAX_FIXED_INPUT_SIDE = 16384


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


def check_fixed_input(input_size, batch_size):
    """Validate a fixed export shape before any work; returns ``(input_size, batch_size)``.

    Raises:
        ValueError: a side < 1 or over :data:`MAX_FIXED_INPUT_SIDE`, a batch < 1, or
            N x H x W over :data:`MAX_FIXED_INPUT_PIXELS`.
    """
    if batch_size is not None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. "
                             f"Received: batch_size={batch_size!r}")
        batch_size = int(batch_size)
    if input_size is None:
        return None, batch_size
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(f"input_size must be (height, width) with positive values. "
                         f"Received: input_size={input_size}")
    if max(input_size) > MAX_FIXED_INPUT_SIDE \
            or (batch_size or 1) * input_size[0] * input_size[1] > MAX_FIXED_INPUT_PIXELS:
        raise ValueError(
            f"a fixed input of {batch_size or 1}x{input_size[0]}x{input_size[1]} is too large: "
            f"at most {MAX_FIXED_INPUT_PIXELS} pixels (N x H x W, e.g. 4096x4096) and "
            f"{MAX_FIXED_INPUT_SIDE} per side; for larger images export a dynamic-size model "
            f"(no input size) and tile")
    return input_size, batch_size


def check_representative_data(source, what="representative data"):
    """Raise ValueError unless ``source`` is a folder holding at least one image file.

    ``what`` names it in the message (the CLI says ``--representative-data``)."""
    folder = pathlib.Path(source)
    if not folder.is_dir():
        raise ValueError(f"{what} {source}: "
                         f"{'not a folder' if folder.exists() else 'no such folder'}")
    if not any(p.suffix.lower() in image_io.IMAGE_EXTENSIONS and p.is_file()
               for p in folder.rglob("*")):
        raise ValueError(f"{what} {source}: no image files in it "
                         f"({', '.join(image_io.IMAGE_EXTENSIONS)}); int8 calibration needs "
                         f"images like the ones the model will restore")
