"""POST /recommendations."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from anime_recommender.api.deps import ServiceDep, StateDep, cached_json
from anime_recommender.api.models import RecommendationRequest, RecommendationsPublic
from anime_recommender.api.openapi import PROBLEMS_400, PROBLEMS_404, PROBLEMS_422
from anime_recommender.api.service import STRATEGY

router = APIRouter(tags=["recommendations"])


@router.post(
    "/recommendations",
    response_model=RecommendationsPublic,
    responses={**PROBLEMS_400, **PROBLEMS_404, **PROBLEMS_422},
    description=f"Recommendations for a taste profile. Strategy: {STRATEGY}",
)
async def recommendations(state: StateDep, service: ServiceDep, request: RecommendationRequest) -> Response:
    """Recommendations for liked/disliked anime, excluding what was seen."""
    return cached_json(
        state, service, "recommendations", request.model_dump(mode="json"), lambda: service.recommend(request)
    )
