"""Fixtures for the reliability and security suite: quiet cold starts and one handler per module.

The bundle (`bundle_template`, `bundle_dir`), `load_handler` and the moto server come from
tests/conftest.py; this folder's handlers log at CRITICAL only, as the fuzzers send thousands of bad
requests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from handler_support import import_api_handler
from reliability_support import FUZZ_COUNTS, QUIET_ENV, SUMMARY_LINES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per fuzzed operation with the number of generated cases sent through the handler."""
    if FUZZ_COUNTS:
        terminalreporter.write_sep("-", f"API fuzzing: {sum(FUZZ_COUNTS.values())} cases through the handler")
        for operation, count in sorted(FUZZ_COUNTS.items()):
            terminalreporter.write_line(f"  {operation}: {count}")
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)


@pytest.fixture
def handler_env() -> dict[str, str]:
    """Every `load_handler` cold start in this folder logs at CRITICAL only."""
    return dict(QUIET_ENV)


@pytest.fixture(scope="module")
def api(bundle_template: Path) -> Iterator[ModuleType]:
    """One handler for a whole test module (LRU cache, no CORS origins), on the pristine bundle."""
    with pytest.MonkeyPatch.context() as mp:
        module = import_api_handler(bundle_template, dict(QUIET_ENV), mp)
        yield module
    sys.modules.pop(module.__name__, None)
