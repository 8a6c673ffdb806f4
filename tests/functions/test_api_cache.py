"""The DynamoDB response cache through the real handler, against moto in server mode over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np

from anime_recommender.cache import CircuitBreaker, DynamoDBCache, LocalLRUCache, TieredCache, cache_key


def test_miss_then_hit_with_the_same_body(
    load_handler: Any, bundle_dir: Path, call: Any, moto_endpoint: str, cache_table: str
) -> None:
    api = load_handler(bundle_dir, CACHE_TABLE_NAME=cache_table, CACHE_ENDPOINT_URL=moto_endpoint)
    for name in ("similar", "search", "recommendations"):
        status1, headers1, body1 = call(api, name)
        status2, headers2, body2 = call(api, name)
        assert (status1, status2) == (200, 200)
        assert (headers1["x-cache"], headers2["x-cache"]) == ("miss", "hit"), name
        assert body1 == body2
    # The DynamoDB writes happen behind the responses; wait for them before reading the table.
    assert api.app.state.api.cache.flush(10.0)
    item = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1").scan(
        TableName=cache_table
    )["Items"][0]
    assert set(item) == {"pk", "v", "expires_at"} and int(item["expires_at"]["N"]) > time.time()
    assert call(api, "health")[2]["cache"] == "dynamodb"


def test_outage_serves_uncached_and_fast(load_handler: Any, bundle_dir: Path, call: Any) -> None:
    # Given a table name pointing at a port nobody listens on
    api = load_handler(bundle_dir, CACHE_TABLE_NAME="cache", CACHE_ENDPOINT_URL="http://127.0.0.1:9")
    started = time.perf_counter()
    for _ in range(5):
        # /search: the route that goes through the DynamoDB tier (see api.deps.SHARED_CACHE_ROUTES)
        status, headers, body = call(api, "search")
        assert status == 200 and len(body["items"]) == 5 and headers["x-cache"] == "miss"
    # Then all requests are served, and the breaker keeps the total well under a second
    assert time.perf_counter() - started < 1.0


def test_key_normalises_and_versions() -> None:
    base = cache_key("similar", {"k": 5, "type": ["TV"]}, "m1", "d1")
    assert base == cache_key("similar", {"type": ["TV"], "k": 5}, "m1", "d1")
    assert base != cache_key("similar", {"k": 5, "type": ["TV"]}, "m2", "d1")
    assert base != cache_key("similar", {"k": 5, "type": ["TV"]}, "m1", "d2")
    assert base != cache_key("search", {"k": 5, "type": ["TV"]}, "m1", "d1")
    assert len(base) == 32


def test_large_items_are_refused_and_expired_items_miss(moto_endpoint: str, cache_table: str) -> None:
    clock = [1_000_000.0]
    cache = DynamoDBCache(
        cache_table,
        ttl_seconds=60,
        max_item_bytes=2_000,
        endpoint_url=moto_endpoint,
        wall_clock=lambda: clock[0],
    )
    incompressible = np.random.default_rng(0).bytes(5_000)
    assert cache.put("big", incompressible) == "miss" and cache.stats.too_large == 1
    assert cache.get("big").status == "miss"
    cache.put("small", b'{"a":1}')
    assert cache.get("small").payload == b'{"a":1}'
    clock[0] += 61
    assert cache.get("small").status == "miss"


def test_breaker_opens_after_repeated_failures() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    cache = DynamoDBCache(
        "t", ttl_seconds=60, timeout_seconds=0.2, endpoint_url="http://127.0.0.1:9", breaker=breaker
    )
    assert [cache.get("k").status for _ in range(3)] == ["error", "error", "bypass"]
    now[0] = 11.0
    assert cache.get("k").status == "error"  # half-open probe


def test_another_container_hits_dynamodb_and_failed_writes_leave_nothing(
    load_handler: Any, bundle_dir: Path, call: Any, moto_endpoint: str, cache_table: str
) -> None:
    # Given one container that answered (and wrote behind its response)
    first = load_handler(bundle_dir, CACHE_TABLE_NAME=cache_table, CACHE_ENDPOINT_URL=moto_endpoint)
    _, headers, body = call(first, "search")  # a SHARED_CACHE_ROUTES route
    assert headers["x-cache"] == "miss" and first.app.state.api.cache.flush(10.0)
    # Then a fresh container (empty memory tier) is served from the table
    second = load_handler(bundle_dir, CACHE_TABLE_NAME=cache_table, CACHE_ENDPOINT_URL=moto_endpoint)
    _, headers2, body2 = call(second, "search")
    assert headers2["x-cache"] == "hit" and body2 == body
    assert second.app.state.api.cache.shared.stats.hits == 1


def test_tiered_cache_mirrors_only_successful_writes(moto_endpoint: str, cache_table: str) -> None:
    good = TieredCache(
        DynamoDBCache(cache_table, ttl_seconds=60, endpoint_url=moto_endpoint), LocalLRUCache(8, 60)
    )
    assert good.get("k").status == "miss"
    good.put("k", b'{"a":1}')
    assert good.get("k").payload == b'{"a":1}'  # in flight or mirrored: never a gap
    assert good.flush(10.0) and good.local.get("k").payload == b'{"a":1}'
    down = TieredCache(
        DynamoDBCache("t", ttl_seconds=60, timeout_seconds=0.2, endpoint_url="http://127.0.0.1:9"),
        LocalLRUCache(8, 60),
    )
    down.put("k", b'{"a":1}')
    assert down.flush(10.0)
    assert down.local.get("k").status == "miss" and down.get("k").status == "error"


def test_l1_never_serves_an_entry_across_a_hot_swap(moto_endpoint: str, cache_table: str) -> None:
    from types import SimpleNamespace

    from pydantic import BaseModel

    from anime_recommender.api.deps import ApiState, cached_json
    from anime_recommender.similarity import BackendInfo

    class Body(BaseModel):
        version: str

    shared = DynamoDBCache(cache_table, ttl_seconds=60, endpoint_url=moto_endpoint, region_name="us-east-1")
    state = ApiState(settings=None, services=None, cache=TieredCache(shared, LocalLRUCache(16, 60)))  # type: ignore[arg-type]

    def serve(data_version: str) -> tuple[str, bytes]:
        info = BackendInfo(tier="v4", model_version="m1", data_version=data_version)
        service = SimpleNamespace(backend=SimpleNamespace(info=info))
        response = cached_json(state, service, "search", {"q": "mecha"}, lambda: Body(version=data_version))  # type: ignore[arg-type]
        state.cache.flush()  # type: ignore[attr-defined]
        return response.headers["X-Cache"], bytes(response.body)

    # Given an answer cached in L1 (and DynamoDB) for data version d1
    assert serve("d1")[0] == "miss" and serve("d1")[0] == "hit"
    # When the container swaps to d2 (the service's backend reports the new version)
    status, body = serve("d2")
    # Then the same request is computed again on d2, never read from d1's entry
    assert status == "miss" and b'"d2"' in body
    assert serve("d2") == ("hit", body) and b'"d1"' in serve("d1")[1]


def test_client_is_built_by_the_first_shared_lookup_and_a_failed_build_serves_uncached() -> None:
    # Given a cache whose client cannot be built (botocore refuses the endpoint)
    cache = DynamoDBCache("cache", ttl_seconds=60, endpoint_url="not a url", region_name="us-east-1")
    # Nothing is built at construction (the cold start), and a local-only lookup never builds it
    assert cache._client_built is None
    assert cache.get("k", shared=False).status == "bypass"
    assert cache._client_built is None
    # Then a shared lookup and a write report an error instead of raising
    assert cache.get("k").status == "error"
    assert cache.put("k", b"{}") == "error"
    assert cache.stats.errors == 2


def test_first_similar_after_init_does_not_build_the_dynamodb_client(
    load_handler: Any, bundle_dir: Path, call: Any, moto_endpoint: str, cache_table: str
) -> None:
    api = load_handler(bundle_dir, CACHE_TABLE_NAME=cache_table, CACHE_ENDPOINT_URL=moto_endpoint)
    dynamodb = api.app.state.api.cache.shared
    assert call(api, "similar")[0] == 200 and dynamodb._client_built is None
    # The first /search reaches the table, which builds the client
    assert call(api, "search")[1]["x-cache"] == "miss"
    assert dynamodb._client_built is not None
