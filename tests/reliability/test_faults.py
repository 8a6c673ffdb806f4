"""Fault injection through the real handler: a slow or broken DynamoDB, truncated artifacts, a hostile
catalogue end to end.

Already covered elsewhere (not repeated here): DynamoDB refusing connections
(tests/functions/test_api_cache.py), one flipped byte in the V4 index or the model
(tests/functions/test_api_tiers.py), S3 failing or unreachable during a delta update
(tests/shared/test_delta_run.py), malformed/hostile catalogue files and 100k duplicate ids in the loaders
(tests/shared/test_loaders.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from handler_support import invoke, make_event
from reliability_support import assert_safe_response

from anime_pipeline.tiny_model import corrupt_file, make_tiny_bundle
from anime_recommender.artifacts import ArtifactIntegrityError
from anime_recommender.loaders import load_catalogue

Loader = Callable[..., ModuleType]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never answers (a hung DynamoDB)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)  # keep it open, say nothing
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


ROUTES = [
    ("GET", "/anime/1/similar", {"k": "5"}, None),
    ("GET", "/search", {"q": "space bounty hunters", "k": "5"}, None),
    ("POST", "/recommendations", None, json.dumps({"liked": [1, 5114], "k": 5})),
]


def test_hung_dynamodb_is_bypassed_within_budget(
    load_handler: Loader, bundle_dir: Path, black_hole: str
) -> None:
    # Given a cache table behind an endpoint that never answers (cache timeout 0.25 s per call)
    api = load_handler(bundle_dir, CACHE_TABLE_NAME="cache", CACHE_ENDPOINT_URL=black_hole)
    durations = []
    for i in range(12):
        method, path, query, body = ROUTES[i % len(ROUTES)]
        query = None if query is None else {**query, "k": str(5 + i)}
        started = time.perf_counter()
        status, headers, raw = invoke(api, make_event(method, path, query, body))
        durations.append(time.perf_counter() - started)
        # Then every request is still answered, uncached
        assert status == 200, raw[:300]
        assert headers["x-cache"] == "miss"
        assert len(json.loads(raw)["items"]) == (5 if query is None else 5 + i)
    # Within budget: no request waits longer than a few cache timeouts, and once the breaker has
    # seen the failures the rest skip the cache entirely.
    assert max(durations) < 2.0, durations
    assert sorted(durations)[len(durations) // 2] < 0.3, durations
    assert json.loads(invoke(api, make_event("GET", "/health"))[2])["cache"] == "dynamodb"


def test_dynamodb_errors_bypass_the_cache(load_handler: Loader, bundle_dir: Path, moto_endpoint: str) -> None:
    # Given a reachable DynamoDB whose table does not exist (ResourceNotFoundException on every call)
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert "missing-table" not in client.list_tables()["TableNames"]
    api = load_handler(bundle_dir, CACHE_TABLE_NAME="missing-table", CACHE_ENDPOINT_URL=moto_endpoint)
    started = time.perf_counter()
    for i, (method, path, query, body) in enumerate(ROUTES * 2):
        status, headers, raw = invoke(api, make_event(method, path, query, body))
        # /similar never uses the table (api.deps.SHARED_CACHE_ROUTES): its repeat may come from
        # the container's own LRU tier; every other answer is computed.
        local_repeat = i >= len(ROUTES) and path.endswith("/similar")
        assert status == 200 and headers["x-cache"] == ("hit" if local_repeat else "miss"), raw[:300]
    assert time.perf_counter() - started < 5.0


def _tier(api: ModuleType) -> dict[str, Any]:
    status, _, raw = invoke(api, make_event("GET", "/health"))
    assert status == 200
    health: dict[str, Any] = json.loads(raw)
    return health


def test_truncated_model_serves_v2(load_handler: Loader, bundle_dir: Path) -> None:
    corrupt_file(bundle_dir / "model" / "model.onnx", "truncate")
    api = load_handler(bundle_dir)
    health = _tier(api)
    # No encoder, but the lexical index still answers /search
    assert health["tier"] == "v2" and health["failures"] and health["text_search"] is True
    assert all(str(bundle_dir) not in f for f in health["failures"])
    status, headers, raw = invoke(api, make_event("GET", "/anime/1/similar", {"k": "5"}))
    assert status == 200 and json.loads(raw)["tier"] == "v2"
    status, headers, raw = invoke(api, make_event("GET", "/search", {"q": "space"}))
    assert status == 200 and json.loads(raw)["mode"] == "lexical"
    assert_safe_response(status, headers, raw)


def test_both_indexes_truncated_serve_v2(load_handler: Loader, bundle_dir: Path) -> None:
    for space in ("index_v4", "index_v3"):
        corrupt_file(next((bundle_dir / space).glob("*.bin")), "truncate")
    health = _tier(api := load_handler(bundle_dir))
    assert health["tier"] == "v2" and len(health["failures"]) >= 2
    status, _, raw = invoke(
        api, make_event("POST", "/recommendations", body=json.dumps({"liked": [1], "k": 5}))
    )
    assert status == 200 and len(json.loads(raw)["items"]) == 5


def test_truncated_v4_index_ids_serve_v3(load_handler: Loader, bundle_dir: Path) -> None:
    # The label → anime-id map, not the graph: a wrong map would silently return wrong anime.
    corrupt_file(next(p for p in (bundle_dir / "index_v4").iterdir() if p.suffix == ".npy"), "truncate")
    health = _tier(api := load_handler(bundle_dir))
    assert health["tier"] == "v3"
    status, _, raw = invoke(api, make_event("GET", "/anime/1/similar", {"k": "5"}))
    assert status == 200 and json.loads(raw)["tier"] == "v3"


@pytest.mark.parametrize("victim", ["catalogue.jsonl.gz", "neighbours_v2.npz", "manifest.json"])
def test_unservable_bundle_fails_the_cold_start_loudly(
    load_handler: Loader, bundle_dir: Path, victim: str
) -> None:
    # Without the catalogue, the V2 lists or the manifest nothing can be served correctly: the
    # container must refuse to start (Lambda retries on a fresh one) instead of answering garbage.
    corrupt_file(bundle_dir / victim, "truncate")
    with pytest.raises((ArtifactIntegrityError, ValueError)):
        load_handler(bundle_dir)


def _manami(records: list[dict[str, Any]]) -> str:
    return json.dumps({"data": records}, ensure_ascii=False)


def test_hostile_catalogue_is_sanitised_and_served_safely(
    load_handler: Loader, tmp_path: Path, tiny_catalogue: Any
) -> None:
    # Given a catalogue release with hostile text, wrong types and a mass of duplicate ids
    base = {
        "type": "TV",
        "episodes": 12,
        "status": "FINISHED",
        "animeSeason": {"season": "SPRING", "year": 2001},
    }
    records: list[Any] = [
        {
            **base,
            "sources": [f"https://myanimelist.net/anime/{i}"],
            "title": f"Show {i} space",
            "tags": ["action", "space"],
        }
        for i in range(1, 40)
    ]
    records[0]["title"] = "  Evil\x00 \u202eTitle\u200b <script>alert(1)</script> " + "x" * 5000
    records[1]["tags"] = ["ACTION", "\x07bell", "sci\u00adfi"] * 3
    records.append({**base, "sources": ["https://myanimelist.net/anime/99"], "title": 12345})  # wrong type
    records.append(
        {**base, "sources": ["https://myanimelist.net/anime/98"], "title": "ok", "episodes": "many"}
    )
    records.append(["not", "an", "object"])
    records += [
        {**base, "sources": ["https://myanimelist.net/anime/7"], "title": f"Dup {i}"} for i in range(20_000)
    ]
    path = tmp_path / "hostile.json"
    path.write_text(_manami(records), encoding="utf-8")

    # When it is loaded, a bundle built from it and the API started on that bundle
    result = load_catalogue(path)
    report = result.report.to_dict()
    # Then bad records are skipped with reasons, duplicates resolved and text sanitised, all reported
    assert report["skipped_count"] == 3
    assert len(result.report.duplicates) == 20_000
    assert result.report.sanitised_records >= 2
    evil = result.catalogue.by_id(1)
    assert "\x00" not in evil.title and "\u202e" not in evil.title and len(evil.title) <= 1000
    bundle = make_tiny_bundle(result.catalogue, tmp_path / "layer", k=10)
    api = load_handler(bundle)
    for event in (
        make_event("GET", "/anime/1"),
        make_event("GET", "/anime", {"q": "evil"}),
        make_event("GET", "/anime/2/similar", {"k": "5"}),
        make_event("GET", "/search", {"q": "script alert"}),
    ):
        status, headers, raw = invoke(api, event)
        assert status == 200, raw[:300]
        assert_safe_response(status, headers, raw)
        assert headers["content-type"].startswith("application/json")
        json.loads(raw)  # well-formed JSON, whatever the titles contained
        assert b"\\u0000" not in raw and "\u202e".encode() not in raw
