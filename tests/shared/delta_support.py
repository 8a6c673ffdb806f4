"""Helpers of the delta tests: manami records of `Anime`, the weekly change, one delta run, damaged bundles.

Their fixtures (the base catalogue, its bundle `layer`, an S3 `store` on the moto server) are in
tests/shared/conftest.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from anime_recommender.api.refresh import RefreshingBundleProvider
from anime_recommender.artifacts import Manifest, load_bundle, write_manifest
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.delta.update import run_delta_update
from anime_recommender.similarity import TieredBackend, backend_from_bundle
from anime_recommender.store import S3ArtifactStore

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


def weekly_change(catalogue: Catalogue) -> list[Anime]:
    """Cowboy Bebop re-scored and re-tagged, 'Mystery Short' (40000) removed, two new anime."""
    items = [a for a in catalogue if a.id != 40000]
    items = [replace(a, score=8.9, tags=(*a.tags, "jazz")) if a.id == 1 else a for a in items]
    return items + list(NEW_ANIME)


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


def corrupt(path: Path) -> None:
    """Flip one byte in the middle, keeping the size (only the sha256 can tell)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


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
