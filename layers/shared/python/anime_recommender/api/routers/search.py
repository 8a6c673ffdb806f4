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


@router.get("/search", response_model=SearchPublic, responses={**PROBLEMS_422, **PROBLEMS_503})
async def search(state: StateDep, service: ServiceDep, params: Annotated[SearchQuery, Query()]) -> Response:
    """Semantic search: the text is embedded with the int8 ONNX model; 503 in the V2 tier."""
    if len(params.q) > state.settings.max_text_length:
        raise InvalidParameterError(f"q is longer than {state.settings.max_text_length} characters.")
    return cached_json(
        state, service, "search", params.model_dump(mode="json"), lambda: service.search(params)
    )
