"""Per-app state and the dependencies routes inject (`Annotated[..., Depends(...)]` aliases)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from anime_recommender.api.middleware import DATA_VERSION_STATE
from anime_recommender.api.service import RecommenderService, ServiceProvider
from anime_recommender.cache import ResponseCache, cache_key
from anime_recommender.settings import ApiSettings


@dataclass
class ApiState:
    """What the app holds for its lifetime (one per container)."""

    settings: ApiSettings
    services: ServiceProvider
    cache: ResponseCache
    init_ms: float | None = None


def get_state(request: Request) -> ApiState:
    """The app's state."""
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def get_service(state: StateDep, request: Request) -> RecommenderService:
    """The service for the currently loaded artifacts; its data version goes into the response's
    `X-Data-Version` (`middleware.DataVersionHeaderMiddleware`)."""
    service = state.services()
    setattr(request.state, DATA_VERSION_STATE, service.backend.info.data_version)
    return service


ServiceDep = Annotated[RecommenderService, Depends(get_service)]

JSON_MEDIA_TYPE = "application/json"


# Routes whose answer goes through the shared (DynamoDB) cache tier. Decided by measurement
# (`python -m anime_pipeline.bench.api`, 17.5k-anime bundle, moto over HTTP, 2 shared cores):
# a GetItem round trip costs ~5-7 ms p50 on its own (`dynamodb_getitem_floor`), while computing
# /similar costs ~1.5-2 ms since the vectorised re-ranking, so even a DynamoDB *hit* (~8-10 ms
# through the handler) was slower than not caching at all. /similar therefore uses only the
# container-local LRU tier (hits ~2 ms; X-Cache: hit only when the body came from it) and never
# touches the table. /search (ONNX encoding, ~15-20 ms) is where a shared hit pays off;
# /recommendations (~5 ms, about one round trip) stays shared so a profile computed by one
# container is reused by the others and a table outage reads as plain misses there. Overlapping
# the GetItem with the computation was the alternative: it still costs max(round trip, compute)
# on every miss, i.e. the full round trip for /similar.
SHARED_CACHE_ROUTES: frozenset[str] = frozenset({"search", "recommendations"})


def cached_json(
    state: ApiState,
    service: RecommenderService,
    route: str,
    params: dict[str, Any],
    compute: Callable[[], BaseModel],
) -> Response:
    """Serve a JSON body from the cache (X-Cache: hit) or compute, store and serve it (miss).

    The key includes the tier next to the model version: a container that fell back to V3
    must not read or write V4 answers. Cache failures are absorbed by the cache itself; the
    DynamoDB write happens behind the response (`cache.TieredCache`). Only `SHARED_CACHE_ROUTES`
    use the DynamoDB tier; the others use the container's own LRU tier only.
    """
    info = service.backend.info
    shared = route in SHARED_CACHE_ROUTES
    key = cache_key(route, params, f"{info.model_version}/{info.tier}", info.data_version)
    lookup = state.cache.get(key, shared=shared)
    if lookup.status == "hit" and lookup.payload is not None:
        return Response(lookup.payload, media_type=JSON_MEDIA_TYPE, headers={"X-Cache": "hit"})
    body = compute().model_dump_json().encode("utf-8")
    # Write only after a clean miss: after an error/bypass the table is unhealthy (don't pile on).
    if lookup.status == "miss":
        state.cache.put(key, body, shared=shared)
    return Response(body, media_type=JSON_MEDIA_TYPE, headers={"X-Cache": "miss"})
