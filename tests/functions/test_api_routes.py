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
    "recommendations_import": 200,
    "search": 200,
    "search_filtered": 200,
    "search_missing_q": 422,
    "search_descriptive": 200,
    "search_negation": 200,
    "search_stopwords": 200,
    "search_symbols": 422,
    "search_mixed_scripts": 200,
    "search_like_title": 200,
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
    # The first event asks k=10, the second k=5 from offset 5: the second half of the first page.
    assert len(ids1) == 10 and len(ids2) == 5 and ids2 == ids1[5:]
    assert 1 not in ids1 + ids2
    # Trigun (same year, same space-western genres) leads, and is explained as such.
    assert ids1[0] == 6
    explanation = first["items"][0]["explanation"]
    assert {"action", "sci-fi", "adventure"} <= set(explanation["shared_tags"])
    assert explanation["year_difference"] == 0 and explanation["components"]
    assert first["next_offset"] == 10


def test_similar_lists_the_franchise_apart_in_release_order(api: ModuleType, call: Any) -> None:
    # Given Cowboy Bebop, whose movie is in the catalogue, when its similar list is asked for
    _, _, first = call(api, "similar")
    _, _, second = call(api, "similar_page2")
    # Then no Cowboy Bebop entry takes a recommendation slot on any page
    titles = [item["anime"]["title"] for item in first["items"] + second["items"]]
    assert not [t for t in titles if t.startswith("Cowboy Bebop")]
    # And the movie is in the franchise list, as a movie, in release order, on every page
    franchise = first["franchise"]
    assert [(e["anime"]["id"], e["relation"]) for e in franchise] == [(5, "movie")]
    assert franchise[0]["anime"]["title"] == "Cowboy Bebop: Tengoku no Tobira"
    assert first["franchise_total"] == 1 and second["franchise"] == franchise
    # And a pair of franchises in one list shows one entry each before any repeat
    ids = [item["anime"]["id"] for item in first["items"] + second["items"]]
    assert not ({20, 1735} <= set(ids[:5]) or {121, 5114} <= set(ids[:5]))


def _similar_to(event: Any, anime_id: int) -> dict[str, Any]:
    """events/similar.json for another anime."""
    payload: dict[str, Any] = event("similar")
    payload["rawPath"] = payload["requestContext"]["http"]["path"] = f"/anime/{anime_id}/similar"
    return payload


def test_similar_franchise_is_ordered_by_release(api: ModuleType, call: Any, event: Any) -> None:
    # Given the movie, whose series came first
    _, _, body = call(api, _similar_to(event, 5))
    # Then the TV series is its franchise's 'parent story', never one of its recommendations
    assert [(e["anime"]["id"], e["relation"]) for e in body["franchise"]] == [(1, "parent story")]
    assert 1 not in [item["anime"]["id"] for item in body["items"]]
    # And the newer Naruto's franchise list holds the older one as its prequel
    _, _, body = call(api, _similar_to(event, 1735))
    assert [(e["anime"]["id"], e["relation"]) for e in body["franchise"]] == [(20, "prequel")]


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
    # Fullmetal Alchemist (2003) is a sibling of the liked Brotherhood: it never takes a slot.
    assert 121 not in ids
    for item in body["items"]:
        assert item["explanation"]["because_you_liked"]["id"] in (1, 5114)
    assert "rankings of up to 16 liked anime are fused" in body["strategy"]


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
    # 'robots' is understood as mecha; every item says why it is there
    assert {
        "kind": "genre",
        "text": "giant robots",
        "value": "mecha",
        "hard": False,
        "anime_id": None,
    } in body["query"]["understood"]
    assert all(i["explanation"]["summary"] and i["explanation"]["matched"] for i in body["items"])


def _understood(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(u["kind"], u["value"]) for u in body["query"]["understood"]}


def test_search_understands_genres_era_and_negation_and_explains(api: ModuleType, call: Any) -> None:
    # Given "90s mecha with giant robots, no romance"
    status, _, body = call(api, "search_descriptive")
    assert status == 200 and body["mode"] == "hybrid" and body["tier"] == "v4"
    # Then era, genre and negation come back in query.understood, the first two as they filter/boost
    understood = _understood(body)
    assert ("genre", "mecha") in understood and ("exclude_genre", "romance") in understood
    assert any(kind == "era" for kind, _ in understood)
    assert {u["kind"]: u["hard"] for u in body["query"]["understood"]}["exclude_genre"] is True
    # And every result is from the 1990s without romance, the three 1990s mecha first, each with
    # the parts it matched named
    items = body["items"]
    assert {i["anime"]["id"] for i in items[:3]} == {30, 32, 43}
    for item in items:
        assert 1990 <= item["anime"]["year"] <= 1999 and "romance" not in item["anime"]["tags"]
        assert "era" in {m["kind"] for m in item["explanation"]["matched"]}
        components = item["explanation"]["components"]
        assert abs(sum(components.values()) - item["similarity"]) < 1e-3
    for item in items[:3]:
        assert "genre" in {m["kind"] for m in item["explanation"]["matched"]}
        assert "mecha" in item["explanation"]["summary"]


def test_search_with_only_a_negation_or_stop_words_answers_popular_within_filters(
    api: ModuleType, call: Any
) -> None:
    # Only a negation: the most popular anime without romance, explained as popular
    status, _, body = call(api, "search_negation")
    assert status == 200 and _understood(body) == {("exclude_genre", "romance")}
    assert body["query"]["residual"] is None
    ids = [i["anime"]["id"] for i in body["items"]]
    assert ids[0] in {1535, 16498}  # the two most popular of the catalogue, neither a romance
    assert all("romance" not in i["anime"]["tags"] for i in body["items"])
    assert all(i["explanation"]["matched"][0]["kind"] == "popular" for i in body["items"])
    assert body["items"][0]["explanation"]["summary"].startswith("Popular within the filters")
    # Only stop words, with a URL filter: popular movies
    status, _, body = call(api, "search_stopwords")
    assert status == 200 and body["query"]["understood"] == [] and body["items"]
    assert all(i["anime"]["type"] == "MOVIE" for i in body["items"])
    members_order = [i["anime"]["id"] for i in body["items"]]
    assert members_order[0] == 32281  # Kimi no Na wa.: the most popular movie


def test_bad_search_queries_are_clear_4xx_never_5xx(api: ModuleType, call: Any, event: Any) -> None:
    # Only symbols: nothing to search for
    status, headers, body = call(api, "search_symbols")
    assert status == 422 and headers["content-type"] == "application/problem+json"
    assert "word" in str(body["errors"])
    # 10 kB of text: refused before anything is parsed
    huge = event("search")
    huge["rawQueryString"] = "q=" + "bounty%20hunter%20" * 600
    huge["queryStringParameters"] = {"q": "bounty hunter " * 600}
    status, _, body = call(api, huge)
    assert 400 <= status < 500 and body["status"] == status
    # Mixed scripts: answered, the Latin title words match
    status, _, body = call(api, "search_mixed_scripts")
    assert status == 200 and body["items"][0]["anime"]["id"] == 16498
    assert "title_words" in {m["kind"] for m in body["items"][0]["explanation"]["matched"]}
    # Words that match nothing: a 200 (the dense side still ranks), never a 5xx
    odd = event("search")
    odd["rawQueryString"] = "q=zzqx%20vvbn"
    odd["queryStringParameters"] = {"q": "zzqx vvbn"}
    status, _, body = call(api, odd)
    assert status == 200 and body["query"]["residual"] == "zzqx vvbn"


def test_search_like_a_title_anchors_on_it(api: ModuleType, call: Any) -> None:
    status, _, body = call(api, "search_like_title")
    assert status == 200
    like = [u for u in body["query"]["understood"] if u["kind"] == "like_title"]
    assert like and like[0]["anime_id"] == 1
    ids = [i["anime"]["id"] for i in body["items"]]
    assert 1 not in ids  # the anchor itself is never a result
    assert any(m["kind"] == "like" for i in body["items"] for m in i["explanation"]["matched"])


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


def test_openapi_documents_items_and_franchise_apart(api: ModuleType, call: Any, event: Any) -> None:
    request = event("health")
    request["rawPath"] = request["requestContext"]["http"]["path"] = "/openapi.json"
    status, _, spec = call(api, request)
    assert status == 200
    schemas = spec["components"]["schemas"]
    similar = schemas["SimilarPublic"]["properties"]
    assert {"items", "franchise", "franchise_total", "next_offset"} <= set(similar)
    assert "franchise sibling" in similar["items"]["description"]
    assert "release" in similar["franchise"]["description"]
    relation = schemas["FranchiseEntryPublic"]["properties"]["relation"]
    assert {"sequel", "prequel", "movie", "side story", "same franchise"} <= set(relation["enum"])
    assert "sibling" in schemas["RecommendationsPublic"]["properties"]["items"]["description"]
