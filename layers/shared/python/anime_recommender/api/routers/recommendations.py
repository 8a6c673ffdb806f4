"""POST /recommendations (a taste profile) and POST /recommendations/import (a viewer's list file)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from anime_recommender.api.deps import JSON_MEDIA_TYPE, ServiceDep, StateDep, cached_json
from anime_recommender.api.errors import PayloadTooLargeError, UnreadableListError, UnsupportedMediaTypeError
from anime_recommender.api.models import (
    ImportPublic,
    ImportQuery,
    RecommendationRequest,
    RecommendationsPublic,
)
from anime_recommender.api.openapi import (
    PROBLEMS_400,
    PROBLEMS_404,
    PROBLEMS_415,
    PROBLEMS_422,
    problems,
)
from anime_recommender.api.service import IMPORT_STRATEGY, STRATEGY
from anime_recommender.viewer_list import ViewerListError, is_gzip, read_mal_export

router = APIRouter(tags=["recommendations"])

IMPORT_PATH = "/recommendations/import"
XML_MEDIA_TYPES = frozenset({"application/xml", "text/xml"})
GZIP_MEDIA_TYPES = frozenset({"application/gzip", "application/x-gzip"})
_IMPORT_BODY = {
    "required": True,
    "description": "The MyAnimeList XML list export itself (MyAnimeList, AniList, Kitsu and Anime-Planet "
    "write it), plain or gzip-compressed: the file's bytes, not a multipart form.",
    "content": {
        "application/xml": {"schema": {"type": "string"}},
        "text/xml": {"schema": {"type": "string"}},
        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
    },
}


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


@router.post(
    IMPORT_PATH,
    response_model=ImportPublic,
    responses={
        **PROBLEMS_415,
        **PROBLEMS_422,
        **problems(413, "The file, or the list once decompressed, is too large, or has too many entries."),
    },
    openapi_extra={"requestBody": _IMPORT_BODY},
    description="Recommendations for a viewer's whole list, and what to continue watching. "
    + IMPORT_STRATEGY,
)
async def import_list(
    state: StateDep, service: ServiceDep, request: Request, params: Annotated[ImportQuery, Query()]
) -> Response:
    """Read an uploaded MyAnimeList export and answer for it. Neither logged nor cached: the list is
    the viewer's own, and a cache keyed by a whole list would hardly ever hit."""
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        raise UnreadableListError("The request body is empty: post the list file's bytes.")
    if media_type in GZIP_MEDIA_TYPES and not is_gzip(body):
        raise UnreadableListError("The body is declared gzip-compressed but is not a gzip file.")
    if media_type not in XML_MEDIA_TYPES | GZIP_MEDIA_TYPES and not is_gzip(body):
        given = media_type[:60] or "no content type"
        raise UnsupportedMediaTypeError(
            f"Post the list file as application/xml, text/xml or application/gzip, not {given}."
        )
    settings = state.settings
    try:
        viewer = read_mal_export(
            body,
            max_expanded_bytes=settings.max_import_expanded_bytes,
            max_entries=settings.max_import_entries,
        )
    except ViewerListError as exc:
        if exc.reason in ("too_large", "too_many_entries"):
            raise PayloadTooLargeError(str(exc)) from exc
        raise UnreadableListError(str(exc)) from exc
    answer = service.recommend_for_list(viewer, params)
    return Response(answer.model_dump_json().encode("utf-8"), media_type=JSON_MEDIA_TYPE)
