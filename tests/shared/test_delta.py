"""Delta updates: plan, apply, publish through S3 (moto server over HTTP), crash safety, hot swap."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from anime_pipeline.loadgen import LOOPBACK, free_port
from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.api.backend import TieredBackend, backend_from_bundle
from anime_recommender.artifacts import CATALOGUE, Manifest, load_bundle
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.delta.apply import apply_delta, update_neighbours
from anime_recommender.delta.plan import DeltaPolicy, DeltaRefusedError, load_new_catalogue, plan_delta
from anime_recommender.delta.refresh import RefreshingBundleProvider
from anime_recommender.delta.store import (
    ArtifactStoreError,
    LocalArtifactStore,
    S3ArtifactStore,
    version_id,
)
from anime_recommender.delta.update import run_delta_update
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text

NEW_ANIME = (
    Anime(
        id=29277,
        title="Space Dandy 2",
        type=AnimeType.TV,
        year=2014,
        score=8.1,
        tags=("comedy", "sci-fi", "space"),
        sources=("https://myanimelist.net/anime/29277",),
    ),
    Anime(
        id=52991,
        title="Sousou no Frieren",
        type=AnimeType.TV,
        year=2023,
        score=9.3,
        tags=("adventure", "drama", "fantasy", "shounen"),
        sources=("https://myanimelist.net/anime/52991",),
    ),
)


def manami_record(anime: Anime) -> dict[str, Any]:
    """The anime as a manami anime-offline-database record (what the loaders read)."""
    return {
        "sources": list(anime.sources),
        "title": anime.title,
        "type": anime.type.value,
        "episodes": anime.episodes or 0,
        "status": anime.status or "UNKNOWN",
        "animeSeason": {"season": "UNDEFINED", "year": anime.year},
        "score": None if anime.score is None else {"arithmeticGeometricMean": anime.score},
        "synonyms": list(anime.synonyms),
        "tags": list(anime.tags),
        "relatedAnime": [],
    }


def write_manami(path: Path, items: list[Anime]) -> Path:
    """A manami JSONL release file."""
    lines = [json.dumps({"$schema": "x", "license": {"name": "ODbL-1.0"}, "lastUpdate": "2026-11-23"})]
    lines += [json.dumps(manami_record(a)) for a in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load(path: Path) -> Catalogue:
    return load_new_catalogue(path, enrich=None)[0]


def weekly_change(catalogue: Catalogue) -> list[Anime]:
    """Cowboy Bebop re-scored and re-tagged, 'Mystery Short' (40000) removed, two new anime."""
    items = [a for a in catalogue if a.id != 40000]
    items = [replace(a, score=8.9, tags=(*a.tags, "jazz")) if a.id == 1 else a for a in items]
    return items + list(NEW_ANIME)


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_catalogue(tiny_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    """The tiny catalogue as the loaders read it back from a manami file (members etc. normalised)."""
    return load(write_manami(tmp_path_factory.mktemp("cat") / "base.jsonl", list(tiny_catalogue)))


@pytest.fixture(scope="module")
def layer_template(
    base_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A complete bundle (real teacher lists, k=5) for the base catalogue."""
    return make_tiny_bundle(base_catalogue, tmp_path_factory.mktemp("layer"), k=5, model_dir=tiny_model_dir)


@pytest.fixture
def layer(layer_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(layer_template, tmp_path / "layer"))


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"artifacts-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(bucket: str, moto_endpoint: str) -> S3ArtifactStore:
    return S3ArtifactStore(bucket, endpoint_url=moto_endpoint)


def keys(store: S3ArtifactStore) -> list[str]:
    response = store._client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))


def serving_provider(
    layer: Path, store: S3ArtifactStore, cache_dir: Path, **options: Any
) -> RefreshingBundleProvider[TieredBackend]:
    """A container serving the layer's bundle (all tiers loaded) that follows the store's pointer."""
    return RefreshingBundleProvider(
        layer,
        lambda d: backend_from_bundle(load_bundle(d, all_tiers=True)),
        store,
        cache_dir=cache_dir,
        **options,
    )


def run(store: Any, layer: Path, catalogue: Path, tmp_path: Path, **kwargs: Any) -> Any:
    return run_delta_update(catalogue, store, layer_dir=layer, work_dir=tmp_path / "work", **kwargs)


# ---------------------------------------------------------------------------------------------
# plan and apply
# ---------------------------------------------------------------------------------------------


def test_plan_classifies_added_changed_removed(base_catalogue: Catalogue) -> None:
    # Given a weekly change; When planned; Then each kind is found by content hash
    plan = plan_delta(base_catalogue, Catalogue(weekly_change(base_catalogue)))
    assert plan.added == (29277, 52991)
    assert plan.changed == (1,)
    assert plan.removed == (40000,)
    assert plan.unchanged == len(base_catalogue) - 2
    assert plan.base_version != plan.new_version
    assert plan_delta(base_catalogue, base_catalogue).is_empty


def test_suspicious_shrink_is_refused(base_catalogue: Catalogue) -> None:
    smaller = Catalogue(list(base_catalogue)[:-4])  # 4 of 30 removed: 13 % > 10 %
    with pytest.raises(DeltaRefusedError) as info:
        plan_delta(base_catalogue, smaller)
    assert info.value.code == "shrink" and "4 of 30" in info.value.reason
    assert plan_delta(base_catalogue, smaller, DeltaPolicy(max_removed_share=0.2)).removed


def test_apply_delta_embeds_only_changes_and_updates_indexes(
    base_catalogue: Catalogue, layer: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    new = Catalogue(weekly_change(base_catalogue))
    plan = plan_delta(base_catalogue, new)
    encoder = OnnxEncoder.load(tiny_model_dir, threads=1)
    embedded: list[str] = []
    original = encoder.encode

    def counting(texts: Any, batch_size: int = 32) -> dict[str, np.ndarray]:
        embedded.extend(texts)
        return original(texts, batch_size=batch_size)

    encoder.encode = counting  # type: ignore[method-assign]
    before = Manifest.read(layer)
    result = apply_delta(layer, plan, encoder, tmp_path / "new")

    # only added + changed were embedded
    assert sorted(embedded) == sorted(anime_text(new.by_id(i)) for i in (1, 29277, 52991))
    bundle = load_bundle(result.out_dir, all_tiers=True)
    assert bundle.tier == "v4" and not bundle.failures
    assert bundle.data_version == plan.new_version != before.data_version
    assert Manifest.read(layer).data_version == before.data_version  # base untouched
    fresh = original([anime_text(new.by_id(1))])
    for space, index in bundle.indexes.items():
        assert set(index.ids.tolist()) == set(new.ids)
        assert 40000 not in index
        np.testing.assert_allclose(index.vector(1), fresh[space][0], atol=1e-5)  # replaced in place
        assert index.search(index.vector(52991), 1)[0][0] == 52991
    assert bundle.manifest.indexes["v4"].count == len(new)
    assert bundle.manifest.extra["delta"]["added"] == 2


def test_neighbour_lists_match_full_recompute_where_it_matters(
    base_catalogue: Catalogue, layer: Path
) -> None:
    new = Catalogue(weekly_change(base_catalogue))
    plan = plan_delta(base_catalogue, new)
    old = load_bundle(layer).neighbours
    lists, recomputed = update_neighbours(old, new, plan)
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)
    assert lists.ids.tolist() == new.ids
    assert not np.isin(lists.neighbour_ids, [40000]).any()  # removed anime appear nowhere
    for anime_id in plan.to_embed:  # new and changed lists are exact
        assert lists.for_id(anime_id) == full.for_id(anime_id)
    assert recomputed < len(new)  # only part of the catalogue
    same = sum(
        set(lists.neighbour_ids[r].tolist()) == set(full.neighbour_ids[r].tolist()) for r in range(len(new))
    )
    assert same / len(new) >= 0.9


# ---------------------------------------------------------------------------------------------
# publish through S3 (moto server over HTTP)
# ---------------------------------------------------------------------------------------------


def test_delta_publishes_then_rerun_is_idempotent(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    catalogue = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))
    summary = run(store, layer, catalogue, tmp_path)
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    pointer = store.read_pointer()
    assert pointer is not None and pointer.version == summary.published_version
    assert pointer.prefix == f"versions/{pointer.version}/"
    objects = keys(store)
    assert f"versions/{pointer.version}/manifest.json" in objects

    again = run(store, layer, catalogue, tmp_path)
    assert again.status == "unchanged" and again.published_version is None
    assert keys(store) == objects
    assert store.read_pointer() == pointer  # no flip: same version, same timestamp


def test_unchanged_catalogue_publishes_nothing(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    summary = run(store, layer, write_manami(tmp_path / "same.jsonl", list(base_catalogue)), tmp_path)
    assert summary.status == "unchanged"
    assert keys(store) == [] and store.read_pointer() is None


@pytest.mark.parametrize("content", [b'{"data": [', b"not a catalogue at all\n", b""])
def test_malformed_catalogue_is_refused_and_nothing_changes(
    content: bytes, base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    first = run(store, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    objects, pointer = keys(store), store.read_pointer()
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    summary = run(store, layer, bad, tmp_path)
    assert summary.status == "refused" and summary.refusal_code in ("invalid", "empty")
    assert summary.refusal_reason
    assert keys(store) == objects and store.read_pointer() == pointer
    assert first.status == "published"


def test_shrinking_catalogue_is_refused_end_to_end(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    summary = run(store, layer, write_manami(tmp_path / "half.jsonl", list(base_catalogue)[:15]), tmp_path)
    assert summary.status == "refused" and summary.refusal_code == "shrink"
    assert keys(store) == []


def test_crash_between_upload_and_flip_keeps_old_version_serving(
    base_catalogue: Catalogue,
    layer: Path,
    store: S3ArtifactStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a container serving the layer's bundle through the store's pointer (none yet)
    provider = serving_provider(layer, store, tmp_path / "cache", check_seconds=0)
    old_version = provider.backend.info.data_version
    catalogue = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))

    # When the delta crashes after uploading, before the pointer flip
    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("injected crash before the pointer flip")

    monkeypatch.setattr(store, "write_pointer", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        run(store, layer, catalogue, tmp_path)

    # Then the old version still serves and the bucket is consistent: no pointer, one complete orphan
    assert store.read_pointer() is None
    assert provider().info.data_version == old_version
    versions = {k.split("/")[1] for k in keys(store)}
    assert len(versions) == 1 and store.find_version(versions.pop()) is not None

    # And a re-run adopts the uploaded version (no re-upload) and flips
    monkeypatch.undo()
    objects = keys(store)
    summary = run(store, layer, catalogue, tmp_path)
    assert summary.status == "adopted" and keys(store) == sorted([*objects, "current.json"])
    assert provider().info.data_version != old_version
    assert 52991 in provider().catalogue


def test_s3_failing_during_upload_publishes_no_version(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def unavailable(**kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    store._client.meta.events.register("before-send.s3.PutObject", unavailable)
    with pytest.raises(ArtifactStoreError):
        run(store, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    assert store.read_pointer() is None
    assert not [k for k in keys(store) if k.endswith("manifest.json")]  # nothing complete, nothing served


def test_s3_unreachable_fails_fast_without_changes(
    base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    down = S3ArtifactStore("artifacts-down", endpoint_url=f"http://{LOOPBACK}:{free_port()}")
    with pytest.raises(ArtifactStoreError):
        run(down, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    assert not (tmp_path / "work" / "new").exists()


# ---------------------------------------------------------------------------------------------
# hot swap
# ---------------------------------------------------------------------------------------------


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


def test_local_store_round_trip(base_catalogue: Catalogue, layer: Path, tmp_path: Path) -> None:
    local = LocalArtifactStore(tmp_path / "store")
    summary = run(
        local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path
    )
    pointer = local.read_pointer()
    assert summary.status == "published" and pointer is not None
    assert load_bundle(local.fetch(pointer, tmp_path)).catalogue.get(52991) is not None
