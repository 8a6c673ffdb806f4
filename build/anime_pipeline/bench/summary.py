"""The flat `summary` of `bench-results.json`: headline numbers under stable, documented keys.

Scripts and dashboards read these keys instead of walking the sections, so they only ever change
together with the README's table ("Benchmark keys"). Every key is always present; its value is None
when the section behind it was skipped or failed (or, like `int8_cosine` in `--quick`, has nothing to
read). Times in ms, sizes in bytes, ratios and accuracies as fractions / multiples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (route, state) pairs reported as `{route}_{state}_p50_ms` / `_p95_ms` (`bench.api`'s routes).
ROUTE_STATES: tuple[tuple[str, str], ...] = (
    ("similar", "uncached"),
    ("similar", "cached"),
    ("similar_filtered", "uncached"),
    ("similar_filtered", "cached"),
    ("search", "uncached"),
    ("search", "cached"),
    ("search", "cached_dynamodb"),
    ("recommendations", "uncached"),
    ("recommendations", "cached"),
    ("recommendations_import", "uncached"),
    ("anime_get", "uncached"),
    ("autocomplete", "uncached"),
    ("health", "uncached"),
)
CACHE_TIERS: tuple[str, ...] = ("l1_hit", "dynamodb_hit", "miss")

# Free-text search systems (`search_eval.MODES`) as named in the keys, and what each one is.
SEARCH_SYSTEMS: dict[str, str] = {
    "dense": "dense only (the encoder's text search)",
    "lexical": "lexical only (BM25 on the raw query)",
    "hybrid": "hybrid ranking without query understanding",
    "hybrid_understanding": "hybrid + query understanding (the served /search path)",
}
# Search quality on the descriptive query set, from the quality section's `search` (search_eval).
SEARCH_QUALITY_KEYS: dict[str, str] = {
    **{
        f"search_{mode}_{metric}": f"{what}: {label} on all queries (fraction)"
        for mode, what in SEARCH_SYSTEMS.items()
        for metric, label in (("hit_at_10", "hit@10"), ("mrr", "MRR@10"))
    },
    "search_hybrid_understanding_holdout_hit_at_10": "the served path's hit@10, holdout half (fraction)",
}

SUMMARY_KEYS: dict[str, str] = {
    "teacher_pairs_per_s": "V2 all-pairs top-100 on the bundle's catalogue (pairs/s)",
    "teacher_synthetic_pairs_per_s": "the same on the synthetic catalogue (40k; 4k in --quick)",
    "triplet_accuracy": "shipped int8 V4 on the held-out triplets (fraction)",
    "int8_cosine": "mean cosine int8 vs fp32 V4 over the catalogue, from the export's parity.json",
    "embedding_texts_per_s": "int8 encoder with 2 threads (texts/s)",
    "index_recall_at_10": "V4 index recall@10 against exact search",
    "index_v3_recall_at_10": "V3 flat int8 index recall@10 against exact float search",
    "init_ms": "cold start under the Lambda RIE + awslambdaric (python3.12, template layout): process "
    "start until the runtime asks for its first event, median of 9 fresh starts (in-process worker "
    "when no runtime; see note)",
    "first_request_ms": "first GET /anime/{id}/similar?k=10 after that init (median of the same starts)",
    "init_ms_storytext": "the same cold start with the story-text build's bundle (None when not built)",
    "first_request_ms_storytext": "its first request, as first_request_ms",
    **{
        f"{route}_{state}_{q}_ms": f"{route} {state.replace('_', ' ')}, {q} through the Lambda handler"
        for route, state in ROUTE_STATES
        for q in ("p50", "p95")
    },
    **{
        f"cache_{tier}_{q}_ms": f"/search {tier.replace('_', ' ')}, {q} (same route, three cache states)"
        for tier in ("l1_hit", "dynamodb_hit", "miss")
        for q in ("p50", "p95")
    },
    "import_refusal_max_ms": "POST /recommendations/import: slowest refusal of a hostile list (median of 3)",
    "import_refusal_peak_alloc_mb": "the same: largest peak of Python allocations while refusing one (MB)",
    "load_requests_per_s": "local server under 8 concurrent connections",
    "load_p99_ms": "the same, p99 latency",
    "delta_ratio": "full rebuild time / delta update end to end (x)",
    "delta_crash_points_tried": "delta runs killed at a write (every write of one run; 8 in --quick)",
    "delta_crash_points_survived": "of those: the old version kept its answers, the next run published",
    "delta_versions_lost": "crash trials leaving the pointer on a broken version or the old one unserved",
    "delta_double_delivery_versions_published": "versions made current by two deliveries of one week (1)",
    "delta_swap_errors": "failed or version-mixed answers, 2,000 requests across a hot swap",
    "delta_bad_inputs_refused": "bad upstream files refused with their reason, nothing published (of 7)",
    "cost_per_million_requests_usd": "one million requests of the load mix, x86_64, no SnapStart (USD)",
    "cost_per_million_requests_snapstart_usd": "the same with SnapStart restores instead of inits",
    "api_peak_rss_mb": "peak resident set of the API server process under the load section's requests",
    "layer_bytes_default": "largest function + all layers, default catalogue (bytes; limit 262,144,000)",
    "layer_bytes_40k": "the same with make layers-40k's synthetic 40k bundle (None until it is built)",
    **SEARCH_QUALITY_KEYS,
}


def _at(node: Any, *path: str) -> Any:
    """The value at `path`, None when any step is missing; a figure gives its `value`."""
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    if isinstance(node, dict) and "value" in node:
        return node["value"]
    return node if isinstance(node, int | float) and not isinstance(node, bool) else None


def _int8_cosine(parity: Path | None) -> float | None:
    if parity is None or not parity.is_file():
        return None
    value = json.loads(parity.read_text(encoding="utf-8")).get("int8_avx2", {}).get("v4_mean_cosine_vs_fp32")
    return float(value) if isinstance(value, int | float) else None


def summarise(sections: dict[str, Any], parity: Path | None = None) -> dict[str, Any]:
    """The flat summary (exactly `SUMMARY_KEYS`, in that order) of a bench document's sections."""
    ok = {name: body for name, body in sections.items() if body.get("status") == "ok"}
    teacher = ok.get("teacher", {})
    synthetic = next((key for key in teacher if key.startswith("synthetic_")), "")
    api = ok.get("api", {})
    values: dict[str, Any] = {
        "teacher_pairs_per_s": _at(teacher, "catalogue", "pairs_per_s"),
        "teacher_synthetic_pairs_per_s": _at(teacher, synthetic, "pairs_per_s"),
        "triplet_accuracy": _at(ok.get("quality"), "methods", "v4_int8", "triplet_accuracy"),
        "int8_cosine": _int8_cosine(parity),
        "embedding_texts_per_s": _at(ok.get("embedding"), "threads_2"),
        "index_recall_at_10": _at(ok.get("index"), "v4", "recall_at_10"),
        "index_v3_recall_at_10": _at(ok.get("index"), "v3", "recall_at_10"),
        "init_ms": _at(api, "init"),
        "first_request_ms": _at(api, "cold_start_first_request"),
        "init_ms_storytext": _at(api, "init_storytext"),
        "first_request_ms_storytext": _at(api, "first_request_storytext"),
        "import_refusal_max_ms": _at(api, "import_refusals", "max_ms"),
        "import_refusal_peak_alloc_mb": _at(api, "import_refusals", "max_peak_alloc_mb"),
        "load_requests_per_s": _at(ok.get("load"), "throughput"),
        "load_p99_ms": _at(ok.get("load"), "p99"),
        "delta_ratio": _at(ok.get("delta"), "ratio_full_over_delta_end_to_end"),
        **{
            f"delta_{name}": _at(ok.get("delta"), "reliability", name)
            for name in (
                "crash_points_tried",
                "crash_points_survived",
                "versions_lost",
                "double_delivery_versions_published",
                "swap_errors",
                "bad_inputs_refused",
            )
        },
        "cost_per_million_requests_usd": _at(ok.get("cost"), "cost_per_million_requests_usd"),
        "cost_per_million_requests_snapstart_usd": _at(
            ok.get("cost"), "cost_per_million_requests_snapstart_usd"
        ),
        "api_peak_rss_mb": _at(ok.get("load"), "peak_rss_mb"),
        "layer_bytes_default": _at(ok.get("layers"), "total"),
        "layer_bytes_40k": _at(ok.get("layers"), "total_40k"),
    }
    search = (ok.get("quality") or {}).get("search", {}).get("modes")
    for mode in SEARCH_SYSTEMS:
        values[f"search_{mode}_hit_at_10"] = _at(search, mode, "all", "hit@10")
        values[f"search_{mode}_mrr"] = _at(search, mode, "all", "mrr")
    values["search_hybrid_understanding_holdout_hit_at_10"] = _at(
        search, "hybrid_understanding", "holdout", "hit@10"
    )
    for route, state in ROUTE_STATES:
        for q in ("p50", "p95"):
            values[f"{route}_{state}_{q}_ms"] = _at(api, "routes", route, state, q)
    for tier in CACHE_TIERS:
        for q in ("p50", "p95"):
            values[f"cache_{tier}_{q}_ms"] = _at(api, "cache_tiers", tier, q)
    return {key: values.get(key) for key in SUMMARY_KEYS}
