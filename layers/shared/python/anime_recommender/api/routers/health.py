"""GET /health."""

from __future__ import annotations

from fastapi import APIRouter

from anime_recommender.api.deps import ServiceDep, StateDep
from anime_recommender.api.models import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic)
async def health(state: StateDep, service: ServiceDep) -> HealthPublic:
    """Active tier (v4/v3/v2), versions, catalogue size and this container's cold-start time."""
    info = service.backend.info
    return HealthPublic(
        status="ok" if info.tier == "v4" else "degraded",
        tier=info.tier,
        model_version=info.model_version,
        data_version=info.data_version,
        catalogue_size=len(service.catalogue),
        init_ms=None if state.init_ms is None else round(state.init_ms, 1),
        failures=list(info.failures),
        cache=state.cache.kind,
        text_search=service.search_engine.available,
    )
