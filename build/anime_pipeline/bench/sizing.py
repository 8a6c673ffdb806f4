"""Init and latency at Lambda's CPU share for candidate memory sizes (Linux cgroup v1 CPU quota).

Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB. Measuring on this
machine's free cores would flatter small sizes, so each candidate size runs under a CFS quota of
memory / 1,769 of one core: cold starts through the emulator (template layout, built layers), and
the p50 of similar and search requests through the handler in a fresh process.

    python -m anime_pipeline.bench.sizing [--artifacts DIR] [--sizes 1024,1769,3008] [--starts 5]

Needs root (it creates `/sys/fs/cgroup/cpu/<name>`); prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from anime_pipeline.paths import BuildPaths

CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
FULL_VCPU_MB = 1769

_LATENCY = """
import json, statistics, sys, time
sys.argv = ["x"]
from anime_pipeline.bench.api import _Events, _import_handler, _invoke
from anime_pipeline.paths import REPO_ROOT
module = _import_handler(REPO_ROOT)
events = _Events()
ids = module.app.state.api.services().catalogue.ids
out = {}
for route, make in (
    ("similar", lambda i: events.make("GET", f"/anime/{ids[(i * 97) % len(ids)]}/similar", {"k": "10"})),
    ("search", lambda i: events.make("GET", "/search", {"q": f"space adventure {i}", "k": "10"})),
):
    times = [_invoke(module, make(i), None)[0] for i in range(60)][10:]
    out[route] = round(statistics.median(times), 2)
print(json.dumps(out))
"""


def _run_in_cgroup(group: Path, command: list[str], env: dict[str, str]) -> str:
    """Run `command` inside `group` (the child moves itself in before exec'ing)."""
    wrapper = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *command]
    result = subprocess.run(wrapper, env=env, capture_output=True, text=True, timeout=900, check=True)
    return result.stdout


def measure(artifacts: Path, memory_mb: int, starts: int) -> dict[str, Any]:
    """Cold starts and request latency under the CPU share of `memory_mb`."""
    group = CGROUP_ROOT / f"anime-sizing-{os.getpid()}-{memory_mb}"
    group.mkdir()
    try:
        quota = int(PERIOD_US * memory_mb / FULL_VCPU_MB)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        env = {**os.environ, "ARTIFACTS_DIR": str(artifacts), "LOG_LEVEL": "WARNING", "CACHE_TABLE_NAME": ""}
        cold = (
            "import json, sys; from pathlib import Path; "
            "from anime_pipeline.bench.api import emulator_cold_starts, moto_server, create_cache_table\n"
            "with moto_server() as ep:\n    create_cache_table(ep)\n"
            f"    r = emulator_cold_starts(Path({str(artifacts)!r}), ep, {starts})\n"
            "keys = ('init_ms', 'first_request_ms', 'samples')\n"
            "print(json.dumps(None if r is None else {k: r[k] for k in keys}))"
        )
        started = time.perf_counter()
        colds = json.loads(_run_in_cgroup(group, [sys.executable, "-c", cold], env).strip().splitlines()[-1])
        latency = json.loads(
            _run_in_cgroup(group, [sys.executable, "-c", _LATENCY], env).strip().splitlines()[-1]
        )
        return {
            "memory_mb": memory_mb,
            "vcpu_share": round(memory_mb / FULL_VCPU_MB, 3),
            "cold_start": colds,
            "p50_ms": latency,
            "seconds": round(time.perf_counter() - started, 1),
        }
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (CGROUP_ROOT / "cgroup.procs").write_text(pid)
        group.rmdir()


def main(argv: list[str] | None = None) -> int:
    """Print the sizing report as JSON."""
    parser = argparse.ArgumentParser(prog="anime_pipeline.bench.sizing", description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", help="bundle (default: the build's artifacts layer)")
    parser.add_argument("--sizes", default="1024,1769,3008", help="memory sizes in MB, comma-separated")
    parser.add_argument("--starts", type=int, default=5, help="emulator cold starts per size")
    args = parser.parse_args(argv)
    artifacts = Path(args.artifacts) if args.artifacts else BuildPaths.from_env().artifacts_dir
    sizes = [int(s) for s in args.sizes.split(",")]
    report = {
        "method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "artifacts": str(artifacts),
        "sizes": [measure(artifacts, size, args.starts) for size in sizes],
        "statistics": "medians",
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
