"""Fixtures for the reliability and security suite: a tiny real bundle and the REAL Lambda handler.

The bundle comes from `anime_pipeline.tiny_model` (real ONNX graph, hnswlib indexes, V2 lists,
checksummed manifest); the handler is `functions/api/app.py` imported fresh, as a cold start does,
and called with API Gateway HTTP API v2 events.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from reliability_support import FUZZ_COUNTS, SUMMARY_LINES, import_handler

from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.catalogue import Catalogue


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per fuzzed operation with the number of generated cases sent through the handler."""
    if FUZZ_COUNTS:
        terminalreporter.write_sep("-", f"API fuzzing: {sum(FUZZ_COUNTS.values())} cases through the handler")
        for operation, count in sorted(FUZZ_COUNTS.items()):
            terminalreporter.write_line(f"  {operation}: {count}")
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def bundle_template(tiny_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny bundle for the tiny catalogue (built once per session)."""
    return make_tiny_bundle(tiny_catalogue, tmp_path_factory.mktemp("reliability-bundle"))


@pytest.fixture
def bundle_dir(bundle_template: Path, tmp_path: Path) -> Path:
    """A writable copy of the bundle (tests corrupt it)."""
    return Path(shutil.copytree(bundle_template, tmp_path / "anime-artifacts"))


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """`load_handler(artifacts_dir, **env)`: the real handler module after a cold start."""
    loaded: list[str] = []

    def _load(artifacts: Path, **env: str) -> ModuleType:
        module = import_handler(artifacts, env, monkeypatch)
        loaded.append(module.__name__)
        return module

    yield _load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def api(bundle_template: Path) -> Iterator[ModuleType]:
    """One handler for a whole test module (LRU cache, no CORS origins), on the pristine bundle."""
    with pytest.MonkeyPatch.context() as mp:
        module = import_handler(bundle_template, {}, mp)
        yield module
    sys.modules.pop(module.__name__, None)
