"""Pure-ASGI middleware: security headers, request limits, the last-resort error handler, timing.

Pure ASGI (not BaseHTTPMiddleware) keeps the per-request overhead to a few microseconds,
which matters against a 3 ms cache-hit budget.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anime_recommender.api.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, internal_error_body

logger = logging.getLogger(__name__)

# JSON responses need nothing from the browser: no scripts, no frames, no form targets.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI / ReDoc (FastAPI's docs pages) load their assets from jsDelivr.
DOCS_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "font-src https://fonts.gstatic.com",
        "worker-src blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)

CspPolicy = Callable[[str], str]


def default_csp(path: str) -> str:
    """The CSP for a path: strict for the API, relaxed just enough for the docs pages.

    `create_app(csp_policy=...)` takes another callable, so a web page served at `/` can get
    its own policy without loosening the API's.
    """
    if path in ("/docs", "/redoc") or path.startswith("/docs/"):
        return DOCS_CSP
    return API_CSP


STATIC_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-site"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)


class SecurityHeadersMiddleware:
    """Adds HSTS, nosniff, frame protection, referrer policy and a per-path CSP to every response."""

    def __init__(self, app: ASGIApp, csp_policy: CspPolicy = default_csp) -> None:
        self.app = app
        self.csp_policy = csp_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.csp_policy(scope.get("path", "/")).encode("latin-1")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in STATIC_SECURITY_HEADERS if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class DataVersionHeaderMiddleware:
    """Names the data version that answered in an `X-Data-Version` header (errors included).

    The service dependency (`deps.get_service`) records the version of the backend it handed out in the
    request's state, so a response computed during a hot swap names the one version it came from.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                version = scope.get("state", {}).get(DATA_VERSION_STATE)
                if version:
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"x-data-version", version.encode())],
                    }
            await send(message)

        await self.app(scope, receive, send_with_version)


#: The request-state key the service dependency stores the answering data version under.
DATA_VERSION_STATE = "data_version"


async def send_problem(send: Send, status: int, title: str, slug: str, detail: str, instance: str) -> None:
    """Write a problem+json response straight to ASGI (for middleware that runs before routing)."""
    body = json.dumps(
        {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": instance,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CatchAllMiddleware:
    """Last resort: any exception escaping the app is logged and answered with a generic 500 problem.

    Starlette's own ServerErrorMiddleware re-raises after responding; here nothing is re-raised,
    so Mangum always gets a well-formed response and no stack trace leaves the function.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error", extra={"path": scope.get("path")})
            if started:
                return
            body = internal_error_body(scope.get("path", "/"))
            await send_problem(send, 500, body.title, "internal-error", body.detail, body.instance)


class RequestLimitsMiddleware:
    """Refuses over-long query strings (414) and bodies (413) before any parsing happens.

    `max_body_bytes` holds for every path but those in `body_bytes_by_path` (an uploaded list file).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_query_bytes: int,
        max_body_bytes: int,
        max_path_bytes: int = 1024,
        body_bytes_by_path: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_query_bytes = max_query_bytes
        self.max_body_bytes = max_body_bytes
        self.max_path_bytes = max_path_bytes
        self.body_bytes_by_path = dict(body_bytes_by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        instance = path if len(path) <= self.max_path_bytes else "/"
        if len(scope.get("query_string", b"")) > self.max_query_bytes:
            detail = f"The query string is longer than {self.max_query_bytes} bytes."
            await send_problem(send, 414, "Request URI too long", "uri-too-long", detail, instance)
            return
        if len(scope.get("raw_path") or path.encode()) > self.max_path_bytes:
            detail = f"The path is longer than {self.max_path_bytes} bytes."
            await send_problem(send, 414, "Request URI too long", "uri-too-long", detail, instance)
            return
        limit = self.body_bytes_by_path.get(path, self.max_body_bytes)
        too_large = f"The request body is larger than {limit} bytes."
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await send_problem(
                        send, 413, "Request body too large", "payload-too-large", too_large, instance
                    )
                    return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # Bodies without (or lying about) content-length: buffer up to the limit, then replay.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_problem(
                    send, 413, "Request body too large", "payload-too-large", too_large, instance
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestObserver(Protocol):
    """Receives one call per request (metrics, logs)."""

    def on_request(self, route: str, method: str, status: int, latency_ms: float, cache: str | None) -> None:
        """Record a finished request."""
        ...


class ObserveMiddleware:
    """Times each request and reports route template, status and X-Cache to an observer."""

    def __init__(self, app: ASGIApp, observer: RequestObserver) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        cache: str | None = None

        async def observing_send(message: Message) -> None:
            nonlocal status, cache
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name == b"x-cache":
                        cache = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            latency_ms = (time.perf_counter() - start) * 1000.0
            try:
                self.observer.on_request(template, scope.get("method", "?"), status, latency_ms, cache)
            except Exception:  # metrics must never break a response
                logger.exception("request observer failed")
