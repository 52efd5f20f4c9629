"""Shared test fixtures. Markers (``slow``, ``packaging``) are declared in pytest.ini."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Presets fetched by the tests get no fast-start twin (an export each, minutes in all);
# tests/test_faststart.py turns it on where it is the point.
os.environ.setdefault("MAXIM_TF_FASTSTART", "0")

import maxim_tf  # noqa: E402
from maxim_tf import allocator  # noqa: E402

allocator.tune_malloc()  # as the maxim-tf command does, before TensorFlow allocates anything
maxim_tf.prefer_onednn()  # as the maxim-tf command does, before TensorFlow loads

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"
# ../shared sits beside the clone on this team's machines and in CI; a user's clone has
# nothing beside it. Every test runs on what the repository holds: the official fixtures
# committed under tests/fixtures/official and the sample photos under
# tests/fixtures/images. Where ../shared holds more (the tiny3s fixture, the other
# degraded samples), the tests use it too, and say with a skip what a clone lacks.
SHARED = REPO.parent / "shared"
SHARED_OFFICIAL = SHARED / "fixtures" / "official"
SHARED_IMAGES = SHARED / "images" / "degraded"
# Real degraded photos at odd sizes (the official MAXIM repository's samples, Apache-2.0):
# dehazing/0003_0.8_0.2.png (550 x 309), deraining/0.jpg (720 x 480), deraining/1.png (480 x 320).
SAMPLE_IMAGES = FIXTURES / "images"

# A small MAXIM (2 stages, 3 scales, 8 features, block/grid 8 hr / 4 lr):
# size multiple 32, builds in a second or two.
TINY_CONFIG = dict(
    features=8, depth=3, num_stages=2, num_groups=1, num_supervision_scales=3,
    num_bottleneck_blocks=1, block_size_hr=(8, 8), grid_size_hr=(8, 8),
    block_size_lr=(4, 4), grid_size_lr=(4, 4),
)


@pytest.fixture(scope="session")
def tiny_model():
    """A randomly initialised tiny MAXIM (seeded), returning the restored image."""
    import keras

    import maxim_tf

    keras.utils.set_random_seed(0)
    return maxim_tf.MAXIM(**TINY_CONFIG)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def converted_tiny2s():
    """The official tiny2s checkpoint (committed under tests/fixtures) converted:
    realistic outputs in about [-0.3, 1.6]; returns the restored image."""
    from maxim_tf.conversion import convert_checkpoint

    model, _ = convert_checkpoint(FIXTURES / "official" / "tiny2s" / "checkpoint.npz")
    return model
