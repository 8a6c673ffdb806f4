"""`anime-build bench --quick` end to end (a subprocess, as `make bench-quick` runs it): the JSON's shape.

Thresholds are not asserted (CI machines are noisy); every section must be ok, and every figure
must carry a value, a unit and its number of runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from handler_support import REPO

from anime_pipeline.bench.cli import SECTIONS
from anime_pipeline.bench.summary import CACHE_TIERS, ROUTE_STATES, SEARCH_QUALITY_KEYS, SUMMARY_KEYS


def _figures(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if {"value", "unit", "runs"} <= set(node):
            return [(where, node)]
        return [f for key, value in node.items() for f in _figures(value, f"{where}.{key}")]
    return []


def test_bench_quick_prints_and_writes_one_json_document(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    env_work = {"ANIME_WORK_DIR": str(tmp_path / "work"), "ARTIFACTS_LOCAL_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "anime_pipeline.cli", "bench", "--quick", "--output", str(output)],
        cwd=REPO,
        env={**os.environ, **env_work},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert json.loads(output.read_text()) == doc
    assert doc["schema"] == "anime-bench/1" and doc["mode"] == "quick"
    sections = doc["sections"]
    assert list(sections) == list(SECTIONS)
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(SECTIONS, "ok")

    figures = _figures(sections)
    assert len(figures) > 40
    for where, fig in figures:
        assert isinstance(fig["value"], int | float) and fig["value"] >= 0, where
        assert isinstance(fig["unit"], str) and fig["unit"], where
        assert isinstance(fig["runs"], int) and fig["runs"] >= 1, where

    teacher = sections["teacher"]
    for part in ("catalogue", "synthetic_4000"):
        assert teacher[part]["pairs_per_s"]["unit"] == "pairs/s"
        assert teacher[part]["peak_rss"]["unit"] == "MiB"
    assert sections["triplets"]["mining_time"]["unit"] == "s"
    assert {"threads_1", "threads_2"} <= set(sections["embedding"])
    for space in ("v4", "v3"):
        assert 0 <= sections["index"][space]["recall_at_10"]["value"] <= 1
        assert sections["index"][space]["build_time"]["runs"] >= 1
    api = sections["api"]
    assert api["cold_start_init"]["unit"] == "ms"
    for route in ("similar", "search", "recommendations"):
        assert {"uncached", "cached"} <= set(api["routes"][route])
        assert {"p50", "p95"} <= set(api["routes"][route]["cached"])
    load = sections["load"]
    assert load["errors"] == 0 and load["requests"] == 1000
    assert load["throughput"]["unit"] == "requests/s" and load["p99"]["unit"] == "ms"
    assert sections["delta"]["ratio_full_over_delta_embed_index"]["unit"] == "x"
    assert sections["layers"]["limit"]["value"] == 262_144_000
    assert isinstance(sections["layers"]["within_limit"], bool)
    assert sections["quality"]["methods"]
    assert "skipped" in sections["quality"]["search"]

    # The flat summary: exactly the documented keys, in order; numbers where --quick measures them.
    summary = doc["summary"]
    assert list(summary) == list(SUMMARY_KEYS)
    # No fp32 export, no 40k bundle, and no MyAnimeList anime for the search query set in --quick.
    # No story-text build either (its cold starts are measured on `make build STORYTEXT=…`'s bundle).
    not_in_quick = {
        "int8_cosine",
        "layer_bytes_40k",
        "init_ms_storytext",
        "first_request_ms_storytext",
        *SEARCH_QUALITY_KEYS,
    }
    for key, value in summary.items():
        if key in not_in_quick:
            assert value is None, key
        else:
            assert isinstance(value, int | float) and value >= 0, key
    assert summary["init_ms"] == api["init"]["value"]
    assert summary["cache_l1_hit_p50_ms"] == api["cache_tiers"]["l1_hit"]["p50"]["value"]
    assert api["cold_start_init"]["runs"] >= 9  # medians of at least nine fresh starts


def test_readme_documents_every_summary_key() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    route_keys = {f"{r}_{s}_{q}_ms" for r, s in ROUTE_STATES for q in ("p50", "p95")}
    tier_keys = {f"cache_{t}_{q}_ms" for t in CACHE_TIERS for q in ("p50", "p95")}
    for key in set(SUMMARY_KEYS) - route_keys - tier_keys:
        assert f"`{key}`" in readme, key
    assert "`{route}_{state}_p50_ms`" in readme and "`cache_{tier}_p50_ms`" in readme
    for route, state in ROUTE_STATES:
        assert f"`{route}`" in readme and f"`{state}`" in readme, (route, state)
