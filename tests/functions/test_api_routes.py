"""Every route through the real Lambda handler with the events/ files (tier V4, in-process LRU cache)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def api(load_handler: Any, bundle_dir: Path) -> ModuleType:
    module: ModuleType = load_handler(bundle_dir)
    return module


def test_health_reports_tier_versions_and_init_time(api: ModuleType, call: Any) -> None:
    status, headers, body = call(api, "health")
    assert status == 200
    assert body["tier"] == "v4" and body["status"] == "ok"
    assert body["catalogue_size"] == 30
    assert body["init_ms"] > 0
    assert body["model_version"] and body["data_version"]
    assert body["cache"] == "lru" and body["text_search"] is True


SECURITY_HEADERS = {
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
}
EVENT_STATUS = {
    "health": 200,
    "anime_autocomplete": 200,
    "anime_autocomplete_fuzzy": 200,
    "anime_autocomplete_bad_limit": 422,
    "anime_get": 200,
    "anime_get_not_found": 404,
    "anime_get_bad_id": 422,
    "similar": 200,
    "similar_filtered": 200,
    "similar_page2": 200,
    "similar_not_found": 404,
    "similar_bad_params": 422,
    "recommendations": 200,
    "recommendations_filtered": 200,
    "recommendations_not_found": 404,
    "recommendations_bad_body": 422,
    "recommendations_malformed_json": 422,
    "search": 200,
    "search_filtered": 200,
    "search_missing_q": 422,
    "unknown_route": 404,
}


def test_every_event_file_gets_its_status_headers_and_problem_bodies(api: ModuleType, call: Any) -> None:
    # Given every events/ file, when each goes through the real handler
    for name, expected in EVENT_STATUS.items():
        status, headers, body = call(api, name)
        # Then the status is right, security headers are present, errors are problem+json without internals
        assert status == expected, name
        assert SECURITY_HEADERS <= set(headers), name
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        if status >= 400:
            assert headers["content-type"] == "application/problem+json", name
            assert {"type", "title", "status", "detail", "instance"} <= set(body)
            assert body["status"] == status
            text = str(body)
            assert "Traceback" not in text and "/work/" not in text and ".py" not in text


def test_similar_has_explanations_and_pages_without_overlap(api: ModuleType, call: Any) -> None:
    _, _, first = call(api, "similar")
    _, _, second = call(api, "similar_page2")
    ids1 = [item["anime"]["id"] for item in first["items"]]
    ids2 = [item["anime"]["id"] for item in second["items"]]
    assert len(ids1) == 5 and len(ids2) == 5 and not set(ids1) & set(ids2)
    assert 1 not in ids1 + ids2
    # The movie sequel shares the query's tags and is explained as such.
    assert ids1[0] == 5
    explanation = first["items"][0]["explanation"]
    assert {"action", "sci-fi", "space"} <= set(explanation["shared_tags"])
    assert explanation["year_difference"] == 3 and explanation["components"]
    assert first["next_offset"] == 5


def test_similar_filters_still_return_k(api: ModuleType, call: Any) -> None:
    status, _, body = call(api, "similar_filtered")
    assert status == 200 and len(body["items"]) == 5
    for item in body["items"]:
        anime = item["anime"]
        assert anime["type"] in ("TV", "MOVIE") and 1995 <= anime["year"] <= 2015 and anime["score"] >= 8
        assert anime["id"] not in (1, 5)


def test_recommendations_exclude_profile_and_attribute_results(api: ModuleType, call: Any) -> None:
    status, _, body = call(api, "recommendations")
    assert status == 200 and len(body["items"]) == 5
    ids = {item["anime"]["id"] for item in body["items"]}
    assert not ids & {1, 5114, 5680, 5}
    for item in body["items"]:
        assert item["explanation"]["because_you_liked"]["id"] in (1, 5114)
    assert "mean of liked vectors" in body["strategy"]


def test_autocomplete_is_accent_case_insensitive_and_fuzzy(api: ModuleType, call: Any, event: Any) -> None:
    _, _, body = call(api, "anime_autocomplete")
    assert body["items"][0]["anime"]["id"] == 1 and body["items"][0]["match"] == "prefix"
    _, _, fuzzy = call(api, "anime_autocomplete_fuzzy")
    assert fuzzy["items"][0]["anime"]["id"] == 20 and fuzzy["items"][0]["match"] == "fuzzy"
    accented = event("anime_autocomplete")
    accented["rawQueryString"] = "q=K-%C3%93n&limit=5"  # "K-Ón"
    _, _, kon = call(api, accented)
    # Both K-On! seasons match; prefix matches rank by popularity.
    assert [i["anime"]["id"] for i in kon["items"][:2]] == [5680, 7791]


def test_search_encodes_text_and_respects_filters(api: ModuleType, call: Any) -> None:
    status, _, body = call(api, "search_filtered")
    assert status == 200 and len(body["items"]) == 5
    assert all(i["anime"]["type"] == "TV" and i["anime"]["year"] >= 2000 for i in body["items"])


def test_oversized_query_and_body_are_refused(api: ModuleType, call: Any, event: Any) -> None:
    long_query = event("search")
    long_query["rawQueryString"] = "q=" + "a" * 5000
    status, _, body = call(api, long_query)
    assert status == 414 and body["status"] == 414
    big = event("recommendations")
    big["body"] = '{"liked": [1], "exclude": [' + ",".join(["1"] * 10000) + "]}"
    big["headers"]["content-length"] = str(len(big["body"]))
    status, headers, body = call(api, big)
    assert status == 413 and headers["content-type"] == "application/problem+json"
    too_long_text = event("search")
    too_long_text["rawQueryString"] = "q=" + "word%20" * 200
    status, _, body = call(api, too_long_text)
    assert status == 422


def test_cors_allows_only_configured_origins(
    load_handler: Any, bundle_dir: Path, call: Any, event: Any
) -> None:
    api = load_handler(bundle_dir, CORS_ALLOW_ORIGINS="https://anime.example")
    ok = event("health")
    ok["headers"]["origin"] = "https://anime.example"
    assert call(api, ok)[1]["access-control-allow-origin"] == "https://anime.example"
    bad = event("health")
    bad["headers"]["origin"] = "https://evil.example"
    assert "access-control-allow-origin" not in call(api, bad)[1]
