"""The vendored CRDs are the shared ones, byte for byte."""

from __future__ import annotations

import gzip

import pytest

from tests.kube_api.fixture import SHARED_CRDS, VENDORED_CRDS


@pytest.mark.skipif(not SHARED_CRDS.is_dir(), reason="no ../shared/crds to compare with")
def test_the_vendored_crds_are_the_shared_ones() -> None:
    shared = {p.name: p.read_bytes() for p in SHARED_CRDS.glob("*.yaml")}
    vendored = {
        p.name.removesuffix(".gz"): gzip.decompress(p.read_bytes())
        for p in VENDORED_CRDS.glob("*.yaml.gz")
    }
    assert vendored == shared
