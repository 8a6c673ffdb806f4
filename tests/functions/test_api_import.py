"""POST /recommendations/import through the real handler: a viewer's MyAnimeList export in, a list out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from handler_support import invoke, make_event

from anime_pipeline.bench.viewer_lists import ExportEntry, hostile_files, mal_export_xml

E = ExportEntry
# A viewer's list over the tiny catalogue: every status, scores 0-10, and entries the catalogue lacks
# (a real list holds many), so it has more than 50 entries.
WATCHED = [
    E("1", "Completed", 10, "Cowboy Bebop"),
    E("20", "Completed", 9, "Naruto"),
    E("5680", "Completed", 8, "K-On!"),
    E("1535", "Watching", 9, "Death Note"),
    E("121", "Completed", 7, "Fullmetal Alchemist"),
    E("30", "On-Hold", 6, "Neon Genesis Evangelion"),
    E("2167", "Dropped", 4, "Clannad"),
    E("43", "Dropped", 8, "Koukaku Kidoutai"),
    E("199", "Completed", 3, "Sen to Chihiro no Kamikakushi"),
    E("11061", "Completed", 0, "Hunter x Hunter (2011)"),
    E("9253", "Plan to Watch", 0, "Steins;Gate"),
    E("2001", "Plan to Watch", 0, "Tengen Toppa Gurren Lagann"),
]
UNKNOWN = [E(str(100_000 + i), ("Completed", "Plan to Watch", "Watching")[i % 3], i % 11) for i in range(44)]
MALFORMED = [E("abc", "Completed", 9), E("-5", "Completed", 9), E("0", "Watching", 8), E("6", "Paused", 8)]
DUPLICATE = [E("9253", "Completed", 9, "Steins;Gate")]  # also on the list as Plan to Watch
LIST = WATCHED + UNKNOWN + MALFORMED + DUPLICATE
ON_LIST = {int(e.anime_id) for e in WATCHED + DUPLICATE}


@pytest.fixture
def api(load_handler: Any, bundle_dir: Path) -> ModuleType:
    module: ModuleType = load_handler(bundle_dir)
    return module


def _import(
    api: ModuleType, body: bytes, content_type: str = "application/xml", **query: Any
) -> tuple[int, dict[str, str], Any]:
    event = make_event(
        "POST", "/recommendations/import", query, body=body, headers={"content-type": content_type}
    )
    status, headers, raw = invoke(api, event)
    return status, headers, json.loads(raw)


def test_a_realistic_export_gives_unseen_recommendations_and_what_to_continue(api: ModuleType) -> None:
    # Given a viewer's 61-entry export, as MyAnimeList writes it
    assert len(LIST) > 50
    status, headers, body = _import(api, mal_export_xml(LIST), k=10)
    assert status == 200, body
    # Then no recommendation is on the list (Plan to Watch included), nor in a liked franchise
    items = [item["anime"]["id"] for item in body["items"]]
    assert items and not set(items) & ON_LIST
    assert 5 not in items  # Cowboy Bebop's movie: its franchise is listed under "continue" instead
    # And each names the favourite it is closest to: a strong like (scored 8-10, watched)
    favourites = {1, 20, 5680, 1535, 43, 9253}
    assert all(item["explanation"]["because_you_liked"]["id"] in favourites for item in body["items"])
    # And "continue" holds the unwatched next entries of franchises completed or being watched
    upcoming = {entry["anime"]["id"]: entry for entry in body["continue"]}
    assert upcoming[5]["after"]["id"] == 1 and upcoming[5]["relation"] == "movie"
    assert upcoming[1735]["after"]["id"] == 20 and upcoming[1735]["relation"] == "sequel"
    assert upcoming[7791]["after"]["id"] == 5680
    assert upcoming[5114]["after"]["id"] == 121  # Brotherhood after the 2003 series
    assert not set(upcoming) & ON_LIST
    # And the counts say what the file held
    counts = body["counts"]
    assert body["unknown_ids"] == sorted(int(e.anime_id) for e in UNKNOWN)
    assert counts["unknown"] == 44 and counts["matched"] == len(WATCHED)
    assert counts["skipped"] == len(MALFORMED) and counts["duplicates"] == 1
    assert counts["entries"] == len(WATCHED) + len(UNKNOWN)
    assert sum(counts["by_status"].values()) == counts["entries"]
    assert counts["by_status"]["plan_to_watch"] == 1 + 15  # 2001, and every third unknown id
    # Not cached by its content
    assert "x-cache" not in headers


def test_gzip_pages_and_the_json_shape(api: ModuleType) -> None:
    plain = mal_export_xml(LIST)
    _, _, first = _import(api, plain, k=3)
    # The same file gzip-compressed, declared or recognised by its magic bytes, answers the same
    _, _, zipped = _import(api, gzip.compress(plain), "application/gzip", k=3)
    _, _, sniffed = _import(api, gzip.compress(plain), "application/octet-stream", k=3)
    assert first["items"] == zipped["items"] == sniffed["items"]
    _, _, second = _import(api, plain, k=3, offset=3)
    ids = [i["anime"]["id"] for i in first["items"] + second["items"]]
    assert len(ids) == 6 and len(set(ids)) == 6 and first["next_offset"] == 3
    assert set(first) >= {"items", "continue", "unknown_ids", "counts", "tier", "strategy"}


def test_malformed_entries_are_skipped_and_counted_and_the_rest_served(api: ModuleType) -> None:
    entries = [
        E("1", "Completed", 9),
        E("1", "Completed", 9),
        E("twenty", "Completed", 9),
        E("-1", "Dropped", 2),
    ]
    status, _, body = _import(api, mal_export_xml(entries))
    assert status == 200
    assert (
        body["counts"]["entries"] == 1
        and body["counts"]["skipped"] == 2
        and body["counts"]["duplicates"] == 1
    )
    assert body["items"] and 1 not in {item["anime"]["id"] for item in body["items"]}


EXPECTED_REFUSALS = {
    "billion_laughs": 422,
    "external_entity": 422,
    "dtd": 422,
    "seven_mb": 413,
    "gzip_bomb": 413,
    "wrong_root": 422,
    "not_xml": 422,
    "json": 415,
    "twenty_thousand_entries": 413,
    "truncated_gzip": 422,
}


def test_hostile_files_get_a_clear_problem_and_nothing_else(api: ModuleType) -> None:
    files = hostile_files()
    assert set(files) == set(EXPECTED_REFUSALS)
    for name, (body, content_type) in files.items():
        status, headers, problem = _import(api, body, content_type)
        assert status == EXPECTED_REFUSALS[name], (name, problem)
        assert headers["content-type"] == "application/problem+json", name
        assert problem["status"] == status and problem["detail"], name
        assert "lol" not in problem["detail"] and "passwd" not in problem["detail"], name
    # The service keeps answering
    status, _, body = _import(api, mal_export_xml(WATCHED))
    assert status == 200 and body["items"]


def test_only_the_import_route_takes_large_bodies(api: ModuleType) -> None:
    big = json.dumps({"liked": [1], "exclude": list(range(1, 4_000))})
    assert len(big) > 16_384
    status, _, raw = invoke(api, make_event("POST", "/recommendations", body=big))
    assert status == 413, raw[:200]
    # While a 1 MB list export is read
    padding = b"<!-- " + b"x" * 1_000_000 + b" -->"
    status, _, body = _import(
        api, mal_export_xml(WATCHED).replace(b"<myanimelist>", b"<myanimelist>" + padding)
    )
    assert status == 200, body


def test_an_uploaded_list_is_never_logged(api: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    secret_title = "Zq9 Private Title Nobody Else Has"
    _import(api, mal_export_xml([E("1", "Completed", 9, secret_title), E("424242", "Completed", 8)]))
    printed = capsys.readouterr()
    assert secret_title not in printed.out + printed.err
    assert "424242" not in printed.out + printed.err
