"""SnapStart's runtime hooks of the API function, run in-process in the order Lambda runs them.

A container is initialised (the real handler), its before-snapshot hooks run, a delta then moves the
published pointer, and its after-restore hooks run: the restored container must serve the new version,
with AWS clients made after the restore and no cache entry from before it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import snapshot_restore_py
from handler_support import invoke, make_event

from anime_pipeline.synthetic import write_manami
from anime_recommender.artifacts import load_bundle
from anime_recommender.catalogue import Anime, AnimeType
from anime_recommender.delta.update import run_delta_update
from anime_recommender.store import S3ArtifactStore

FRIEREN = Anime(
    id=52991,
    title="Sousou no Frieren",
    type=AnimeType.TV,
    year=2023,
    score=9.3,
    tags=("adventure", "drama", "fantasy"),
    sources=("https://myanimelist.net/anime/52991",),
)


@pytest.fixture
def hooks() -> Iterator[None]:
    """Empty runtime-hook registries (each cold start registers its own)."""
    for registry in (
        snapshot_restore_py._before_snapshot_registry,
        snapshot_restore_py._after_restore_registry,
    ):
        registry.clear()
    yield
    for registry in (
        snapshot_restore_py._before_snapshot_registry,
        snapshot_restore_py._after_restore_registry,
    ):
        registry.clear()


@pytest.fixture
def container(
    hooks: None, load_handler: Any, bundle_dir: Path, moto_endpoint: str, cache_table: str, tmp_path: Path
) -> tuple[ModuleType, S3ArtifactStore]:
    bucket = f"snapstart-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    env = {
        "ARTIFACTS_BUCKET": bucket,
        "ARTIFACTS_ENDPOINT_URL": moto_endpoint,
        "ARTIFACTS_CACHE_DIR": str(tmp_path / "api-cache"),
        "POINTER_CHECK_SECONDS": "3600",  # only the restore hook may notice the new version
        "CACHE_TABLE_NAME": cache_table,
        "CACHE_ENDPOINT_URL": moto_endpoint,
    }
    module: ModuleType = load_handler(bundle_dir, **env)
    return module, S3ArtifactStore(bucket, endpoint_url=moto_endpoint)


def _run(hooks: list[Any]) -> None:
    for func, args, kwargs in hooks:
        func(*args, **kwargs)


def _data_version(module: ModuleType, path: str, **query: str) -> tuple[int, str]:
    status, headers, _ = invoke(module, make_event("GET", path, query))
    return status, headers["x-data-version"]


def test_a_restored_container_serves_the_moved_pointer_with_fresh_clients(
    container: tuple[ModuleType, S3ArtifactStore],
    bundle_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module, store = container
    state = module.app.state.api
    before = snapshot_restore_py.get_before_snapshot()
    after = snapshot_restore_py.get_after_restore()
    assert len(before) == 1 and len(after) == 1  # registered by the handler's init

    # Before the snapshot: the first-request paths are taken, and nothing lands in the cache
    _run(before)
    assert state.cache.stats.stored == 0
    # A request before the snapshot (Lambda never sends one; this makes a client and a cache entry)
    status, old_version = _data_version(module, "/search", q="space", k="3")
    assert status == 200
    client_before = state.cache.shared._client
    store_client_before = module.serving.provider._store._client
    random_state = random.getstate()

    # Meanwhile a delta publishes a new version (the snapshot's pointer is now stale)
    catalogue = load_bundle(bundle_dir).catalogue
    week = write_manami(
        [*(replace(a, score=8.9) if a.id == 1 else a for a in catalogue), FRIEREN], tmp_path / "w.json"
    )
    published = run_delta_update(week, store, layer_dir=bundle_dir, work_dir=tmp_path / "delta")
    assert published.status == "published"

    # After the restore (hooks in order): the new version serves at once, no cache entry survives
    _run(after)
    status, new_version = _data_version(module, "/anime/52991")
    assert status == 200 and new_version != old_version
    assert _data_version(module, "/search", q="space", k="3")[1] == new_version
    # No client made before the snapshot is reused: the DynamoDB and S3 clients are new objects
    assert state.cache.shared._client is not client_before
    assert module.serving.provider._store._client is not store_client_before
    # Randomness was reseeded: the restored container does not replay the snapshot's sequence
    replay = random.Random()
    replay.setstate(random_state)
    assert [random.random() for _ in range(3)] != [replay.random() for _ in range(3)]
    # And the restore was counted
    assert "SnapStartRestore" in capsys.readouterr().out
