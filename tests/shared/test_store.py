"""The artifact store (`store.py`): a local store's round trip, and a bundle it refuses to upload."""

from __future__ import annotations

from pathlib import Path

import pytest
from delta_support import run, weekly_change, write_manami

from anime_recommender.artifacts import CATALOGUE, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.store import ArtifactStoreError, LocalArtifactStore


def test_local_store_round_trip(base_catalogue: Catalogue, layer: Path, tmp_path: Path) -> None:
    local = LocalArtifactStore(tmp_path / "store")
    summary = run(
        local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path
    )
    pointer = local.read_pointer()
    assert summary.status == "published" and pointer is not None
    assert load_bundle(local.fetch(pointer, tmp_path)).catalogue.get(52991) is not None


def test_local_store_refuses_a_bundle_whose_files_do_not_match_its_manifest(
    layer: Path, tmp_path: Path
) -> None:
    # Given a bundle whose catalogue was cut short after its manifest was written
    (layer / CATALOGUE).write_bytes((layer / CATALOGUE).read_bytes()[:100])
    store = LocalArtifactStore(tmp_path / "store")

    # When it is uploaded, the store refuses it and keeps no version of it
    with pytest.raises(ArtifactStoreError, match=CATALOGUE):
        store.upload_version(layer)
    assert not store.versions.exists() or not any(store.versions.iterdir())
