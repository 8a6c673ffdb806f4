"""Reading a MyAnimeList export, the taste it implies, and what to continue watching."""

from __future__ import annotations

import gzip

import pytest

from anime_pipeline.bench.viewer_lists import ExportEntry, mal_export_xml
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.viewer_list import (
    ListEntry,
    ListStatus,
    ViewerListError,
    next_in_franchises,
    read_mal_export,
    taste_of,
)

E = ExportEntry
S = ListStatus


def test_statuses_by_name_or_code_scores_and_a_byte_order_mark_are_read() -> None:
    xml = mal_export_xml([E("1", "Completed", 9), E("2", "On-Hold", 0), E("3", "6", 0), E("4", "2", 11)])
    viewer = read_mal_export(b"\xef\xbb\xbf" + xml)
    assert viewer.entries == {
        1: ListEntry(1, S.COMPLETED, 9),
        2: ListEntry(2, S.ON_HOLD, 0),
        3: ListEntry(3, S.PLAN_TO_WATCH, 0),
        4: ListEntry(4, S.COMPLETED, 0),  # a score outside 0-10 reads as not scored
    }
    assert viewer.by_status() == {
        "watching": 0,
        "completed": 2,
        "on_hold": 1,
        "dropped": 0,
        "plan_to_watch": 1,
    }


def test_a_duplicate_keeps_the_watched_scored_entry() -> None:
    xml = mal_export_xml(
        [E("7", "Completed", 8), E("7", "Plan to Watch", 0), E("8", "Plan to Watch", 0), E("8", "Dropped", 2)]
    )
    viewer = read_mal_export(xml)
    assert viewer.entries[7] == ListEntry(7, S.COMPLETED, 8)
    assert viewer.entries[8] == ListEntry(8, S.DROPPED, 2)
    assert viewer.duplicates == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<?xml version='1.0'?><!-- export --><animelist/>", "wrong_root"),
        (b'<!DOCTYPE myanimelist [<!ENTITY a "b">]><myanimelist>&a;</myanimelist>', "forbidden_markup"),
        (b"<myanimelist><anime>", "not_xml"),
        (gzip.compress(b"<myanimelist>" + b" " * 2_000_000 + b"</myanimelist>"), "too_large"),
        (gzip.compress(b"<myanimelist></myanimelist>")[:-6], "damaged_gzip"),
        (mal_export_xml([E(str(i), "Completed", 7) for i in range(1, 12)]), "too_many_entries"),
    ],
)
def test_files_that_are_not_a_list_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ViewerListError) as refused:
        read_mal_export(body, max_expanded_bytes=1_000_000, max_entries=10)
    assert refused.value.reason == reason


def test_status_and_score_make_the_taste() -> None:
    entries = [
        ListEntry(1, S.COMPLETED, 9),  # strong like
        ListEntry(2, S.WATCHING, 0),  # mild like (not scored)
        ListEntry(3, S.ON_HOLD, 6),  # mild like
        ListEntry(4, S.COMPLETED, 4),  # dislike
        ListEntry(5, S.DROPPED, 0),  # dislike
        ListEntry(6, S.DROPPED, 8),  # dropped but scored 8: a strong like
        ListEntry(7, S.PLAN_TO_WATCH, 0),  # not taste
    ]
    taste = taste_of(entries)
    assert taste.liked == {1: 1.0, 2: 0.75, 3: 0.75, 6: 1.0}
    assert taste.disliked == (4, 5)


def _anime(anime_id: int, title: str, kind: AnimeType, year: int) -> Anime:
    return Anime(id=anime_id, title=title, type=kind, year=year)


def test_continue_offers_main_entries_in_release_order_before_side_stories() -> None:
    franchise = [
        _anime(10, "Show", AnimeType.TV, 2010),
        _anime(11, "Show OVA", AnimeType.OVA, 2011),
        _anime(12, "Show Movie", AnimeType.MOVIE, 2013),
        _anime(13, "Show Season 2", AnimeType.TV, 2012),
        _anime(14, "Show PV", AnimeType.PROMO, 2012),
    ]
    other = [_anime(20, "Other", AnimeType.TV, 2015), _anime(21, "Other 2", AnimeType.TV, 2016)]
    catalogue = Catalogue([*franchise, *other])
    groups = [{a.id for a in franchise}, {20, 21}]

    def siblings_of(anime_id: int) -> set[int]:
        return next(g - {anime_id} for g in groups if anime_id in g)

    viewer = read_mal_export(
        mal_export_xml([E("10", "Completed", 9), E("12", "Plan to Watch", 0), E("20", "Watching", 7)])
    )
    upcoming = next_in_franchises(viewer, catalogue, siblings_of, hidden=catalogue.unlisted_ids())
    # Watching first; then the completed show's season 2 and movie (release order), then its OVA.
    assert [(e.anime.id, e.after.id) for e in upcoming] == [(21, 20), (13, 10), (12, 10), (11, 10)]


def test_continue_offers_the_next_season_before_movies_released_between_seasons() -> None:
    # Naruto's shape: three movies came out between the first series and Shippuuden.
    franchise = [
        _anime(1, "Ninja", AnimeType.TV, 2002),
        _anime(2, "Ninja Movie 1", AnimeType.MOVIE, 2004),
        _anime(3, "Ninja Movie 2", AnimeType.MOVIE, 2005),
        _anime(4, "Ninja Movie 3", AnimeType.MOVIE, 2006),
        _anime(5, "Ninja Shippuuden", AnimeType.TV, 2007),
        _anime(6, "Ninja Special", AnimeType.SPECIAL, 2003),
    ]
    catalogue = Catalogue(franchise)
    ids = {a.id for a in franchise}
    viewer = read_mal_export(mal_export_xml([E("1", "Completed", 8)]))
    upcoming = next_in_franchises(viewer, catalogue, lambda anime_id: ids - {anime_id})
    assert [e.anime.title for e in upcoming] == ["Ninja Shippuuden", "Ninja Movie 1", "Ninja Movie 2"]
