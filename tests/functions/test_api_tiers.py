"""Cascading fallback: corrupted artifacts put the handler in tier V3, then V2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anime_pipeline.tiny_model import corrupt_file
from anime_recommender.neighbours import NeighbourLists


def test_broken_v4_index_serves_v3(load_handler: Any, bundle_dir: Path, call: Any) -> None:
    corrupt_file(next((bundle_dir / "index_v4").glob("*.bin")), "flip")
    api = load_handler(bundle_dir)
    health = call(api, "health")[2]
    assert health["tier"] == "v3" and health["status"] == "degraded" and health["failures"]
    assert all(str(bundle_dir) not in f for f in health["failures"])
    for name in ("similar", "similar_filtered", "recommendations", "search"):
        status, _, body = call(api, name)
        wanted = 10 if name == "similar" else 5  # events/similar.json asks k=10, the others k=5
        assert status == 200 and body["tier"] == "v3" and len(body["items"]) == wanted, name


def test_broken_model_serves_v2_and_search_is_lexical(load_handler: Any, bundle_dir: Path, call: Any) -> None:
    corrupt_file(bundle_dir / "model" / "model.onnx", "flip")
    api = load_handler(bundle_dir)
    health = call(api, "health")[2]
    # No encoder, but the lexical index still answers free text
    assert health["tier"] == "v2" and health["text_search"] is True
    status, _, body = call(api, "similar")
    assert status == 200 and body["tier"] == "v2" and len(body["items"]) == 10
    # The teacher's list for this anime, in its order, without its franchise: the movie is listed apart
    # (the first five: further down, one entry per other franchise comes before a second one of it)
    teacher = NeighbourLists.load(bundle_dir / "neighbours_v2.npz").for_id(1, 6)
    assert 5 in [a for a, _ in teacher]
    assert [i["anime"]["id"] for i in body["items"]][:5] == [a for a, _ in teacher if a != 5][:5]
    assert [e["anime"]["id"] for e in body["franchise"]] == [5]
    status, _, body = call(api, "recommendations")
    assert status == 200 and len(body["items"]) == 5
    assert {i["explanation"]["because_you_liked"]["id"] for i in body["items"]} <= {1, 5114}
    # Then /search answers from lexical + understanding + priors: the space western, explained
    status, _, body = call(api, "search")
    assert status == 200 and body["tier"] == "v2" and body["mode"] == "lexical"
    assert body["items"][0]["anime"]["id"] == 1
    kinds = {m["kind"] for item in body["items"] for m in item["explanation"]["matched"]}
    assert "genre" in kinds and "dense" not in kinds
    assert all(item["explanation"]["summary"] for item in body["items"])


def test_broken_lexical_index_degrades_search_to_dense(
    load_handler: Any, bundle_dir: Path, call: Any
) -> None:
    corrupt_file(bundle_dir / "lexical" / "vocab.json", "flip")
    api = load_handler(bundle_dir)
    health = call(api, "health")[2]
    # The vectors are intact, so the tier stays V4; the lexical failure is reported
    assert health["tier"] == "v4" and health["text_search"] is True
    assert any(f.startswith("lexical:") for f in health["failures"])
    status, _, body = call(api, "search")
    assert status == 200 and body["mode"] == "dense" and len(body["items"]) == 5
    kinds = {m["kind"] for item in body["items"] for m in item["explanation"]["matched"]}
    assert "title_words" not in kinds and "story_terms" not in kinds


def test_no_lexical_index_and_no_model_makes_search_503(
    load_handler: Any, bundle_dir: Path, call: Any
) -> None:
    corrupt_file(bundle_dir / "model" / "model.onnx", "flip")
    corrupt_file(bundle_dir / "lexical" / "ids.npy", "truncate")
    api = load_handler(bundle_dir)
    assert call(api, "health")[2]["text_search"] is False
    status, _, body = call(api, "similar")
    assert status == 200 and body["tier"] == "v2"
    status, headers, body = call(api, "search")
    assert status == 503 and headers["content-type"] == "application/problem+json"
    assert body["type"] == "/problems/tier-unavailable"


def test_broken_catalogue_tables_are_rebuilt_and_answers_do_not_change(
    load_handler: Any, bundle_dir: Path, call: Any
) -> None:
    intact = load_handler(bundle_dir)
    events = ("anime_autocomplete", "anime_autocomplete_fuzzy", "similar", "search_like_title", "search")
    expected = {name: call(intact, name)[2]["items"] for name in events}
    assert call(intact, "health")[2]["failures"] == []

    corrupt_file(bundle_dir / "catalogue_tables.marshal", "flip")
    api = load_handler(bundle_dir)
    health = call(api, "health")[2]
    # A corrupt file is reported, but costs no tier: the tables are built from the catalogue.
    assert health["tier"] == "v4" and any(f.startswith("tables:") for f in health["failures"])
    for name in events:
        status, _, body = call(api, name)
        assert status == 200 and body["items"] == expected[name], name
