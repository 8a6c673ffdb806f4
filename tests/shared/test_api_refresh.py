"""The API's hot swap (`api/refresh.py`): a published version is swapped in after the check interval,
a broken or corrupt one never is."""

from __future__ import annotations

from pathlib import Path

from delta_support import corrupt, run, serving_provider, weekly_change, write_manami

from anime_recommender.api.refresh import RefreshingBundleProvider
from anime_recommender.artifacts import CATALOGUE, Manifest, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.similarity import backend_from_bundle
from anime_recommender.store import LocalArtifactStore, S3ArtifactStore, version_id


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hot_swap_after_check_interval(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    clock = Clock()
    provider = serving_provider(layer, store, tmp_path / "cache", check_seconds=30, clock=clock)
    before = provider()
    summary = run(
        store, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path
    )
    clock.now = 29.0
    assert provider() is before  # not checked yet
    clock.now = 31.0
    after = provider()
    assert after is not before and provider.version == summary.published_version
    assert 52991 in after.catalogue and 40000 not in after.catalogue
    assert (
        after.info.data_version
        == version_id(Manifest.read(provider_dir(tmp_path, provider.version))).split("-")[0]
    )
    assert [h.anime_id for h in after.similar(52991, 3)]
    # a new container starts on the pointer's version directly
    cold = RefreshingBundleProvider(
        layer, lambda d: backend_from_bundle(load_bundle(d)), store, cache_dir=tmp_path / "c2"
    )
    assert (
        cold.version == summary.published_version
        and cold.backend.info.data_version == after.info.data_version
    )


def provider_dir(tmp_path: Path, version: str) -> Path:
    return tmp_path / "cache" / version


def test_broken_published_version_is_not_swapped_in(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    provider = serving_provider(layer, store, tmp_path / "cache", check_seconds=0)
    before = provider()
    run(store, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    pointer = store.read_pointer()
    assert pointer is not None
    store._client.put_object(Bucket=store.bucket, Key=pointer.prefix + CATALOGUE, Body=b"corrupt")
    assert provider() is before and provider.last_error and "verification" in provider.last_error


def test_corrupt_local_version_is_not_swapped_in(
    base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    # Given a container following a local store, and a published version whose V3 index got corrupted
    local = LocalArtifactStore(tmp_path / "store")
    provider = RefreshingBundleProvider(
        layer, lambda d: backend_from_bundle(load_bundle(d, all_tiers=True)), local, check_seconds=0
    )
    before = provider()
    run(local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    pointer = local.read_pointer()
    assert pointer is not None
    corrupt(local.versions / pointer.version / "index_v3" / "index.bin")

    # Then it keeps serving the old version (the loader's checksums catch what fetch no longer re-hashes)
    assert provider() is before and provider.last_error and "verification" in provider.last_error
