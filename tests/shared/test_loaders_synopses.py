"""Synopsis files keyed by MyAnimeList id: formats, cleaning, bad rows, and the merge into the catalogue."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from anime_recommender.catalogue import Catalogue
from anime_recommender.loaders import CatalogueFormatError, fill_synopses, merge_synopses, read_synopses
from anime_recommender.loaders.synopses import MAX_SYNOPSIS_CHARS, clean_synopsis
from anime_recommender.search.lexical import build_lexical_index

DATA = Path(__file__).parent.parent / "data"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_fixture_csv_merges_into_the_tiny_catalogue(tiny_catalogue: Catalogue) -> None:
    # Given the Kaggle-style fixture (MAL_ID, Name, sypnopsis) with four bad rows at its end
    found, report = read_synopses(DATA / "synopses.csv")
    # When it is merged
    merged = merge_synopses(tiny_catalogue, found, report)
    # Then every real title has its text, and each bad row is counted under its reason
    assert report.format == "csv" and report.rows_read == 32 and report.merged == 28
    assert dict(report.skipped_by_reason) == {
        "bad id": 1,
        "empty synopsis": 1,
        "duplicate id": 1,
        "unknown id": 1,
    }
    assert {s.position for s in report.skipped} == {"line 31", "line 32", "line 33", "id 99999"}
    assert sum(a.synopsis is not None for a in merged) == 28
    assert merged.by_id(40000).synopsis is None and merged.by_id(40001).synopsis is None
    death_note = merged.by_id(1535).synopsis
    assert death_note is not None and "notebook" in death_note
    assert [a.id for a in merged] == tiny_catalogue.ids


def test_keep_existing_leaves_text_the_catalogue_has(tiny_catalogue: Catalogue) -> None:
    # Given a catalogue with CSV text, and the JSONL's (other text for 6, 1535, 9253)
    csv_text, csv_report = read_synopses(DATA / "synopses.csv")
    told = merge_synopses(tiny_catalogue, csv_text, csv_report)
    jsonl_text, report = read_synopses(DATA / "synopses.jsonl")
    # When merged keeping what is there, then nothing is overwritten; by default the file wins
    kept = merge_synopses(told, jsonl_text, report, keep_existing=True)
    assert report.merged == 0 and [a.synopsis for a in kept] == [a.synopsis for a in told]
    assert merge_synopses(told, jsonl_text, report).by_id(1535).synopsis == jsonl_text[1535]


def test_fill_sets_only_missing_text_and_returns_the_catalogue_when_none(tiny_catalogue: Catalogue) -> None:
    csv_text, report = read_synopses(DATA / "synopses.csv")
    told = merge_synopses(tiny_catalogue, {1: csv_text[1]}, report)
    filled, count = fill_synopses(told, {1: "Other text.", 1535: csv_text[1535], 99999: "Not listed."})
    assert count == 1 and filled.by_id(1).synopsis == csv_text[1]  # its own text wins
    assert filled.by_id(1535).synopsis == csv_text[1535] and 99999 not in filled
    unchanged, none = fill_synopses(told, {1: "Other text."})
    assert unchanged is told and none == 0


def test_the_fixture_jsonl_skips_placeholders_and_broken_lines() -> None:
    found, report = read_synopses(DATA / "synopses.jsonl")
    assert report.format == "jsonl" and sorted(found) == [6, 1535, 9253]
    assert dict(report.skipped_by_reason) == {"empty synopsis": 1, "no synopsis": 1, "not a JSON object": 1}
    assert [s.position for s in report.skipped] == ["line 4", "line 5", "line 6"]


def test_text_is_cleaned_of_markup_attributions_and_invisible_characters() -> None:
    found, report = read_synopses(DATA / "synopses.csv")
    assert found[1].endswith("Jazz scores every chase.")  # "[Written by MAL Rewrite]" dropped
    assert found[20] == (
        "An orphan who carries a fox demon sealed inside his body dreams of becoming the leader of his "
        "ninja village. He trains with a rival and a classmate under a lazy mentor."
    )  # <br><br> and "(Source: ANN)" gone
    assert '"biggest bounty ever"' in found[5]  # &quot; decoded
    assert report.cleaned == 3
    text, cut = clean_synopsis("A\u200b <i>spy</i>\x07 family &amp;\n\n a   dog. [Written by MAL Rewrite]")
    assert (text, cut) == ("A spy family & a dog.", False)


def test_long_text_is_capped_at_a_sentence_and_counted(tmp_path: Path, tiny_catalogue: Catalogue) -> None:
    long_text = "A sentence of story text that goes on. " * 80  # ~3,100 characters
    huge = "word " * 5_000  # 25,000 characters: above the hard cap, hostile
    path = _write(tmp_path / "s.csv", f'id,synopsis\n1,"{long_text}"\n5,"{huge}"\n')
    found, report = read_synopses(path)
    assert len(found[1]) <= MAX_SYNOPSIS_CHARS and found[1].endswith("goes on.")
    assert report.truncated == 1 and dict(report.skipped_by_reason) == {"synopsis too long": 1}


@pytest.mark.parametrize(
    ("header", "sep"),
    [
        ("MAL_ID,Name,sypnopsis", ","),  # Anime Recommendation Database 2020 (anime_with_synopsis.csv)
        ("anime_id,Name,Synopsis", ","),  # anime-dataset-2023
        ("uid,title,synopsis", ","),  # the "Anime Dataset" export
        ("id,synopsis,extra", ","),
        ("mal_id\tsynopsis", "\t"),
    ],
)
def test_common_export_headers_are_recognised(tmp_path: Path, header: str, sep: str) -> None:
    names = header.split(sep)
    row = dict.fromkeys(names, "x")
    row[names[0]] = "1535"
    row[next(n for n in names if n.lower() in ("synopsis", "sypnopsis"))] = "A notebook that kills."
    path = tmp_path / "s.csv.gz"
    path.write_bytes(gzip.compress(f"{header}\n{sep.join(row[n] for n in names)}\n".encode()))
    found, report = read_synopses(path)
    assert found == {1535: "A notebook that kills."} and report.compression == "gzip"


def test_bad_rows_are_skipped_with_their_reason(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.csv",
        "anime_id,synopsis\n-3,Negative.\n12.0,Float id from a spreadsheet.\n7\n,No id.\n"
        "2000000000,Beyond MAL ids.\n8,   \n",
    )
    found, report = read_synopses(path)
    assert found == {12: "Float id from a spreadsheet."}
    assert dict(report.skipped_by_reason) == {"bad id": 3, "short row": 1, "empty synopsis": 1}


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("Name,Score\nCowboy Bebop,8.78\n", "line 1"),  # no id/synopsis columns
        ('id,synopsis\n1,fine\n2,"never closed\n3,more\n', "line 4"),  # unterminated quote
        ("", "line 1"),
        ("{broken\n{also broken\n", "whole file"),  # JSON lines of which none parses
    ],
)
def test_a_malformed_file_is_an_error_naming_file_and_line(tmp_path: Path, content: str, where: str) -> None:
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(CatalogueFormatError) as raised:
        read_synopses(path)
    assert raised.value.path == str(path) and raised.value.position == where


def test_a_word_only_in_the_synopsis_finds_the_anime_lexically(tiny_catalogue: Catalogue) -> None:
    found, report = read_synopses(DATA / "synopses.csv")
    told = merge_synopses(tiny_catalogue, found, report)
    assert build_lexical_index(tiny_catalogue).search("notebook", 3) == []
    hits = build_lexical_index(told).search("notebook", 3)
    assert hits[0].anime_id == 1535 and hits[0].terms == ("notebook",)
    assert build_lexical_index(told).search("corgi", 1)[0].anime_id == 1


def test_the_story_text_reaches_the_single_anime_response_only(tiny_catalogue: Catalogue) -> None:
    from anime_recommender.api.models import AnimePublic, AnimeSummary

    found, report = read_synopses(DATA / "synopses.csv")
    bebop = merge_synopses(tiny_catalogue, found, report).by_id(1)
    assert AnimePublic.of(bebop).synopsis == found[1]
    assert "synopsis" not in AnimeSummary.of(bebop).model_dump()  # list items stay small
    assert AnimePublic.of(tiny_catalogue.by_id(1)).synopsis is None
