"""The people's page: `/` (index.html) and `/static/...`, served by the API function itself.

The files ship as package data (`anime_recommender/web/`), are read once at startup through
importlib.resources and kept in memory, so a Lambda container never touches the file system per
request. Responses carry a strong ETag; index.html links each static file with `?v=<etag>` so
those can be cached for a year, while the page itself is always revalidated (cheap 304s).
The page gets its own CSP (script/style only from this origin, images also from MyAnimeList's
CDN, fetch only to this origin) instead of the API's JSON-only policy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' https://cdn.myanimelist.net data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Exactly what the page needs; set on every response of these routes."""

STATIC_PREFIX = "/static/"
INDEX_NAME = "index.html"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
# Only these names may ever be served; anything else under web/ (or a traversal attempt) is a 404.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")


@dataclass(frozen=True, slots=True)
class WebAsset:
    """One file of the page, held in memory."""

    body: bytes
    content_type: str
    etag: str


def _asset(body: bytes, content_type: str) -> WebAsset:
    return WebAsset(body=body, content_type=content_type, etag=f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            files.update(_walk(entry, f"{name}/"))
        elif entry.is_file():
            files[name] = entry.read_bytes()
    return files


def load_web_assets(package: str = "anime_recommender", folder: str = "web") -> dict[str, WebAsset]:
    """Read the page's files from package data; keys are paths relative to `folder`.

    index.html's references to `static/<name>` gain `?v=<etag>` so browsers refetch exactly
    when a file changes. Raises FileNotFoundError when index.html is missing (a broken package).
    """
    raw = _walk(resources.files(package).joinpath(folder))
    if INDEX_NAME not in raw:
        raise FileNotFoundError(f"{package}/{folder}/{INDEX_NAME} is missing from the installed package")
    assets: dict[str, WebAsset] = {}
    for name, body in raw.items():
        suffix = name[name.rfind(".") :].lower() if "." in name else ""
        content_type = _CONTENT_TYPES.get(suffix)
        if content_type is None or not _SAFE_NAME.match(name):
            continue  # editor backups, READMEs, ...: never served
        assets[name] = _asset(body, content_type)
    page = raw[INDEX_NAME].decode("utf-8")
    for name, asset in assets.items():
        if name != INDEX_NAME:
            page = page.replace(f'"static/{name}"', f'"static/{name}?v={asset.etag.strip(chr(34))}"')
    assets[INDEX_NAME] = _asset(page.encode("utf-8"), _CONTENT_TYPES[".html"])
    return assets


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _respond(request: Request, asset: WebAsset, cache_control: str) -> Response:
    headers = {
        "ETag": asset.etag,
        "Cache-Control": cache_control,
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(content=asset.body, media_type=asset.content_type, headers=headers)


def mount_web(app: FastAPI) -> None:
    """Serve the page at `/` and its files at `/static/{name}` (GET and HEAD), from memory."""
    assets = load_web_assets()
    index = assets[INDEX_NAME]

    async def page(request: Request) -> Response:
        """The single-page app (hash-routed, so no other page routes exist)."""
        return _respond(request, index, REVALIDATE)

    async def static_file(name: str, request: Request) -> Response:
        """A static file of the page; immutable when requested with its current version."""
        asset = assets.get(name) if name != INDEX_NAME else None
        if asset is None:
            raise HTTPException(status_code=404, detail=f"No static file named {name!r}.")
        versioned = request.query_params.get("v") == asset.etag.strip('"')
        return _respond(request, asset, IMMUTABLE if versioned else REVALIDATE)

    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False, name="web_page")
    app.add_api_route(
        STATIC_PREFIX + "{name:path}",
        static_file,
        methods=["GET", "HEAD"],
        include_in_schema=False,
        name="web_static",
    )
