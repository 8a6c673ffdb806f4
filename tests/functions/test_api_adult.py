"""Adult titles are hidden from every list by default, through the real handler (`sfw`)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from handler_support import invoke, make_event

from anime_pipeline.bench.viewer_lists import STATUS_NAMES, ExportEntry, mal_export_xml
from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.catalogue import Anime, AnimeType, Catalogue

_T = AnimeType
# Adult titles placed where default lists would meet them: popular, sharing the tags of well-known
# anime, one with a title that autocompletes like Cowboy Bebop. Adult by genre (hentai) or by rating.
# fmt: off
ADULT: list[tuple[int, str, AnimeType, tuple[str, ...], str | None]] = [
    (90001, "Space Pleasure Cruise", _T.MOVIE, ("sci-fi", "space", "drama", "hentai"), None),
    (90002, "Mecha Nights", _T.OVA, ("mecha", "sci-fi", "action", "hentai"), "rx"),
    (90003, "School Secrets", _T.OVA, ("school", "romance", "slice of life", "hentai"), None),
    (90004, "Cowboy Bebop Hentai Parody", _T.OVA, ("space", "comedy", "sci-fi", "hentai"), None),
    (90005, "Ninja Night Lessons", _T.OVA, ("action", "comedy", "shounen", "martial arts"), "rx"),
    (90006, "Witch Hunter Nights", _T.OVA, ("supernatural", "magic", "drama", "mystery"), "rx"),
]
# fmt: on
ADULT_IDS = {row[0] for row in ADULT}
SEARCHES = [
    "space", "mecha", "school romance", "ninja action", "witch", "cowboy", "hentai", "sci-fi movie",
    "supernatural mystery", "comedy", "drama", "martial arts shounen", "space bounty hunters",
]  # fmt: skip


# Title fragments that autocomplete adult titles along with others.
FRAGMENTS = [
    "space",
    "mecha",
    "school",
    "cowboy",
    "cowboy bebop",
    "ninja",
    "witch",
    "witch hunter",
    "nights",
    "n",
]


@pytest.fixture(scope="module")
def adult_bundle(
    tiny_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    adult = [
        Anime(
            id=aid,
            title=title,
            type=atype,
            year=2005,
            score=7.6,
            members=2_500_000,
            tags=tags,
            episodes=2,
            content_rating=rating,
        )  # fmt: skip
        for aid, title, atype, tags, rating in ADULT
    ]
    catalogue = Catalogue([*tiny_catalogue, *adult])
    assert {a.id for a in catalogue if a.adult} == ADULT_IDS
    return make_tiny_bundle(catalogue, tmp_path_factory.mktemp("adult"), k=20, model_dir=tiny_model_dir)


@pytest.fixture
def api(load_handler: Any, adult_bundle: Path) -> ModuleType:
    module: ModuleType = load_handler(adult_bundle, LOG_LEVEL="CRITICAL")
    return module


def _get(api: ModuleType, path: str, **query: Any) -> dict[str, Any]:
    status, _, raw = invoke(api, make_event("GET", path, query))
    assert status == 200, (path, query, raw[:300])
    body: dict[str, Any] = json.loads(raw)
    return body


def _post(api: ModuleType, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, _, raw = invoke(api, make_event("POST", path, body=json.dumps(body)))
    assert status == 200, (path, body, raw[:300])
    answer: dict[str, Any] = json.loads(raw)
    return answer


def _import(api: ModuleType, export: bytes, query: dict[str, Any]) -> dict[str, Any]:
    event = make_event(
        "POST", "/recommendations/import", query, body=export, headers={"content-type": "text/xml"}
    )
    status, _, raw = invoke(api, event)
    assert status == 200, raw[:300]
    answer: dict[str, Any] = json.loads(raw)
    return answer


def _listed_ids(body: dict[str, Any]) -> Iterator[int]:
    for item in body["items"]:
        yield item["anime"]["id"]
    for entry in body.get("franchise", []) + body.get("continue", []):
        yield entry["anime"]["id"]


def _sampled_requests(ids: list[int], rng: random.Random, sfw: bool | None) -> Iterator[tuple[str, Any]]:
    """(method, request) pairs over every list route, with filters and pages drawn at random."""
    flag = {} if sfw is None else {"sfw": str(sfw).lower()}
    filters: list[dict[str, Any]] = [
        {},
        {"type": "OVA"},
        {"type": "MOVIE,OVA"},
        {"year_min": 2000},
        {"min_score": 7},
    ]
    while True:
        route = rng.choice(("similar", "similar", "recommend", "import", "search", "autocomplete"))
        page = {"k": rng.choice((5, 10, 20)), "offset": rng.choice((0, 0, 5, 10))}
        extra = rng.choice(filters)
        if route == "similar":
            yield "GET", (f"/anime/{rng.choice(ids)}/similar", {**page, **extra, **flag})
        elif route == "recommend":
            body = {"liked": rng.sample(ids, rng.choice((1, 2, 3))), **page, **extra}
            body["liked"] = sorted(set(body["liked"]))
            if sfw is not None:
                body["sfw"] = sfw
            yield "POST", ("/recommendations", body)
        elif route == "import":
            entries = [
                ExportEntry(str(a), rng.choice(STATUS_NAMES), rng.randint(0, 10))
                for a in rng.sample(ids, rng.randint(1, 6))
            ]
            yield "IMPORT", ("/recommendations/import", (mal_export_xml(entries), {**page, **flag}))
        elif route == "search":
            yield "GET", ("/search", {"q": rng.choice(SEARCHES), **page, **extra, **flag})
        else:
            yield "GET", ("/anime", {"q": rng.choice(FRAGMENTS), "limit": rng.choice((5, 10, 20)), **flag})


def _sample(api: ModuleType, ids: list[int], n: int, sfw: bool | None) -> tuple[int, set[int]]:
    rng = random.Random(23)
    shown: set[int] = set()
    for count, (method, (path, params)) in enumerate(_sampled_requests(ids, rng, sfw), start=1):
        if method == "IMPORT":
            body = _import(api, *params)
        elif method == "POST":
            body = _post(api, path, params)
        else:
            body = _get(api, path, **params)
        shown |= set(_listed_ids(body))
        if count >= n:
            return count, shown
    raise AssertionError("unreachable")


def test_no_default_list_shows_an_adult_title_in_a_thousand_responses(api: ModuleType) -> None:
    # Given a catalogue whose adult titles are popular and share the tags of well-known anime
    ids = [row["anime"]["id"] for row in _get(api, "/anime", q="a", limit=50)["items"]]
    ids = sorted(set(ids) | ADULT_IDS | {1, 5, 30, 20, 1735, 2167, 5680})
    # When 1,050 list responses are sampled across routes, filters and pages, as a default client asks
    count, shown = _sample(api, ids, 1_050, sfw=None)
    # Then none of them lists an adult title
    assert count >= 1_000
    assert not shown & ADULT_IDS
    # While the same requests with sfw=false do show them (the filter, not the ranking, hid them)
    _, shown_unsafe = _sample(api, ids, 300, sfw=False)
    assert shown_unsafe & ADULT_IDS


def test_an_adult_title_answers_by_id_with_its_rating_and_its_similar_list_stays_full(
    api: ModuleType,
) -> None:
    anime = _get(api, "/anime/90002")
    assert anime["adult"] is True and anime["content_rating"] == "rx"
    assert _get(api, "/anime/1")["adult"] is False
    # Its neighbours are mostly adult; the default list is still full, and safe.
    similar = _get(api, "/anime/90001/similar", k=10)
    assert len(similar["items"]) == 10
    assert not set(_listed_ids(similar)) & ADULT_IDS


def test_sfw_is_part_of_the_cache_key(api: ModuleType) -> None:
    # An unsafe answer cached first is never served to a default request with the same parameters.
    unsafe = _get(api, "/anime/1/similar", k=20, sfw="false")
    assert set(_listed_ids(unsafe)) & ADULT_IDS
    safe = _get(api, "/anime/1/similar", k=20)
    assert not set(_listed_ids(safe)) & ADULT_IDS
    suggestions = _get(api, "/anime", q="cowboy bebop")
    assert 90004 not in {row["anime"]["id"] for row in suggestions["items"]}
    assert 90004 in {
        row["anime"]["id"] for row in _get(api, "/anime", q="cowboy bebop", sfw="false")["items"]
    }
