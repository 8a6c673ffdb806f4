"""The bench's flat summary (`bench.summary`): the search quality keys come from the search report."""

from __future__ import annotations

import json
from pathlib import Path

from anime_pipeline.bench.summary import SEARCH_QUALITY_KEYS, SUMMARY_KEYS, summarise
from anime_pipeline.evaluation.search_eval import report_section

QUERIES = [
    {"query": "space bounty hunters with a jazz soundtrack", "targets": [1], "split": "tune"},
    {"query": "a notebook that kills, no romance", "targets": [1535], "split": "holdout"},
]


def test_search_quality_keys_are_filled_from_the_search_report(bundle_dir: Path, tmp_path: Path) -> None:
    # Given the quality section carrying a search report measured on a bundle
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in QUERIES), encoding="utf-8")
    search = report_section(bundle_dir, queries)
    summary = summarise({"quality": {"status": "ok", "search": search}})
    # Then every search key is in the summary, with the report's own numbers
    assert len(SEARCH_QUALITY_KEYS) == 9 and set(SEARCH_QUALITY_KEYS) <= set(summary)
    assert list(summary) == list(SUMMARY_KEYS)
    modes = search["modes"]
    for mode in ("dense", "lexical", "hybrid", "hybrid_understanding"):
        assert summary[f"search_{mode}_hit_at_10"] == modes[mode]["all"]["hit@10"]
        assert summary[f"search_{mode}_mrr"] == modes[mode]["all"]["mrr"]
    holdout = modes["hybrid_understanding"]["holdout"]["hit@10"]
    assert summary["search_hybrid_understanding_holdout_hit_at_10"] == holdout
    assert summary["search_hybrid_understanding_hit_at_10"] == 1.0  # both queries found on this bundle


def test_search_quality_keys_are_null_when_search_was_skipped(tmp_path: Path) -> None:
    skipped = {"quality": {"status": "ok", "search": report_section(tmp_path / "no-bundle")}}
    for sections in (skipped, {"quality": {"status": "failed"}}, {}):
        summary = summarise(sections)
        assert all(summary[key] is None for key in SEARCH_QUALITY_KEYS)
