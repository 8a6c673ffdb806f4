"""The search evaluation (`search_eval`): its served row is the API's /search path, and its report section."""

from __future__ import annotations

import json
from pathlib import Path

from anime_pipeline.search_eval import SearchSystems, load_queries, markdown_lines, report_section

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


def test_query_set_alternates_tune_and_holdout() -> None:
    # The documented split rule: odd lines tune, even lines holdout (new queries keep alternating)
    queries = load_queries()
    assert [q.split for q in queries] == [("tune", "holdout")[i % 2] for i in range(len(queries))]
    assert len({q.query for q in queries}) == len(queries)
