"""OpenAPI `responses=` fragments documenting the problem+json errors."""

from __future__ import annotations

from typing import Any

from anime_recommender.api.models import Problem


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {"application/problem+json": {}}}


def problems(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """A `responses=` fragment for one problem status with a route's own description."""
    return {status: _problem(description)}


PROBLEMS_400: dict[int | str, dict[str, Any]] = {400: _problem("The request body is not valid JSON.")}
PROBLEMS_404: dict[int | str, dict[str, Any]] = {404: _problem("Unknown anime id.")}
PROBLEMS_413: dict[int | str, dict[str, Any]] = {413: _problem("Request body too large.")}
PROBLEMS_415: dict[int | str, dict[str, Any]] = {
    415: _problem("The body is not in a format the route reads.")
}
PROBLEMS_422: dict[int | str, dict[str, Any]] = {422: _problem("Invalid parameters.")}
PROBLEMS_503: dict[int | str, dict[str, Any]] = {
    503: _problem("Neither the lexical index nor the text encoder is loaded: nothing to search with.")
}
# Answered by RequestLimitsMiddleware before any route runs, so every route can return them.
PROBLEMS_LIMITS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS_413,
    414: _problem("Query string too long."),
}
