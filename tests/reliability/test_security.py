"""Security properties of every response, plus a secret scan of the repository and template."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from handler_support import REPO, invoke, make_event
from reliability_support import SECURITY_HEADERS, assert_safe_response

from anime_recommender.api.service import RecommenderService

Loader = Callable[..., ModuleType]

# One request per route and per error class, including the web page at / and the docs.
REQUESTS = [
    ("GET", "/", None, None),
    ("GET", "/health", None, None),
    ("GET", "/docs", None, None),
    ("GET", "/openapi.json", None, None),
    ("GET", "/anime", {"q": "bebop"}, None),
    ("GET", "/anime/1", None, None),
    ("GET", "/anime/1/similar", {"k": "5"}, None),
    ("GET", "/search", {"q": "space"}, None),
    ("POST", "/recommendations", None, json.dumps({"liked": [1], "k": 5})),
    ("GET", "/anime/999999", None, None),  # 404
    ("GET", "/anime/abc", None, None),  # 422
    ("GET", "/no/such/route", None, None),  # 404
    ("DELETE", "/anime/1", None, None),  # 405
    ("POST", "/recommendations", None, "{not json"),  # 422/400
    ("GET", "/search", {"q": "x" * 5000}, None),  # 414
]


@pytest.mark.parametrize(
    ("method", "path", "query", "body"), REQUESTS, ids=[f"{m} {p}" for m, p, _, _ in REQUESTS]
)
def test_security_headers_on_every_response(
    api: ModuleType, method: str, path: str, query: dict[str, str] | None, body: str | None
) -> None:
    status, headers, raw = invoke(api, make_event(method, path, query, body))
    assert_safe_response(status, headers, raw)  # headers + problem+json + no leaks on errors
    assert headers["x-frame-options"] == "DENY"
    assert "max-age=" in headers["strict-transport-security"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "server" not in headers or "uvicorn" not in headers["server"].lower()


def test_internal_errors_reveal_nothing(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch, bundle_template: Path
) -> None:
    # Given a bug deep in the service whose exception message carries paths and a traceback-like text
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f'Traceback (most recent call last): File "{bundle_template}/secret.py", line 1')

    monkeypatch.setattr(RecommenderService, "similar", explode)
    monkeypatch.setattr(RecommenderService, "anime", explode)
    for event in (make_event("GET", "/anime/1/similar", {"k": "7"}), make_event("GET", "/anime/1")):
        status, headers, raw = invoke(api, event)
        # Then the client gets a generic 500 problem with security headers and nothing internal
        assert status == 500
        problem = json.loads(raw)
        assert problem["type"] == "/problems/internal-error" and problem["status"] == 500
        assert headers["content-type"].startswith("application/problem+json")
        for name in SECURITY_HEADERS:
            assert name in headers
        for leak in ("Traceback", "secret.py", str(bundle_template), "RuntimeError"):
            assert leak not in raw.decode()


def test_cors_refuses_origins_outside_the_allow_list(load_handler: Loader, bundle_template: Path) -> None:
    api = load_handler(bundle_template, CORS_ALLOW_ORIGINS="https://anime.example")
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    ok = invoke(
        api,
        make_event("OPTIONS", "/recommendations", headers={"origin": "https://anime.example", **preflight}),
    )
    assert ok[0] == 200 and ok[1]["access-control-allow-origin"] == "https://anime.example"
    for origin in (
        "https://evil.example",
        "https://anime.example.evil.example",
        "null",
        "http://anime.example",
    ):
        status, headers, _ = invoke(
            api, make_event("OPTIONS", "/recommendations", headers={"origin": origin, **preflight})
        )
        assert status >= 400 and "access-control-allow-origin" not in headers, origin
        for method, path in (("GET", "/health"), ("GET", "/anime/999999")):
            _, headers, _ = invoke(api, make_event(method, path, headers={"origin": origin}))
            assert "access-control-allow-origin" not in headers, (origin, path)
            assert "access-control-allow-credentials" not in headers


# --------------------------------------------------------------------------------------------
# secret scan
# --------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "aws access key id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[0-9A-Z]{16}\b"),
    "aws secret access key": re.compile(
        r"(?i)aws.{0,20}(?:secret|private).{0,20}['\"=:\s]\s*['\"]?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
    ),
    "private key": re.compile(
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY( BLOCK)?-----"
    ),
    "github token": re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|github_pat_[A-Za-z0-9_]{60,}"),
    "slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "generic api key assignment": re.compile(
        r"(?i)\b(?:api[_-]?key|secret[_-]?key|password)\b\s*[:=]\s*['\"][A-Za-z0-9/+_\-]{24,}['\"]"
    ),
}
MAX_SCAN_BYTES = 2_000_000


def scan_for_secrets(paths: list[Path]) -> list[str]:
    """`file:line: kind` for every secret-looking string in the given text files."""
    found = []
    for path in paths:
        try:
            if path.stat().st_size > MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\x00" in data[:4096]:
            continue  # binary
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            for kind, pattern in SECRET_PATTERNS.items():
                if pattern.search(line):
                    found.append(f"{path}:{lineno}: {kind}")
    return found


def repository_files() -> list[Path]:
    """Tracked files plus new files git does not ignore (what the next commit could contain)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [REPO / name for name in out.split("\0") if name and (REPO / name).is_file()]


def test_no_secrets_in_the_repository_or_template() -> None:
    files = repository_files()
    assert REPO / "template.yaml" in files and len(files) > 50
    assert scan_for_secrets(files) == []


def test_secret_scan_finds_planted_secrets(tmp_path: Path) -> None:
    # The scanner itself must be able to fail: plant one of each kind (built at runtime, so this
    # file does not contain them literally).
    key_id = "AKIA" + "Q" * 16
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    planted = tmp_path / "leak.env"
    planted.write_text(
        f"id={key_id}\naws_secret_access_key = {secret}\n-----BEGIN RSA " + "PRIVATE KEY-----\n"
        "token = ghp_" + "a" * 36 + "\n"
    )
    kinds = {line.rsplit(": ", 1)[1] for line in scan_for_secrets([planted])}
    assert kinds == {"aws access key id", "aws secret access key", "private key", "github token"}
    clean = tmp_path / "clean.py"
    clean.write_text('AWS_ACCESS_KEY_ID = "testing"  # moto\nregion = "us-east-1"\n')
    assert scan_for_secrets([clean]) == []
