"""GET /search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from anime_recommender.api.deps import ServiceDep, StateDep, cached_json
from anime_recommender.api.errors import InvalidParameterError
from anime_recommender.api.models import SearchPublic, SearchQuery
from anime_recommender.api.openapi import PROBLEMS_422, PROBLEMS_503

router = APIRouter(tags=["search"])

# Part of the cache key: entries cached before the hybrid ranking (another body for the same model
# and data versions) are never read again.
SEARCH_RANKING_VERSION = 2


@router.get("/search", response_model=SearchPublic, responses={**PROBLEMS_422, **PROBLEMS_503})
async def search(state: StateDep, service: ServiceDep, params: Annotated[SearchQuery, Query()]) -> Response:
    """Hybrid search: query understanding + BM25 + int8 ONNX dense + priors; lexical-only in tier V2."""
    if len(params.q) > state.settings.max_text_length:
        raise InvalidParameterError(f"q is longer than {state.settings.max_text_length} characters.")
    key = {**params.model_dump(mode="json"), "ranking": SEARCH_RANKING_VERSION}
    return cached_json(state, service, "search", key, lambda: service.search(params))
