"""The six official variants: parameter names/shapes equal the official
manifests and the parameter counts equal the official totals (no weights)."""

import json

import numpy as np
import pytest
from conftest import FIXTURES, SHARED_OFFICIAL

import maxim_tf
from maxim_tf.conversion import expected_parameters

NAME = "official_variant_manifests.json"
# The shared copy when present, else the committed copy (identical file).
MANIFEST = SHARED_OFFICIAL / NAME if (SHARED_OFFICIAL / NAME).is_file() else FIXTURES / "official" / NAME
VARIANTS = ["S-1", "S-2", "S-3", "M-1", "M-2", "M-3"]


@pytest.fixture(scope="module")
def manifests():
    return json.loads(MANIFEST.read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_official_manifest(manifests, variant):
    model = maxim_tf.MAXIM.from_variant(variant, return_all_outputs=True)
    expected = expected_parameters(model)
    manifest = {k: tuple(v) for k, v in manifests[variant].items()}
    assert set(expected) == set(manifest), (
        sorted(set(manifest) - set(expected))[:5], sorted(set(expected) - set(manifest))[:5])
    assert expected == manifest
    total = int(sum(np.prod(s) for s in manifest.values()))
    print(f"{variant}: {total} parameters")
    assert model.count_params() == total
