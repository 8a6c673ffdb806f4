"""GET /anime (autocomplete), GET /anime/{id}, GET /anime/{id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from anime_recommender.api.deps import ServiceDep, StateDep, cached_json
from anime_recommender.api.models import (
    AnimeId,
    AnimePublic,
    AutocompletePublic,
    AutocompleteQuery,
    SimilarPublic,
    SimilarQuery,
)
from anime_recommender.api.openapi import PROBLEMS_404, PROBLEMS_422

router = APIRouter(prefix="/anime", tags=["anime"])

PathId = Annotated[AnimeId, Path(description="Anime id.")]


@router.get("", response_model=AutocompletePublic, responses=PROBLEMS_422)
async def autocomplete(
    service: ServiceDep, params: Annotated[AutocompleteQuery, Query()]
) -> AutocompletePublic:
    """Title autocomplete over titles and synonyms: exact, prefix, word-prefix, then fuzzy matches."""
    return service.autocomplete(params.q, params.limit, params.sfw)


@router.get("/{anime_id}", response_model=AnimePublic, responses={**PROBLEMS_404, **PROBLEMS_422})
async def get_anime(service: ServiceDep, anime_id: PathId) -> AnimePublic:
    """One anime's details."""
    return AnimePublic.of(service.anime(anime_id))


@router.get(
    "/{anime_id}/similar",
    response_model=SimilarPublic,
    responses={**PROBLEMS_404, **PROBLEMS_422, 200: {"headers": {"X-Cache": {"description": "hit or miss"}}}},
)
async def similar(
    state: StateDep, service: ServiceDep, anime_id: PathId, params: Annotated[SimilarQuery, Query()]
) -> Response:
    """Recommendations for fans of this anime and, apart, its franchise.

    `items`: anime from other franchises, each with an explanation; filters keep k of them when
    enough exist. `franchise`: its sequels, prequels, movies and side stories, ordered by release.
    """
    return cached_json(
        state,
        service,
        "similar",
        {"id": anime_id, **params.model_dump(mode="json")},
        lambda: service.similar(anime_id, params),
    )
