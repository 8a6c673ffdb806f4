"""Sanitising: hostile text is cleaned and counted, clean text passes untouched, tags normalised."""

from __future__ import annotations

import copy
from pathlib import Path

from loaders_support import BEBOP, RECORDS, load, pretty, write

from anime_recommender.catalogue import Catalogue
from anime_recommender.loaders import normalise_tags


def test_hostile_text_is_sanitised_and_counted(tmp_path: Path) -> None:
    hostile = copy.deepcopy(BEBOP)
    hostile["title"] = (
        "  Cowboy\x00 \u202eBebop\u200b\r\n(\u0065\u0301dition)  "  # NUL, RLO, ZWSP, e+combining
    )
    hostile["synonyms"] = ["x" * 5000, "\ud800lone surrogate", "dup", "dup"]
    hostile["tags"] = ["ACTION", "Action ", "sci\u00adfi", "\x07bell"]
    result = load(write(tmp_path, "r.json", pretty([hostile])))
    anime = result.catalogue.by_id(1)
    assert anime.title == "Cowboy Bebop (\u00e9dition)"  # NFC composed, invisibles gone, spaces collapsed
    assert anime.tags == ("action", "scifi", "bell")
    assert len(anime.synonyms[0]) == 500  # capped
    assert anime.synonyms[1:] == ("lone surrogate", "dup")
    assert result.report.sanitised_records == 1
    [entry] = result.report.sanitised
    assert (entry.position, entry.id) == ("data[0]", 1)
    assert entry.fields == ["synonyms", "synonyms:dedup", "tags", "tags:dedup", "title"]
    assert result.report.sanitised_fields == dict.fromkeys(entry.fields, 1)
    # The sanitised catalogue must survive the UTF-8 artifact round trip (a lone surrogate would not).
    out = tmp_path / "c.jsonl.gz"
    result.catalogue.save(out)
    assert Catalogue.load(out).by_id(1).title == anime.title


def test_unicode_titles_pass_untouched(tmp_path: Path) -> None:
    result = load(write(tmp_path, "r.json", pretty(RECORDS)))
    assert result.report.sanitised_records == 1  # only Bebop's messy tags
    assert result.report.sanitised_fields == {"tags": 1, "tags:dedup": 1}


def test_normalise_tags_keeps_order() -> None:
    assert normalise_tags([" Sci-Fi", "ACTION", "sci-fi", "", "Slice  of Life"]) == (
        "sci-fi",
        "action",
        "slice of life",
    )
