"""The FastAPI app factory: routers, error mapping, middleware, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from anime_recommender.api.deps import ApiState
from anime_recommender.api.errors import register_error_handlers
from anime_recommender.api.middleware import (
    CatchAllMiddleware,
    CspPolicy,
    DataVersionHeaderMiddleware,
    ObserveMiddleware,
    RequestLimitsMiddleware,
    RequestObserver,
    SecurityHeadersMiddleware,
    default_csp,
)
from anime_recommender.api.observability import LogObserver
from anime_recommender.api.openapi import PROBLEMS_LIMITS
from anime_recommender.api.routers import anime, health, recommendations, search
from anime_recommender.api.service import ServiceProvider
from anime_recommender.api.web import mount_web
from anime_recommender.cache import ResponseCache, make_cache
from anime_recommender.settings import ApiSettings
from anime_recommender.similarity import SimilarityBackend

DESCRIPTION = """
Anime recommendations: similar anime with explanations, taste-profile recommendations,
title autocomplete and free-text semantic search.

Served from the best artifact tier that loaded: **v4** (fine-tuned int8 ONNX embeddings),
**v3** (frozen encoder) or **v2** (precomputed teacher neighbour lists; no free-text search).
Errors are `application/problem+json` (RFC 9457). Computed lists carry `X-Cache: hit|miss`.
"""


def create_app(
    settings: ApiSettings,
    bundle_provider: Callable[[], SimilarityBackend],
    *,
    cache: ResponseCache | None = None,
    init_ms: float | None = None,
    observer: RequestObserver | None = None,
    csp_policy: CspPolicy = default_csp,
) -> FastAPI:
    """Build the API.

    Args:
        settings: validated configuration.
        bundle_provider: returns the backend to serve from; called per request, so returning a new
            object (a hot-swapped artifact version) switches the app over without a restart.
        cache: response cache; default from settings (DynamoDB table, else in-process LRU).
        init_ms: cold-start time of this container, reported by /health.
        observer: per-request metrics sink; default logs at debug level.
        csp_policy: path → Content-Security-Policy (hook for a web page at `/`).
    """
    app = FastAPI(
        title="Anime Recommender API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "anime", "description": "Catalogue lookups and similar anime."},
            {"name": "recommendations", "description": "Taste-profile recommendations."},
            {"name": "search", "description": "Free-text semantic search."},
            {"name": "health", "description": "Tier, versions, init time."},
        ],
    )
    app.state.api = ApiState(
        settings=settings,
        services=ServiceProvider(bundle_provider),
        cache=cache
        if cache is not None
        else make_cache(
            settings.cache_table_name,
            ttl_seconds=settings.cache_ttl_seconds,
            local_size=settings.local_cache_size,
            timeout_seconds=settings.cache_timeout_seconds,
            max_item_bytes=settings.cache_max_item_bytes,
            endpoint_url=settings.cache_endpoint_url,
        ),
        init_ms=init_ms,
    )
    register_error_handlers(app)
    for module in (health, anime, recommendations, search):
        app.include_router(module.router, responses=PROBLEMS_LIMITS)
    mount_web(app)
    # Added innermost first: the request passes Security → Observe → CatchAll → Limits → CORS → routes.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type"],
        expose_headers=["X-Cache", "X-Data-Version"],
        max_age=600,
    )
    app.add_middleware(
        RequestLimitsMiddleware,
        max_query_bytes=settings.max_query_length,
        max_body_bytes=settings.max_body_bytes,
        body_bytes_by_path={recommendations.IMPORT_PATH: settings.max_import_bytes},
    )
    app.add_middleware(DataVersionHeaderMiddleware)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(ObserveMiddleware, observer=observer or LogObserver())
    app.add_middleware(SecurityHeadersMiddleware, csp_policy=csp_policy)
    return app
