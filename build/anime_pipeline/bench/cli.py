"""`anime-build bench`: every number the project claims, from one command, as ONE JSON document.

Sections (each `{"status": "ok" | "skipped" | "failed", ...}`; a section whose inputs are missing is
`skipped` with the reason, never estimated):

- `teacher`: V2 all-pairs top-100, pairs/s and peak RSS, on the real catalogue and a synthetic 40k
  (each in a fresh process, since peak RSS is a process high-water mark);
- `triplets`: mining time from the teacher's lists;
- `embedding`: texts/s of the shipped int8 ONNX encoder with 1 and 2 threads;
- `index`: hnswlib build time with the shipped parameters and the shipped index's recall@10;
- `api`: cold-start init and p50/p95 per route through the real Lambda handler, uncached and cached
  (DynamoDB served by moto over HTTP) — `anime_pipeline.bench.api`;
- `load`: the local server (`anime-build serve`, another process) under bounded concurrent load;
- `delta`: a weekly delta update against a full rebuild — `anime_pipeline.bench.delta.bench_delta`;
- `layers`: function + layer sizes against Lambda's 262,144,000-byte unzipped limit;
- `quality`: the evaluation report's numbers (`.work/eval/report.json`).

Beside the sections, `configurations` holds the quality keys (`evaluation.quality.QUALITY_KEYS`: own
query set hit@10 / MRR tune and holdout, dev cross-franchise recall@10, franchise recall, the plain
`baseline_bm25_*` / `baseline_tfidf_*` keys) of the `default` build and of the `storytext` build
(`--storytext-work`, `--storytext-layer`; default `.work-storytext`, `layers/artifacts-storytext`),
each from its own evaluation report with search measured now on its own bundle, or `missing` with why.

The document's `summary` is a flat dict of the headline numbers under stable keys
(`anime_pipeline.bench.summary.SUMMARY_KEYS`, listed in the README); the sections hold the detail.

Every figure is `{"value", "unit", "runs"}` (plus `warmup_runs`); timings are medians of `runs` after
the warm-up. `--quick` builds a small synthetic catalogue, a tiny real ONNX model and a bundle in a
temporary folder and runs every section on them in well under two minutes (the harness is tested in
CI; its numbers are not compared with thresholds there).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.bench.summary import summarise
from anime_pipeline.paths import REPO_ROOT, BuildPaths
from anime_pipeline.progress import progress

SCHEMA = "anime-bench/1"
LAMBDA_LIMIT_BYTES = 262_144_000
SECTIONS: tuple[str, ...] = (
    "teacher",
    "triplets",
    "embedding",
    "index",
    "api",
    "load",
    "delta",
    "layers",
    "quality",
    "cost",
)


class Skip(Exception):
    """A section cannot run: its inputs are missing (the message says which and how to make them)."""


def figure(
    value: float | int | None, unit: str, runs: int, warmup_runs: int = 0, **extra: Any
) -> dict[str, Any]:
    """One reported number with its unit and how many measured runs it summarises."""
    if isinstance(value, float):
        value = round(value, 4 if abs(value) < 10 else 1)
    return {"value": value, "unit": unit, "runs": runs, "warmup_runs": warmup_runs, **extra}


def timed_median(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, list[float]]:
    """Median wall seconds of `runs` calls of `fn` after `warmup` untimed calls, and every sample."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples


@dataclass(frozen=True)
class BenchConfig:
    """What to measure on which inputs (see `full_config` / `quick_config`)."""

    mode: str
    catalogue: Path
    neighbours: Path
    triplets_path: Path
    artifacts: Path
    eval_report: Path
    deps_dir: Path
    teacher_synthetic_n: int = 40_000
    teacher_runs: int = 1
    teacher_warmup: int = 0
    triplets_n: int = 500_000
    triplet_runs: int = 3
    embed_texts: int = 512
    embed_runs: int = 3
    index_runs: int = 1
    index_warmup: int = 0
    recall_queries: int = 1000
    api_runs: int = 200
    load_requests: int = 10_000
    load_connections: int = 8
    load_max_seconds: float = 300.0
    delta_full_sample: int | None = None
    threads: int = 2
    # The export's parity report (int8 vs fp32) and `make layers-40k`'s bundle; None = not measured.
    parity: Path | None = None
    artifacts_40k: Path | None = None
    # The configurations compared side by side (`configurations`); None = not measured (--quick).
    default_paths: BuildPaths | None = None
    storytext_paths: BuildPaths | None = None


def full_config(paths: BuildPaths, storytext: BuildPaths | None = None) -> BenchConfig:
    """The default catalogue's artifacts, at the sizes the project's claims are made for."""
    from anime_pipeline.evaluation.quality import storytext_paths

    storytext = storytext or storytext_paths()
    # Benchmarking the story-text build itself (`make bench STORYTEXT=…`): `default` is the repository's.
    same = paths.work.resolve() == storytext.work.resolve()
    default = BuildPaths(REPO_ROOT / ".work", REPO_ROOT / "layers" / "artifacts") if same else paths
    return BenchConfig(
        mode="full",
        catalogue=paths.catalogue,
        neighbours=paths.neighbours,
        triplets_path=paths.triplets,
        artifacts=paths.artifacts_dir,
        eval_report=paths.eval / "report.json",
        deps_dir=REPO_ROOT / "layers" / "dependencies" / "python",
        parity=paths.work / "models" / "onnx" / "parity.json",
        artifacts_40k=paths.work / "synthetic-40000" / "anime-artifacts",
        default_paths=default,
        storytext_paths=storytext,
    )


# ---------------------------------------------------------------------------------------------
# teacher (in fresh processes)
# ---------------------------------------------------------------------------------------------


def _teacher_child(catalogue_path: str | None, synthetic_n: int, runs: int, warmup: int) -> dict[str, Any]:
    """Runs in a spawned process: time the V2 top-100 and report this process's peak RSS."""
    from anime_pipeline.bench.teacher import bench_teacher
    from anime_pipeline.teacher_stage import compute_neighbours, peak_rss_mb
    from anime_recommender.catalogue import Catalogue

    samples: list[float] = []
    n = 0
    for i in range(warmup + runs):
        if catalogue_path is None:
            result = bench_teacher(synthetic_n, seed=0)
            seconds, n = float(result["seconds"]), int(result["n_anime"])
        else:
            teacher = compute_neighbours(Catalogue.load(Path(catalogue_path)), k=100)
            seconds, n = teacher.seconds, teacher.n_anime
        if i >= warmup:
            samples.append(seconds)
    median = statistics.median(samples)
    pairs = n * (n - 1)
    return {
        "n_anime": n,
        "k": 100,
        "pairs": pairs,
        "pairs_per_s": figure(pairs / median, "pairs/s", runs, warmup),
        "seconds": figure(median, "s", runs, warmup),
        "peak_rss": figure(peak_rss_mb(), "MiB", 1, note="high-water mark of a fresh process running it"),
    }


def _in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def section_teacher(cfg: BenchConfig) -> dict[str, Any]:
    """Teacher pairs/s and peak RSS on the catalogue and on a synthetic catalogue."""
    out: dict[str, Any] = {}
    if cfg.catalogue.is_file():
        out["catalogue"] = _in_fresh_process(
            _teacher_child, str(cfg.catalogue), 0, cfg.teacher_runs, cfg.teacher_warmup
        )
    else:
        reason = f"no catalogue at {cfg.catalogue} (anime-build ingest)"
        out["catalogue"] = {"status": "skipped", "reason": reason}
    out[f"synthetic_{cfg.teacher_synthetic_n}"] = _in_fresh_process(
        _teacher_child, None, cfg.teacher_synthetic_n, cfg.teacher_runs, cfg.teacher_warmup
    )
    return out


# ---------------------------------------------------------------------------------------------
# triplets, embedding, index
# ---------------------------------------------------------------------------------------------


def _need(path: Path, how: str) -> Path:
    if not path.exists():
        raise Skip(f"{path} missing ({how})")
    return path


def section_triplets(cfg: BenchConfig) -> dict[str, Any]:
    """Time `mine_triplets` on the teacher's lists (the stage minus file I/O)."""
    from anime_pipeline.triplets import TripletConfig, mine_triplets
    from anime_recommender.catalogue import Catalogue
    from anime_recommender.neighbours import NeighbourLists
    from anime_recommender.teacher import TeacherConfig, TeacherFeatures

    catalogue = Catalogue.load(_need(cfg.catalogue, "anime-build ingest"))
    lists = NeighbourLists.load(_need(cfg.neighbours, "anime-build teacher"))
    features = TeacherFeatures.from_catalogue(catalogue, TeacherConfig())
    config = TripletConfig(n_triplets=cfg.triplets_n)
    count = len(mine_triplets(catalogue, lists, config, features))
    median, _ = timed_median(lambda: mine_triplets(catalogue, lists, config, features), cfg.triplet_runs, 1)
    return {
        "triplets": count,
        "anchors": len(lists),
        "mining_time": figure(median, "s", cfg.triplet_runs, 1, note="teacher features precomputed"),
        "triplets_per_s": figure(count / median, "triplets/s", cfg.triplet_runs, 1),
    }


def section_embedding(cfg: BenchConfig) -> dict[str, Any]:
    """Texts/s of the bundle's ONNX encoder (the API's query path) with 1 and 2 intra-op threads."""
    from anime_recommender.artifacts import CATALOGUE
    from anime_recommender.catalogue import Catalogue
    from anime_recommender.encoder import EncoderConfig, OnnxEncoder
    from anime_recommender.text import anime_text

    model_dir = _need(cfg.artifacts / "model", "anime-build export + index")
    catalogue = Catalogue.load(_need(cfg.artifacts / CATALOGUE, "anime-build index"))
    texts = [anime_text(catalogue[i]) for i in range(min(cfg.embed_texts, len(catalogue)))]
    out: dict[str, Any] = {
        "texts": len(texts),
        "batch_size": 32,
        "model_bytes": (model_dir / "model.onnx").stat().st_size,
        "quantization": EncoderConfig.load(model_dir / "encoder.json").quantization,
    }
    for threads in (1, 2):
        encoder = OnnxEncoder.load(model_dir, threads=threads)
        median, _ = timed_median(partial(encoder.encode, texts), cfg.embed_runs, 1)
        out[f"threads_{threads}"] = figure(len(texts) / median, "texts/s", cfg.embed_runs, 1)
    return out


def section_index(cfg: BenchConfig) -> dict[str, Any]:
    """Per space: build time with the shipped M/ef_construction over the shipped vectors, and the
    shipped index's recall@10 (at its manifest ef) against exact search on sampled catalogue queries."""
    from anime_pipeline.index_stage import brute_force_top_k, recall_at_k
    from anime_recommender.artifacts import Manifest, index_dir
    from anime_recommender.index import index_class, load_index

    _need(cfg.artifacts / "manifest.json", "anime-build index")
    manifest = Manifest.read(cfg.artifacts)
    out: dict[str, Any] = {}
    for space, info in manifest.indexes.items():
        index = load_index(cfg.artifacts / index_dir(space), ef=info.ef, threads=1, kind=info.kind)
        ids = index.ids
        vectors = np.stack([index.vector(int(a)) for a in ids])
        rng = np.random.default_rng(0)
        sample = rng.choice(len(ids), size=min(cfg.recall_queries, len(ids)), replace=False)
        queries = vectors[sample]
        truth = brute_force_top_k(vectors, queries, 10)
        recall = recall_at_k(index, ids, truth, queries)
        # A flat index searches exactly over what it stores (recall 1.0 against its own vectors): its
        # loss is int8 quantisation, which only the build can measure (against float vectors).
        flat_recall = info.recall_at_10 if info.kind == "flat-int8" else None
        median, _ = timed_median(
            partial(
                index_class(info.kind).build,
                ids,
                vectors,
                M=info.M,
                ef_construction=info.ef_construction,
                ef=info.ef,
                threads=cfg.threads,
            ),
            cfg.index_runs,
            cfg.index_warmup,
        )
        out[space] = {
            "count": len(ids),
            "dim": int(vectors.shape[1]),
            "M": info.M,
            "ef_construction": info.ef_construction,
            "ef": info.ef,
            "build_time": figure(median, "s", cfg.index_runs, cfg.index_warmup, threads=cfg.threads),
            "kind": info.kind,
            "recall_at_10": figure(recall, "fraction", 1, queries=len(sample))
            if flat_recall is None
            else figure(flat_recall, "fraction", 1, note="int8 vs float exact search, from the index stage"),
        }
    return out


# ---------------------------------------------------------------------------------------------
# API latency, load, delta, layers, quality
# ---------------------------------------------------------------------------------------------


def section_api(cfg: BenchConfig) -> dict[str, Any]:
    """Cold-start init and p50/p95 per route through the real handler (`api_bench.run_api_bench`)."""
    from anime_pipeline.bench.api import run_api_bench

    _need(cfg.artifacts / "manifest.json", "anime-build index")
    raw = run_api_bench(cfg.artifacts, quick=cfg.mode == "quick")
    storytext = _storytext_cold_starts(cfg)
    warmup = int(raw["warmup"])
    cold = raw["cold_start"]
    samples = int(cold["samples"])
    routes: dict[str, Any] = {}
    for route, measured in raw["routes"].items():
        routes[route] = {
            state: {
                "p50": figure(m["p50_ms"], "ms", int(m["runs"]), warmup),
                "p95": figure(m["p95_ms"], "ms", int(m["runs"]), warmup),
            }
            for state, m in measured.items()
        }
    return {
        "tier": raw["tier"],
        "catalogue_size": raw["catalogue_size"],
        "method": raw["method"],
        "cold_start_init": figure(
            cold["handler_import_ms"], "ms", samples, note="handler import in a fresh process (Lambda init)"
        ),
        "cold_start_process_ready": figure(cold["process_ready_ms"], "ms", samples),
        "cold_start_first_request": figure(
            cold["first_request_ms"], "ms", samples, note="GET /anime/{id}/similar right after init"
        ),
        "init": figure(
            cold["process_ready_ms"],
            "ms",
            samples,
            note=cold.get(
                "note",
                "process spawn to handler imported (interpreter start + init): when a runtime asks "
                "for its first event",
            ),
        ),
        # Both views of the cold start, whichever the headline took: per-start samples included.
        "cold_start_source": cold.get("source"),
        "cold_start_emulator": raw.get("cold_start_emulator"),
        "cold_start_in_process": raw.get("cold_start_in_process"),
        # The story-text bundle's cold starts, the same way (None when that build is absent).
        "cold_start_emulator_storytext": storytext,
        "init_storytext": None
        if storytext is None
        else figure(storytext["init_ms"], "ms", storytext["samples"]),
        "first_request_storytext": None
        if storytext is None
        else figure(storytext["first_request_ms"], "ms", storytext["samples"]),
        "routes": routes,
        # CloudWatch Logs bytes per request (the function's output plus Lambda's START/END/REPORT lines)
        # and the mean compressed size of a shared-cache response (a DynamoDB item): the cost's inputs.
        "log_bytes_per_request": raw["log_bytes_per_request"],
        "cached_item_bytes": raw["cached_item_bytes"],
        # Hostile list files sent to POST /recommendations/import: status, time to refuse, peak memory.
        "import_refusals": raw["import_refusals"],
        "cache_tiers": {
            state: {
                "p50": figure(m["p50_ms"], "ms", int(m["runs"]), warmup),
                "p95": figure(m["p95_ms"], "ms", int(m["runs"]), warmup),
            }
            for state, m in raw["cache_tiers"].items()
            if isinstance(m, dict)
        },
        "cache_tiers_route": raw["cache_tiers"]["route"],
        "targets_p50_ms": raw["targets_p50_ms"],
        "meets_targets": raw["meets_targets"],
        "source": "anime_pipeline.bench.api.run_api_bench",
    }


def _storytext_cold_starts(cfg: BenchConfig) -> dict[str, Any] | None:
    """Emulator cold starts of the story-text build's bundle (`make build STORYTEXT=…`), if built."""
    from anime_pipeline.bench.api import create_cache_table, emulator_cold_starts, moto_server

    story = None if cfg.storytext_paths is None else cfg.storytext_paths.artifacts_dir
    if story is None or not (story / "manifest.json").is_file() or story.resolve() == cfg.artifacts.resolve():
        return None
    with moto_server() as endpoint:
        create_cache_table(endpoint)
        return emulator_cold_starts(story, endpoint)


def section_load(cfg: BenchConfig) -> dict[str, Any]:
    """Bounded concurrent load on `anime-build serve` (another process) over loopback."""
    from anime_pipeline.bench.loadgen import LoadConfig, mix_for_bundle, run_load, serve_subprocess

    _need(cfg.artifacts / "manifest.json", "anime-build index")
    mix = mix_for_bundle(cfg.artifacts)
    # A private local store, so a developer's published deltas do not change what is measured.
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        env = {"ARTIFACTS_LOCAL_STORE": str(Path(tmp) / "store"), "CACHE_TABLE_NAME": ""}
        server: dict[str, float] = {}
        with serve_subprocess(cfg.artifacts, env=env, stats=server) as (port, ready_s):
            # Warm-up: one pass over the mix (fills the in-process LRU as steady traffic would).
            run_load(LoadConfig(port=port, mix=mix, requests=len(mix), connections=cfg.load_connections))
            result = run_load(
                LoadConfig(
                    port=port,
                    mix=mix,
                    requests=cfg.load_requests,
                    connections=cfg.load_connections,
                    max_seconds=cfg.load_max_seconds,
                )
            )
    r = result.to_dict()
    routes = [req.route for req in mix]
    cached = {k: v for k, v in result.cache.items() if k in ("hit", "miss")}
    return {
        "server": "anime-build serve (uvicorn, 1 worker, in-process LRU cache)",
        # The API process's peak resident set under this load (Linux VmHWM of the server process).
        "peak_rss_mb": server.get("peak_rss_mb"),
        "mix_shares": {route: round(routes.count(route) / len(routes), 4) for route in sorted(set(routes))},
        "cache": result.cache,
        "cache_hit_rate": round(cached.get("hit", 0) / max(1, sum(cached.values())), 4),
        "server_ready_s": round(ready_s, 2),
        "distinct_requests": len(mix),
        "note": "the mix repeats; after the warm-up pass the computed routes are mostly LRU cache hits",
        "requests": r["requests"],
        "connections": r["connections"],
        "errors": r["errors"],
        "statuses": r["statuses"],
        "throughput": figure(result.requests_per_s, "requests/s", 1, 1),
        "p50": figure(result.p50_ms, "ms", result.requests, 1),
        "p95": figure(result.p95_ms, "ms", result.requests, 1),
        "p99": figure(result.p99_ms, "ms", result.requests, 1),
        "per_route": r["per_route"],
        "error_samples": r["error_samples"],
        "stopped_by_deadline": r["stopped_by_deadline"],
    }


def section_cost(sections: dict[str, Any]) -> dict[str, Any]:
    """One million requests of the load section's mix priced from the API and load sections (`cost`)."""
    from anime_pipeline.bench.cost import Traffic, cost_report

    api, load = sections.get("api", {}), sections.get("load", {})
    if api.get("status") != "ok" or load.get("status") != "ok":
        raise Skip("needs the api and load sections")
    traffic = Traffic(
        hit_rate=load["cache_hit_rate"],
        log_bytes_per_request=api["log_bytes_per_request"],
        cached_item_bytes=api["cached_item_bytes"],
    )
    return cost_report(api, load["mix_shares"], traffic, memory_mb=_template_memory_mb())


def _template_memory_mb() -> int:
    """template.yaml's ApiMemorySize default."""
    text = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    found = re.search(r"^  ApiMemorySize:\n(?:    .*\n)*?    Default: (\d+)", text, re.MULTILINE)
    if found is None:
        raise ValueError("template.yaml has no ApiMemorySize default")
    return int(found.group(1))


def section_delta(cfg: BenchConfig) -> dict[str, Any]:
    """Weekly deltas (10 changed + 10 added) end to end against a full rebuild of embeddings and indexes."""
    from anime_pipeline.bench.delta import bench_delta

    _need(cfg.artifacts / "manifest.json", "anime-build index")
    raw = bench_delta(
        cfg.artifacts, n_changed=10, n_added=10, threads=cfg.threads, full_sample=cfg.delta_full_sample
    )
    steps = raw["delta_steps_s"]
    runs = int(raw["runs"])
    reliability = _delta_reliability(cfg)
    return {
        # Crash at every write, double delivery, bad upstream data, swap under load (`delta_faults`).
        "reliability": reliability,
        "changed": raw["changed"],
        "added": raw["added"],
        "catalogue": raw["catalogue"],
        "delta_end_to_end": figure(
            raw["delta_end_to_end_s"],
            "s",
            runs,
            1,
            note="run_delta_update on a catalogue file: validate, diff, embed, indexes, V2 lists, write, "
            "local publish, pointer flip (median)",
        ),
        "delta_embed_index": figure(steps["embed"] + steps["index"], "s", runs, 1),
        "full_rebuild": figure(
            raw["full_rebuild"]["total_s"],
            "s",
            1,
            extrapolated_from=raw["full_rebuild"]["embed_extrapolated_from"],
        ),
        "ratio_full_over_delta_end_to_end": figure(raw["ratio_full_over_delta_end_to_end"], "x", runs),
        "ratio_full_over_delta_embed_index": figure(raw["ratio_embed_index"], "x", runs),
        "dominant_delta_step": raw["dominant_delta_step"],
        "hot_swap": raw["hot_swap"],
        "raw": raw,
    }


def _delta_reliability(cfg: BenchConfig) -> dict[str, Any]:
    from anime_pipeline.bench.api import aws_env, moto_server
    from anime_pipeline.bench.delta_faults import reliability_suite

    # The moto server takes any credentials; set placeholders only where none are configured (the
    # spawned child runs of the suite inherit them).
    for key, value in aws_env().items():
        os.environ.setdefault(key, value)
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        started = time.perf_counter()
        report = reliability_suite(
            cfg.artifacts, Path(tmp), endpoint, sample=8 if cfg.mode == "quick" else None
        )
        report["seconds"] = round(time.perf_counter() - started, 1)
        return report


def section_layers(cfg: BenchConfig) -> dict[str, Any]:
    """Bytes of each layer and function against Lambda's unzipped limit (what exists on disk now)."""
    from anime_pipeline.layers import LayersConfig, measure

    _need(cfg.artifacts / "manifest.json", "anime-build index")
    report = measure(LayersConfig(deps_dir=cfg.deps_dir, artifacts_dir=cfg.artifacts, install=False))
    worst_name, worst_total = report.worst_function
    deps_built = cfg.deps_dir.exists()
    total_40k: dict[str, Any] | None = None
    if cfg.artifacts_40k is not None and (cfg.artifacts_40k / "manifest.json").is_file():
        big = measure(LayersConfig(deps_dir=cfg.deps_dir, artifacts_dir=cfg.artifacts_40k, install=False))
        total_40k = figure(
            big.worst_function[1], "bytes", 1, note=f"the same with {cfg.artifacts_40k} (make layers-40k)"
        )
    return {
        "limit": figure(LAMBDA_LIMIT_BYTES, "bytes", 1),
        "layers": {name: figure(size, "bytes", 1) for name, size in report.layer_totals.items()},
        "function_code": {name: figure(size, "bytes", 1) for name, size in report.function_code.items()},
        "worst_function": worst_name,
        "total": figure(worst_total, "bytes", 1, note="largest function code + all layers"),
        "headroom": figure(LAMBDA_LIMIT_BYTES - worst_total, "bytes", 1),
        **({} if total_40k is None else {"total_40k": total_40k}),
        "within_limit": report.ok,
        "dependencies_layer_built": deps_built,
        **(
            {}
            if deps_built
            else {"note": f"{cfg.deps_dir} not built (anime-build layers): total excludes dependencies"}
        ),
    }


def _numbers(value: Any) -> Any:
    """The numeric leaves of a report (strings such as paths and descriptions dropped)."""
    if isinstance(value, dict):
        kept = {k: _numbers(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value
    return None


def section_quality(cfg: BenchConfig) -> dict[str, Any]:
    """The evaluation report's quality numbers per method (dev recall, triplet accuracy, teacher recall),
    and free-text search hit@10 / MRR (`search_eval`) measured now on the bundle benchmarked."""
    from anime_pipeline.evaluation import search_eval

    path = _need(cfg.eval_report, "anime-build evaluate")
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        "report": str(path),
        "catalogue_size": report.get("catalogue", {}).get("size"),
        "k": report.get("k"),
        "methods": _numbers(report.get("methods", {})),
        "references": _numbers(report.get("references", {})),
        "dev": report.get("dev"),
        "final_config_source": report.get("final", {}).get("config_source"),
        # Measured here rather than read from the report: seconds, and never older than the bundle or
        # the query set. `{"skipped": why}` when it cannot run (--quick: the query set names
        # MyAnimeList anime the synthetic catalogue lacks).
        "search": search_eval.report_section(cfg.artifacts),
    }


def configurations(cfg: BenchConfig, quality: dict[str, Any] | None) -> dict[str, Any]:
    """The quality keys of the default and the story-text build side by side (`configurations`)."""
    from anime_pipeline.evaluation.quality import configuration_entry

    measured = (quality or {}).get("search") if (quality or {}).get("status") == "ok" else None
    out: dict[str, Any] = {}
    for name, paths in (("default", cfg.default_paths), ("storytext", cfg.storytext_paths)):
        if paths is None:
            out[name] = {"status": "missing", "reason": f"not measured in {cfg.mode} mode"}
            continue
        try:
            # The quality section already searched the benchmarked bundle: not measured twice.
            reuse = measured if paths.artifacts_dir.resolve() == cfg.artifacts.resolve() else None
            out[name] = configuration_entry(paths, search=reuse)
        except Exception as exc:  # one configuration's broken inputs must not hide the other's numbers
            out[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    return out


SECTION_FUNCTIONS: dict[str, Callable[[BenchConfig], dict[str, Any]]] = {
    "teacher": section_teacher,
    "triplets": section_triplets,
    "embedding": section_embedding,
    "index": section_index,
    "api": section_api,
    "load": section_load,
    "delta": section_delta,
    "layers": section_layers,
    "quality": section_quality,
}


# ---------------------------------------------------------------------------------------------
# quick mode inputs
# ---------------------------------------------------------------------------------------------


def prepare_quick(root: Path, n: int = 2000, seed: int = 0) -> BenchConfig:
    """Build every input on a synthetic `n`-anime catalogue with a tiny real ONNX model under `root`."""
    from anime_pipeline.evaluation.report import EvaluateInputs, evaluate
    from anime_pipeline.synthetic import synthetic_catalogue
    from anime_pipeline.teacher_stage import compute_neighbours
    from anime_pipeline.tiny_model import make_tiny_bundle
    from anime_pipeline.triplets import TripletConfig, mine_triplets
    from anime_recommender.text import anime_text

    catalogue = synthetic_catalogue(n, seed)
    work = root / "work"
    catalogue_path = work / "catalogue" / "catalogue.jsonl.gz"
    catalogue_path.parent.mkdir(parents=True, exist_ok=True)
    catalogue.save(catalogue_path)
    lists = compute_neighbours(catalogue, k=100).lists
    neighbours = work / "teacher" / "neighbours_v2.npz"
    neighbours.parent.mkdir(parents=True, exist_ok=True)
    lists.save(neighbours)
    triplets = work / "triplets" / "triplets.npz"
    mine_triplets(catalogue, lists, TripletConfig(n_triplets=20_000)).save(triplets)
    artifacts = make_tiny_bundle(catalogue, root / "layer", threads=1)

    from anime_recommender.encoder import OnnxEncoder

    vectors = OnnxEncoder.load(artifacts / "model", threads=1).encode([anime_text(a) for a in catalogue])
    vec_dir = work / "models" / "vectors"
    vec_dir.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(catalogue.ids, dtype=np.int64)
    paths = {}
    for name, space in (("v4_int8", "v4"), ("v3", "v3")):
        paths[name] = vec_dir / f"{name}.npz"
        np.savez(paths[name], ids=ids, vectors=vectors[space])
    evaluate(
        EvaluateInputs(
            catalogue=catalogue_path,
            out_dir=work / "eval",
            vectors=paths,
            neighbours=neighbours,
            triplets=triplets,
            labels={"note": "bench --quick: tiny random model, synthetic catalogue"},
        )
    )
    return BenchConfig(
        mode="quick",
        catalogue=catalogue_path,
        neighbours=neighbours,
        triplets_path=triplets,
        artifacts=artifacts,
        eval_report=work / "eval" / "report.json",
        deps_dir=REPO_ROOT / "layers" / "dependencies" / "python",
        teacher_synthetic_n=4000,
        teacher_runs=3,
        teacher_warmup=1,
        triplets_n=20_000,
        triplet_runs=3,
        embed_texts=256,
        embed_runs=3,
        index_runs=3,
        index_warmup=1,
        recall_queries=200,
        api_runs=30,
        load_requests=1000,
        load_connections=8,
        load_max_seconds=60.0,
        delta_full_sample=None,
        threads=2,
        # `configurations`: the quick build as `default` (its report's quality keys); no story-text build.
        default_paths=BuildPaths(work=work, artifacts_layer=artifacts.parent),
    )


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run_bench(cfg: BenchConfig, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Run the sections; each is ok, skipped (missing inputs, with the reason) or failed (the error)."""
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": cfg.mode,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "inputs": {
            "catalogue": str(cfg.catalogue),
            "artifacts": str(cfg.artifacts),
            "eval_report": str(cfg.eval_report),
        },
        "conventions": "each figure: value, unit, runs (measured), warmup_runs; timings are medians",
        "summary": {},
        "sections": {},
    }
    for name in progress(sections, desc="bench", unit="section"):
        t0 = time.perf_counter()
        try:
            # The cost is priced from the sections measured before it, not measured itself.
            measure = (
                (lambda _cfg: section_cost(doc["sections"])) if name == "cost" else SECTION_FUNCTIONS[name]
            )
            body = {"status": "ok", **measure(cfg)}
        except Skip as exc:
            body = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:  # one broken stage must not hide the other numbers
            body = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "where": traceback.format_exc(limit=3)[-2000:],
            }
        body["section_seconds"] = round(time.perf_counter() - t0, 2)
        doc["sections"][name] = body
    doc["summary"] = summarise(doc["sections"], parity=cfg.parity)
    if "quality" in sections:
        doc["configurations"] = configurations(cfg, doc["sections"].get("quality"))
    doc["seconds"] = round(time.perf_counter() - started, 1)
    return doc


def _default_output(paths: BuildPaths, quick: bool) -> Path:
    return paths.work / "bench" / ("bench-quick.json" if quick else "bench.json")


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build bench`: print the JSON, write it; exit 1 if a section failed."""
    paths = BuildPaths.from_env()
    output = Path(args.output) if args.output else _default_output(paths, args.quick)
    sections = tuple(args.only.split(",")) if args.only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        names = ", ".join(sorted(unknown))
        sys.stderr.write(f"unknown sections: {names} (choose from {', '.join(SECTIONS)})\n")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="anime-bench-")) if args.quick else None
    try:
        if tmp is not None:
            t0 = time.perf_counter()
            cfg = prepare_quick(tmp)
            prepare_s = round(time.perf_counter() - t0, 1)
        else:
            storytext = None
            if args.storytext_work or args.storytext_layer:
                from anime_pipeline.evaluation.quality import storytext_paths

                storytext = storytext_paths(
                    Path(args.storytext_work) if args.storytext_work else None,
                    Path(args.storytext_layer) if args.storytext_layer else None,
                )
            cfg, prepare_s = full_config(paths, storytext), 0.0
        doc = run_bench(cfg, sections)
        doc["prepare_seconds"] = prepare_s
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(doc, indent=2, default=str)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    sys.stderr.write(f"wrote {output}\n")
    return 1 if any(s["status"] == "failed" for s in doc["sections"].values()) else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build bench`."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark every stage and the API; prints one JSON document (and writes it)",
        description="Runs on the default catalogue's artifacts (.work/, layers/artifacts/anime-artifacts): "
        "teacher pairs/s + peak RSS (catalogue and synthetic 40k), triplet mining time, int8 encoder "
        "texts/s (1 and 2 threads), index build time + recall@10, cold-start init, p50/p95 per route "
        "(uncached and cached via moto DynamoDB), load on the local server (requests/s, p99), delta vs "
        "full rebuild, layer sizes vs 262,144,000 bytes, and the evaluation report's quality numbers. "
        "Sections whose inputs are missing are reported as skipped. --quick builds a synthetic "
        "catalogue, a tiny ONNX model and a bundle in a temp dir (< 2 min).",
    )
    p.add_argument("--quick", action="store_true", help="synthetic catalogue + tiny model in a temp dir")
    p.add_argument("--output", help="also write the JSON here (default .work/bench/bench[-quick].json)")
    p.add_argument("--only", help=f"comma-separated subset of: {','.join(SECTIONS)}")
    p.add_argument(
        "--storytext-work",
        help="the story-text build's work dir for `configurations` "
        "(default $ANIME_STORYTEXT_WORK_DIR, else .work-storytext)",
    )
    p.add_argument(
        "--storytext-layer",
        help="its artifacts layer dir "
        "(default $ANIME_STORYTEXT_ARTIFACTS_LAYER_DIR, else layers/artifacts-storytext)",
    )
    p.set_defaults(func=run)


if __name__ == "__main__":
    from anime_pipeline.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
