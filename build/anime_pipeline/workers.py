"""Run a Python worker in a fresh interpreter and read the one JSON result it prints.

Used where a measurement or a build step must happen in another process (a clean cold start, or
another interpreter such as Lambda's Python 3.12): the worker prints `<MARKER> {json}` on stdout.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


def run_json_worker(
    command: Sequence[str], *, marker: str, env: Mapping[str, str], timeout_s: float, what: str
) -> dict[str, Any]:
    """Run `command`; return the JSON after the last `marker` line. RuntimeError with stderr on failure."""
    proc = subprocess.run(
        list(command), env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker + " ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(marker + " "))
    return result
