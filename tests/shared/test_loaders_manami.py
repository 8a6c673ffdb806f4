"""manami records: a malformed record is skipped with its reason; all malformed is a file error."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loaders_support import BEBOP, MOVIE, NO_MAL, load, pretty, write

from anime_recommender.loaders import CatalogueFormatError


def test_all_records_malformed_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="all 2 records"):
        load(write(tmp_path, "r.json", pretty([1, "x"])))


BAD_RECORDS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing title", lambda r: r.pop("title"), "title: missing"),
    ("blank title", lambda r: r.update(title=" \u200b\t "), "title: empty"),
    ("title wrong type", lambda r: r.update(title=123), "title: expected a string"),
    ("no sources", lambda r: r.update(sources=[]), "sources: missing"),
    ("bad mal id", lambda r: r.update(sources=["https://myanimelist.net/anime/abc"]), "id: bad MyAnimeList"),
    ("zero mal id", lambda r: r.update(sources=["https://myanimelist.net/anime/0"]), "id: bad MyAnimeList"),
    ("score text", lambda r: r.update(score={"arithmeticGeometricMean": "8.5"}), "score: expected a number"),
    ("score absurd", lambda r: r.update(score={"arithmeticGeometricMean": 85.0}), "score: 85.0 outside"),
    ("score nan", lambda r: r.update(score={"arithmeticGeometricMean": float("nan")}), "score: nan outside"),
    ("episodes text", lambda r: r.update(episodes="26"), "episodes: expected an integer"),
    ("episodes bool", lambda r: r.update(episodes=True), "episodes: expected an integer"),
    ("episodes absurd", lambda r: r.update(episodes=10**9), "episodes: 1000000000 outside"),
    ("year absurd", lambda r: r.update(animeSeason={"season": "SPRING", "year": 3021}), "year: 3021 outside"),
    ("season object", lambda r: r.update(animeSeason=[1998]), "animeSeason: expected an object"),
    ("tags not list", lambda r: r.update(tags="action"), "tags: expected a list"),
    ("tag wrong type", lambda r: r.update(tags=["action", 5]), "tags: expected a string"),
    ("huge title", lambda r: r.update(title="A" * 1_000_000), "title: string of 1000000 characters"),
    ("too many tags", lambda r: r.update(tags=[f"t{i}" for i in range(10_000)]), "tags: 10000 items"),
    ("record not object", lambda r: None, "record: expected an object"),
]


@pytest.mark.parametrize(("case", "mutate", "reason"), BAD_RECORDS, ids=[c for c, _, _ in BAD_RECORDS])
def test_malformed_record_is_skipped_with_reason(
    tmp_path: Path, case: str, mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    bad: Any = copy.deepcopy(BEBOP)
    bad["sources"] = ["https://myanimelist.net/anime/42"]
    mutate(bad)
    if case == "record not object":
        bad = ["not", "an", "object"]
    result = load(write(tmp_path, "r.json", pretty([MOVIE, bad, NO_MAL])))
    assert len(result.catalogue) == 2 and 1 not in result.catalogue and 42 not in result.catalogue
    [skip] = result.report.skipped
    assert skip.position == "data[1]"
    assert skip.reason.startswith(reason), skip.reason
    if isinstance(bad, dict) and case not in ("bad mal id", "zero mal id", "no sources"):
        assert skip.id == 42
    report = result.report.to_dict()
    assert report["skipped_count"] == 1 and report["skipped"][0]["reason"] == skip.reason
    assert "1 skipped" in result.report.summary()
    assert result.report.sanitised == []  # a skipped record is not also counted as sanitised
