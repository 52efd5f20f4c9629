"""A tensorflow-datasets builder for paired restoration data in local folders.

SIDD, GoPro, Rain13k, LOL and most restoration sets are distributed as
folders of degraded inputs and clean targets with matching names. Put (or
symlink) them in a *manual dir*::

    manual_dir/input/0001.png     manual_dir/target/0001.png   -> split "train"

or, with several splits::

    manual_dir/train/input/...    manual_dir/train/target/...
    manual_dir/val/input/...      manual_dir/val/target/...

and prepare once, offline::

    from maxim_tf.training import tfds_paired
    builder = tfds_paired.prepare(data_dir="~/tensorflow_datasets",
                                  manual_dir="/data/SIDD_pairs", name="sidd")
    ds = builder.as_dataset(split="train")   # {"input", "target", "name"}

``name`` becomes the builder config, so several data sets share one
``data_dir``. Pairs are checked like :func:`maxim_tf.training.data.scan_pairs`:
mismatched names or sizes raise an error listing the first offenders;
unreadable pairs are skipped and counted in a warning.
"""

import logging
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from maxim_tf.training import data as data_lib

log = logging.getLogger("maxim_tf.training")

SPLIT_NAMES = ("train", "val", "validation", "test")


class PairedImagesConfig(tfds.core.BuilderConfig):
    """One local data set (the config name keeps data sets apart in a data_dir)."""


class PairedImages(tfds.core.GeneratorBasedBuilder):
    """Aligned (input, target) image pairs from a local manual dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [PairedImagesConfig(name="default", description="Paired images.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place the data in the manual dir as input/ and target/ folders with matching "
        "file names (or train/input, train/target, val/input, ... for several splits).")

    # This module is installed as maxim_tf.training but lives in training/ of the
    # source tree: tell TFDS where the code is instead of letting it guess.
    pkg_dir_path = epath.Path(__file__).parent
    code_path = epath.Path(__file__)

    def _info(self):
        image = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
        return tfds.core.DatasetInfo(
            builder=self,
            description="Paired image restoration data (degraded input, clean target).",
            features=tfds.features.FeaturesDict({
                "input": image,
                "target": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                "name": tfds.features.Text(),
            }),
            supervised_keys=("input", "target"),
        )

    def _split_generators(self, dl_manager):
        root = pathlib.Path(dl_manager.manual_dir)
        if (root / "input").is_dir() or (root / "target").is_dir():
            return {"train": self._generate_examples(root)}
        splits = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()
                  and p.name in SPLIT_NAMES} if root.is_dir() else {}
        if not splits:
            raise data_lib.DataError(
                f"No input/ and target/ folders (nor {', '.join(SPLIT_NAMES)} sub-folders "
                f"holding them) in the manual dir {root}")
        return {name: self._generate_examples(path) for name, path in splits.items()}

    def _generate_examples(self, root):
        inputs, targets, _ = data_lib.scan_pairs(root)
        skipped = []
        for inp, tgt in zip(inputs, targets):
            pair = _read_rgb(inp), _read_rgb(tgt)
            if pair[0] is None or pair[1] is None:
                skipped.append(inp.name)
                continue
            key = str(inp.relative_to(root / "input").with_suffix(""))
            yield key, {"input": pair[0], "target": pair[1], "name": key}
        if skipped:
            log.warning("Skipped %d unreadable pair(s) in %s (first: %s)", len(skipped),
                        root, skipped[:data_lib.MAX_LISTED])


def _read_rgb(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), np.uint8)
    except Exception:  # noqa: BLE001 - unreadable images are skipped and counted
        return None


def prepare(data_dir, manual_dir=None, name=None):
    """Build (if needed) the paired data set and return the ready builder.

    Args:
        data_dir: TFDS data dir (prepared records are written there).
        manual_dir: folder with input/ and target/ (needed the first time only).
        name: config name of this data set (e.g. "sidd"); default "default".

    Returns:
        The prepared ``PairedImages`` builder (``builder.as_dataset(split=...)``).
    """
    name = name or "default"
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"Data set name must match [a-z0-9_]+. Received: name={name!r}")
    config = PairedImagesConfig(name=name, description=f"Paired images: {name}")
    data_dir = str(data_dir)
    if "://" not in data_dir:  # keep gs://... as is; pathlib would mangle it
        data_dir = str(pathlib.Path(data_dir).expanduser())
    builder = PairedImages(config=config, data_dir=data_dir)
    if not builder.is_prepared():
        if not manual_dir:
            raise data_lib.DataError(
                f"The paired data set {name!r} is not prepared in {data_dir}: pass its "
                f"manual_dir (a folder with input/ and target/).")
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(pathlib.Path(manual_dir).expanduser())))
    return builder
