"""Calling the real Lambda handlers in-process: fresh imports (cold starts), a context, events/ files.

Plain functions, so module-scoped fixtures and hypothesis tests can use them too; the function-scoped
fixtures around them (`load_handler`, `call`, `event`) are in tests/conftest.py.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EVENTS_DIR = REPO / "events"
API_HANDLER = REPO / "functions" / "api" / "app.py"
DELTA_HANDLER = REPO / "functions" / "delta_update" / "app.py"
# Set by a test or a developer's shell, they would change what a cold start reads.
_API_ENV_CLEARED = ("CACHE_TABLE_NAME", "CACHE_ENDPOINT_URL", "CORS_ALLOW_ORIGINS", "ARTIFACTS_LOCAL_STORE")


@dataclass(frozen=True)
class LambdaContextStub:
    """The attributes powertools reads from a Lambda context (a value object, not a mock)."""

    function_name: str = "ApiFunction"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 30_000
    function_version: str = "$LATEST"
    log_stream_name: str = "stream"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def import_fresh(path: Path, prefix: str) -> ModuleType:
    """Import the file at `path` under a new unique module name, as a Lambda cold start would.

    The module stays in `sys.modules` (powertools and pydantic look it up); callers remove it.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_api_handler(
    artifacts_dir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """functions/api/app.py after a cold start on `artifacts_dir`, with `env` over the test baseline."""
    for key in _API_ENV_CLEARED:
        monkeypatch.delenv(key, raising=False)
    base = {
        "ARTIFACTS_DIR": str(artifacts_dir),
        "POWERTOOLS_METRICS_NAMESPACE": "AnimeRecommenderTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    for key, value in (base | env).items():
        monkeypatch.setenv(key, value)
    return import_fresh(API_HANDLER, "api_handler")


def invoke(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Call the API handler with an API Gateway v2 event: status, lower-cased headers, raw body bytes."""
    response = module.handler(event, LambdaContextStub())
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
    return int(response["statusCode"]), headers, raw


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/<name>.json (the same files `sam local invoke -e` uses)."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return event


def make_event(
    method: str,
    path: str,
    query: dict[str, Any] | None = None,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event; repeated query keys are comma-joined as API Gateway does."""
    pairs: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(key), "" if item is None else str(item)))
    raw_query = urllib.parse.urlencode(pairs)
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    hdrs = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https"}
    hdrs |= {k.lower(): v for k, v in (headers or {}).items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "reliability-tests",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Mar/2025:12:00:00 +0000",
            "timeEpoch": 1741608000000,
        },
        "isBase64Encoded": False,
    }
    if params:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in params.items()}
    if body is not None:
        raw = body if isinstance(body, bytes) else body.encode("utf-8")
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
        event["headers"].setdefault("content-type", "application/json")
    return event
