"""Helpers of the reliability suite: API Gateway v2 events built from parts, response safety checks.

Importing and calling the real handler is tests/handler_support.py's (`import_api_handler`, `invoke`).
"""

from __future__ import annotations

import json
from collections import Counter

from handler_support import REPO

# The environment of this suite's cold starts: thousands of rejected requests need no log lines.
QUIET_ENV: dict[str, str] = {"LOG_LEVEL": "CRITICAL"}

# Filled by the fuzz tests, printed in the terminal summary ("report how many cases ran").
FUZZ_COUNTS: Counter[str] = Counter()
# Other figures worth a line in the terminal summary (load test requests/s and p99).
SUMMARY_LINES: list[str] = []


SECURITY_HEADERS = (
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
)
# What must never appear in an error body: stack traces, source files, server paths.
LEAK_MARKERS = ("Traceback", 'File "', ".py", "/work/", "/tmp/", "/opt/", "site-packages", str(REPO))


def assert_safe_response(status: int, headers: dict[str, str], raw: bytes, allow_503: bool = False) -> None:
    """No 5xx; security headers; every error a problem+json (type/title/status/detail) without leaks."""
    assert status < 500 or (allow_503 and status == 503), f"server error {status}: {raw[:300]!r}"
    for name in SECURITY_HEADERS:
        assert name in headers, f"missing {name} on a {status} response"
    assert headers["x-content-type-options"] == "nosniff"
    if status >= 400:
        assert headers.get("content-type", "").startswith("application/problem+json"), headers
        problem = json.loads(raw)
        assert isinstance(problem, dict)
        for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
            assert isinstance(problem.get(key), kind), (key, problem)
        assert problem["status"] == status
        # `instance` is the request's own path by design (RFC 9457); everything else must be ours.
        text = json.dumps({k: v for k, v in problem.items() if k != "instance"})
        for marker in LEAK_MARKERS:
            assert marker not in text, f"{marker!r} leaked in {text[:300]}"
