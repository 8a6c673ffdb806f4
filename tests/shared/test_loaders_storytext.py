"""Story text merged onto a catalogue: what a user of `anime-build ingest --storytext` would notice."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.loaders import CatalogueFormatError
from anime_recommender.loaders.storytext import (
    MAL_URL,
    merge_storytext,
    merge_tags,
    rating_code,
    read_storytext,
    story_type,
)
from anime_recommender.text import anime_text

# Records written for these tests in the story-text file's shape (not taken from any fixture).
RECORDS: list[dict[str, Any]] = [
    {
        "mal_id": 1,
        "title": "Cowboy Bebop",
        "title_english": "Cowboy Bebop",
        "synonyms": ["カウボーイビバップ", "Kaubōi Bibappu"],
        "type": "TV",
        "year": 1998,
        "season": "spring",
        "episodes": 26,
        "rating": "R - 17+ (violence & profanity)",
        "studios": ["Sunrise"],
        "tags": ["Action", "Sci-Fi", "Science Fiction", "Bounty Hunter", "Space  Travel"],
        "synopsis": "A crew of bounty hunters chases outlaws across the solar system aboard their "
        "ship.\n\n[Written by MAL Rewrite]",
        "related_mal_ids": [5, 1, "x", 17205],
    },
    {
        "mal_id": 5,
        "title": "Cowboy Bebop: Tengoku no Tobira",
        "title_english": "Cowboy Bebop: The Movie",
        "type": "MOVIE",
        "rating": "R",
        "synopsis": "No synopsis information has been added to this title.",
        "related_mal_ids": [1],
    },
    {"mal_id": 900001, "title": "Bebop Coffee Commercial", "type": "CM", "rating": "G - All Ages"},
    {"mal_id": 900002, "type": "TV", "synopsis": "A record with no title at all."},
    {"mal_id": 900003, "title": "Short Gags", "type": "TV_SHORT", "year": "soon", "tags": ["School Life"]},
    {"mal_id": -3, "title": "Broken"},
    {"mal_id": 1, "title": "Duplicate of Cowboy Bebop"},
]


def base_catalogue() -> Catalogue:
    return Catalogue(
        [
            Anime(
                id=1,
                title="Cowboy Bebop",
                type=AnimeType.TV,
                tags=("action", "sci-fi", "space"),
                score=8.78,
                members=1_250_000,
                sources=(MAL_URL.format(1),),
            ),
            Anime(
                id=5,
                title="Cowboy Bebop: Tengoku no Tobira",
                type=AnimeType.UNKNOWN,
                year=2001,
                tags=("action",),
                members=200_000,
                sources=(MAL_URL.format(5),),
            ),
            Anime(id=30, title="Not in the file", type=AnimeType.TV, sources=(MAL_URL.format(30),)),
        ]
    )


@pytest.fixture()
def storytext_file(tmp_path: Path) -> Path:
    path = tmp_path / "story.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in RECORDS).encode()))
    return path


def test_story_text_merges_onto_the_catalogue_by_the_rules(storytext_file: Path) -> None:
    # Given a catalogue and a story-text file keyed by MyAnimeList id
    stories, report = read_storytext(storytext_file)
    # When it is merged without adds
    merged = merge_storytext(base_catalogue(), stories, report)
    bebop, movie = merged.by_id(1), merged.by_id(5)
    # Then tags are one spelling per label, the base's first; near-duplicates collapse
    assert bebop.tags == ("action", "sci-fi", "space", "bounty hunter", "space travel")
    # And the synopsis is cleaned, the English title and rating carried, relations become MAL links
    assert bebop.synopsis is not None and bebop.synopsis.endswith("aboard their ship.")
    assert bebop.title_english == "Cowboy Bebop" and bebop.content_rating == "r"
    assert bebop.studios == ("Sunrise",)
    assert bebop.related == (MAL_URL.format(5), MAL_URL.format(17205))
    # And the base wins where it has a value; the file fills gaps (year, season, type)
    assert bebop.type is AnimeType.TV and bebop.year == 1998 and bebop.season == "spring"
    assert movie.type is AnimeType.MOVIE and movie.year == 2001
    # And a placeholder synopsis is no synopsis
    assert movie.synopsis is None and movie.title_english == "Cowboy Bebop: The Movie"
    # And anime only the file has are counted, not added; the untouched anime is as it was
    assert len(merged) == 3 and report.not_added == 3 and report.matched == 2
    assert merged.by_id(30) == base_catalogue().by_id(30)
    # And bad records are skipped and counted by reason
    assert report.skipped_by_reason["bad id"] == 1 and report.skipped_by_reason["duplicate id"] == 1
    assert report.fields_merged["synopsis"] == 1 and report.fields_merged["related"] == 2


def test_adds_bring_the_anime_only_the_file_has_and_skip_those_without_a_title(storytext_file: Path) -> None:
    stories, report = read_storytext(storytext_file)
    merged = merge_storytext(base_catalogue(), stories, report, adds=True)
    # The commercial joins as a promotional video: kept, never listed by default
    promo = merged.by_id(900001)
    assert promo.type is AnimeType.PROMO and promo.members is None and promo.content_rating == "g"
    assert merged.unlisted_ids() == frozenset({900001})
    assert merged.listed_mask().tolist() == [a.id != 900001 for a in merged]
    # TV_SHORT is TV; a bad year is dropped and counted, the record kept
    short = merged.by_id(900003)
    assert short.type is AnimeType.TV and short.year is None and short.tags == ("school",)
    assert report.skipped_by_reason["bad field"] == 1
    # No title: skipped and counted
    assert 900002 not in merged and report.skipped_by_reason["no title"] == 1
    assert report.added == 2


def test_saved_catalogue_with_story_text_round_trips_and_without_it_is_unchanged(
    storytext_file: Path, tmp_path: Path
) -> None:
    plain = base_catalogue()
    plain.save(tmp_path / "plain.jsonl.gz")
    assert b"title_english" not in gzip.decompress((tmp_path / "plain.jsonl.gz").read_bytes())
    stories, report = read_storytext(storytext_file)
    merged = merge_storytext(plain, stories, report, adds=True)
    merged.save(tmp_path / "story.jsonl.gz")
    loaded = Catalogue.load(tmp_path / "story.jsonl.gz")
    assert list(loaded) == list(merged)
    assert [a.content_hash() for a in loaded] == [a.content_hash() for a in merged]
    # A record the file did not touch keeps the hash it had before story text existed
    assert loaded.by_id(30).content_hash() == plain.by_id(30).content_hash()


def test_encoder_text_names_the_english_title_and_skips_other_scripts(storytext_file: Path) -> None:
    stories, report = read_storytext(storytext_file)
    merged = merge_storytext(base_catalogue(), stories, report)
    text = anime_text(merged.by_id(5))
    assert text.startswith("Cowboy Bebop: Tengoku no Tobira. Also known as Cowboy Bebop: The Movie.")
    assert "カウボーイ" not in anime_text(merged.by_id(1))
    # Without story text the encoder text is exactly what it was
    assert anime_text(base_catalogue().by_id(30)) == "Not in the file. TV series."


def test_a_synopsis_csv_is_story_text_too(tmp_path: Path) -> None:
    path = tmp_path / "synopses.csv"
    path.write_text('MAL_ID,Name,synopsis\n1,Cowboy Bebop,"Bounty hunters in space."\n', encoding="utf-8")
    stories, report = read_storytext(path)
    merged = merge_storytext(base_catalogue(), stories, report)
    assert report.format == "csv" and merged.by_id(1).synopsis == "Bounty hunters in space."


def test_a_file_that_is_not_story_text_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(CatalogueFormatError, match="none of its 2 lines is a JSON object"):
        read_storytext(path)


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("PG-13 - Teens 13 or older", "pg13"),
        ("R+ - Mild Nudity", "r_plus"),
        ("Rx - Hentai", "rx"),
        ("G", "g"),
        ("Unrated", None),
        (None, None),
    ],
)
def test_rating_labels_become_codes(label: str | None, code: str | None) -> None:
    assert rating_code(label) == code


def test_types_and_tags_normalise() -> None:
    assert story_type("TV Special") is AnimeType.SPECIAL and story_type("PV") is AnimeType.PROMO
    assert story_type("MOVIE") is AnimeType.MOVIE and story_type(None) is AnimeType.UNKNOWN
    assert merge_tags(["Sci-Fi", "Science Fiction", "School Life"], ["school", "Demon"]) == (
        "sci-fi",
        "school",
        "demons",
    )


def test_adult_titles_are_recognised_by_rating_or_genre() -> None:
    assert Anime(id=1, title="a", content_rating="rx").adult
    assert Anime(id=2, title="b", tags=("hentai",)).adult
    assert not Anime(id=3, title="c", content_rating="r_plus").adult
