"""The people's page in a real browser: Debian's headless Chromium, driven by playwright-core.

A real uvicorn server on a free loopback port serves the real app (`create_app` + `mount_web`)
over the tiny catalogue; `browser/scenarios.mjs` clicks through the page like a person and
writes a JSON report that the tests below assert, one test per scenario.

Setup (CI does the same): `apt-get install -y chromium nodejs npm` and
`npm ci --prefix tests/functions/browser`. Only a missing Chromium skips these tests;
a missing node or playwright-core fails them with the command to run.
Screenshots land in $BROWSER_SCREENSHOT_DIR (default: a pytest temp folder, path printed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from anime_recommender.api import create_app
from anime_recommender.api.web import mount_web
from anime_recommender.catalogue import Catalogue
from anime_recommender.search.lexical import build_lexical_index
from anime_recommender.settings import ApiSettings
from anime_recommender.similarity import BackendInfo, TieredBackend
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
BROWSER_DIR = Path(__file__).parent / "browser"
SCRIPT = BROWSER_DIR / "scenarios.mjs"
RUN_TIMEOUT_S = 240

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)"
)


@dataclass
class LiveServer:
    """A uvicorn server running in a thread; `url` ends with '/'."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread


def _start(app: FastAPI) -> LiveServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(url=f"http://127.0.0.1:{port}/", server=server, thread=thread)


def _v2_backend(catalogue: Catalogue) -> TieredBackend:
    """The real last-resort tier: V2 teacher neighbour lists computed over the tiny catalogue, and the
    lexical index (search answers without the encoder)."""
    lists = top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=len(catalogue) - 1)
    info = BackendInfo(tier="v2", model_version="teacher-v2", data_version="tiny", failures=())
    return TieredBackend(
        catalogue=catalogue, info=info, neighbours=lists, lexical=build_lexical_index(list(catalogue))
    )


@pytest.fixture(scope="module")
def live_server(tiny_catalogue: Catalogue) -> Iterator[LiveServer]:
    backend = _v2_backend(tiny_catalogue)
    settings = ApiSettings(cache_table_name=None, cors_allow_origins=[])
    app = create_app(settings, lambda: backend)
    mount_web(app)
    live = _start(app)
    yield live
    live.server.should_exit = True
    live.thread.join(timeout=10)


@pytest.fixture(scope="module")
def report(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: apt-get install -y nodejs npm")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not installed: npm ci --prefix {BROWSER_DIR}")
    work = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get("BROWSER_SCREENSHOT_DIR") or work / "screenshots")
    report_file = work / "report.json"
    env = {
        **os.environ,
        "BASE_URL": live_server.url,
        "REPORT_FILE": str(report_file),
        "SCREENSHOT_DIR": str(shots),
        "CHROMIUM": str(CHROMIUM),
        "SCENARIOS": ",".join(SCENARIOS),
    }
    proc = subprocess.run(
        [node, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert report_file.exists(), f"no report (exit {proc.returncode}): {proc.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(report_file.read_text())
    assert "fatal" not in data, data.get("fatal")
    print(f"browser screenshots: {shots}")  # noqa: T201 - where a person finds them
    return data


def _scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = report["scenarios"].get(name, {"ok": False, "error": "scenario did not run"})
    assert result["ok"], f"{name}: {result.get('error')}"
    return result


SCENARIOS = [
    "home",
    "autocomplete_pick",
    "franchise_apart",
    "type_filter",
    "more_pagination",
    "like_and_for_you",
    "import_list",
    "degraded_tier",
    "search_understood",
    "not_found_state",
    "empty_filter_state",
    "invalid_filter_message",
    "phone_layout",
    "contrast_aa",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(report: dict[str, Any], name: str) -> None:
    _scenario(report, name)


def test_no_console_errors_or_csp_violations(report: dict[str, Any]) -> None:
    assert report["page_errors"] == []
    assert report["console_errors"] == []
    assert report["csp_violations"] == []


def test_screenshots_taken_at_desktop_and_phone_widths(report: dict[str, Any]) -> None:
    names = {Path(p).name for p in report["screenshots"]}
    assert {"desktop-home.png", "desktop-similar.png", "phone-similar.png", "phone-for-you.png"} <= names
    for path in report["screenshots"]:
        assert Path(path).stat().st_size > 5_000, path
