"""Typed API errors and the ONE place that maps every error to `application/problem+json`.

Bodies follow RFC 9457 (type, title, status, detail, instance). Nothing from an exception's
traceback, module path or input echo ever reaches a body: validation errors keep only the
location, a message and a type code.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from anime_recommender.api.models import Problem

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"


class ApiError(Exception):
    """Base of every error the API raises on purpose; subclasses set status/title/slug."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AnimeNotFoundError(ApiError):
    """An id is not in the catalogue."""

    status, title, slug = 404, "Anime not found", "anime-not-found"

    def __init__(self, anime_id: int) -> None:
        super().__init__(f"No anime with id {anime_id} in the catalogue.")
        self.anime_id = anime_id


class InvalidParameterError(ApiError):
    """A parameter passed type validation but makes no sense (e.g. a query too long for the encoder)."""

    status, title, slug = 422, "Invalid parameter", "invalid-parameter"


class PayloadTooLargeError(ApiError):
    """The request body is over MAX_BODY_BYTES."""

    status, title, slug = 413, "Request body too large", "payload-too-large"


class UnsupportedMediaTypeError(ApiError):
    """The body is not in a format the route reads."""

    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class UnreadableListError(ApiError):
    """An uploaded list file cannot be read (not XML, a DTD, the wrong root element...)."""

    status, title, slug = 422, "Unreadable list file", "unreadable-list"


class UriTooLongError(ApiError):
    """The query string is over MAX_QUERY_LENGTH."""

    status, title, slug = 414, "Request URI too long", "uri-too-long"


class ServiceUnavailableError(ApiError):
    """The active tier cannot answer this route (free-text search in the V2 tier)."""

    status, title, slug = 503, "Temporarily unavailable", "tier-unavailable"


_HTTP_TITLES = {
    404: ("Not found", "not-found"),
    405: ("Method not allowed", "method-not-allowed"),
    413: ("Request body too large", "payload-too-large"),
    415: ("Unsupported media type", "unsupported-media-type"),
    414: ("Request URI too long", "uri-too-long"),
}


def problem_response(
    status: int,
    title: str,
    slug: str,
    detail: str,
    instance: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response (the only way error bodies are built)."""
    body = Problem(
        type=PROBLEM_BASE + slug, title=title, status=status, detail=detail, instance=instance, errors=errors
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def internal_error_body(instance: str) -> Problem:
    """The generic 500 body: says nothing about the cause."""
    return Problem(
        type=PROBLEM_BASE + "internal-error",
        title="Internal error",
        status=500,
        detail="The request could not be completed; it has been logged.",
        instance=instance,
    )


def _clean_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    cleaned = []
    for err in exc.errors()[:20]:
        loc = [str(part) for part in err.get("loc", ())]
        msg = str(err.get("msg", "invalid"))[:200]
        cleaned.append({"loc": loc, "msg": msg, "type": str(err.get("type", "value_error"))})
    return cleaned


def register_error_handlers(app: FastAPI) -> None:
    """Map ApiError, HTTP errors and validation errors to problem+json (500s: see the middleware)."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return problem_response(exc.status, exc.title, exc.slug, exc.detail, request.url.path)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _clean_validation_errors(exc)
        where = ", ".join(".".join(e["loc"]) for e in errors) or "request"
        return problem_response(
            422,
            "Invalid parameters",
            "validation-error",
            f"Invalid value for: {where}.",
            request.url.path,
            errors=errors,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title, slug = _HTTP_TITLES.get(exc.status_code, ("Request error", "http-error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 500 else title
        return problem_response(
            exc.status_code, title, slug, detail, request.url.path, headers=dict(exc.headers or {})
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
