"""The search evaluation (`search_eval`): its served row is the API's /search path, and its report section."""

from __future__ import annotations

import json
from pathlib import Path

from anime_pipeline.evaluation.search_eval import (
    ALTERNATING_LINES,
    SearchSystems,
    baseline_keys,
    expected_split,
    load_queries,
    markdown_lines,
    report_section,
)
from anime_recommender.catalogue import Catalogue

QUERIES = [
    {"query": "space bounty hunters with a jazz soundtrack", "targets": [1], "split": "tune"},
    {"query": "90s mecha like Evangelion", "targets": [32], "split": "tune"},
    {"query": "a notebook that kills, no romance", "targets": [1535], "split": "holdout"},
    {"query": "recent music anime", "targets": [40001, 7791], "split": "holdout"},
]


def _query_file(tmp_path: Path) -> Path:
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUERIES), encoding="utf-8")
    return path


def test_served_row_is_the_engines_ranking(bundle_dir: Path, tmp_path: Path) -> None:
    # Given the systems over a bundle, when a query goes through the API service and through the
    # engine's parse + pools + rank with the same weights
    systems = SearchSystems(bundle_dir)
    for q in load_queries(_query_file(tmp_path)):
        served = systems.served(q.query)
        ranked = systems.ranked("hybrid_understanding", q.query, systems.ranker.weights)
        # Then both give the same top 10: the offline figure is the served path's
        assert served == ranked and served, q.query
    assert systems.served("space bounty hunters with a jazz soundtrack")[0] == 1


def test_report_section_has_four_systems_per_split(bundle_dir: Path, tmp_path: Path) -> None:
    section = report_section(bundle_dir, _query_file(tmp_path))
    assert set(section["modes"]) == {"dense", "lexical", "hybrid", "hybrid_understanding"}
    for rows in section["modes"].values():
        assert set(rows) == {"all", "tune", "holdout"}
        assert 0.0 <= rows["all"]["hit@10"] <= 1.0 and rows["all"]["n"] == len(QUERIES)
    table = "\n".join(markdown_lines(section))
    assert "| hybrid_understanding |" in table and "holdout MRR" in table
    # An absent bundle or unknown targets skip the section instead of failing the evaluate stage
    assert "skipped" in report_section(tmp_path / "nothing")
    assert "not in the catalogue" in report_section(bundle_dir)["skipped"]
    assert markdown_lines(report_section(None))[-1] == "Skipped: no bundle given"


def test_query_set_follows_the_split_rule() -> None:
    # The documented split rule: the first 81 lines alternate (odd tune, even holdout); every later
    # line (issue 22's plot-detail queries) is holdout
    queries = load_queries()
    assert [q.split for q in queries] == [expected_split(i + 1) for i in range(len(queries))]
    assert [expected_split(i) for i in (1, 2, 80, 81, 82, 83)] == [
        "tune",
        "holdout",
        "holdout",
        "tune",
        "holdout",
        "holdout",
    ]
    assert sum(q.split == "holdout" for q in queries[ALTERNATING_LINES:]) >= 40
    assert len({q.query for q in queries}) == len(queries)


def test_bm25_baseline_is_reported_beside_the_served_rows_and_without_a_bundle(
    bundle_dir: Path, tmp_path: Path, tiny_catalogue: Catalogue
) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUERIES[:3]), encoding="utf-8")
    # With a bundle: the baseline row sits beside the four systems, in the JSON and the table
    section = report_section(bundle_dir, path)
    assert set(section["baseline_bm25"]) >= {"all", "tune", "holdout", "prior_weight"}
    assert "| baseline_bm25 |" in "\n".join(markdown_lines(section))
    assert (
        baseline_keys(section)["baseline_bm25_hit_at_10_tune"] == section["baseline_bm25"]["tune"]["hit@10"]
    )
    # Without one: the served rows are skipped, the baseline still runs on the catalogue given
    alone = report_section(None, path, catalogue=tiny_catalogue)
    assert "skipped" in alone and alone["baseline_bm25"]["all"]["n"] == 3
    assert "| baseline_bm25 |" in "\n".join(markdown_lines(alone))
