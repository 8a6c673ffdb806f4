"""Load: `anime-build serve` (uvicorn, same app as Lambda, tiny bundle) in its own process, loaded from
this process over loopback with a bounded mixed workload; zero errors allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import SUMMARY_LINES

from anime_pipeline.bench.loadgen import LoadConfig, mix_for_bundle, run_load, serve_subprocess

REQUESTS, CONNECTIONS, MAX_SECONDS = 2_000, 8, 120.0


def test_local_server_under_concurrent_load(bundle_template: Path, tmp_path: Path) -> None:
    mix = mix_for_bundle(bundle_template, n_ids=20)
    assert {r.route for r in mix} == {
        "health",
        "anime",
        "autocomplete",
        "similar",
        "search",
        "recommendations",
    }
    env = {"ANIME_WORK_DIR": str(tmp_path / "work"), "ARTIFACTS_LOCAL_STORE": str(tmp_path / "store")}
    with serve_subprocess(bundle_template, env=env) as (port, _):
        result = run_load(
            LoadConfig(
                port=port, mix=mix, requests=REQUESTS, connections=CONNECTIONS, max_seconds=MAX_SECONDS
            )
        )
    SUMMARY_LINES.append(
        f"load: {result.requests} requests over {result.connections} connections in {result.seconds} s "
        f"-> {result.requests_per_s} req/s, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
        f"{result.errors} errors"
    )
    assert not result.stopped_by_deadline
    assert result.requests == REQUESTS
    assert result.errors == 0, result.error_samples
    assert set(result.per_route) == {r.route for r in mix}


def test_load_generator_counts_errors_and_stays_on_loopback(bundle_template: Path, tmp_path: Path) -> None:
    # The generator must report failures, or "zero errors" above would mean nothing.
    from anime_pipeline.bench.loadgen import Request, free_port

    bad = [Request("missing", "GET", "/anime/999999"), Request("ok", "GET", "/health")]
    with serve_subprocess(bundle_template, env={"ARTIFACTS_LOCAL_STORE": str(tmp_path / "s")}) as (port, _):
        result = run_load(LoadConfig(port=port, mix=bad, requests=40, connections=2))
    assert result.requests == 40 and result.errors == 20 and result.statuses == {"200": 20, "404": 20}
    refused = run_load(LoadConfig(port=free_port(), mix=bad, requests=4, connections=1, timeout_s=1))
    assert refused.errors == 4 and all(s.startswith("error:") for s in refused.statuses)
    with pytest.raises(ValueError, match="loopback"):
        run_load(LoadConfig(port=port, mix=bad, host="192.0.2.1"))
