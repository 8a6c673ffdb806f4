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
        assert status == 200 and body["tier"] == "v3" and len(body["items"]) == 5, name


def test_broken_model_serves_v2_and_search_is_503(load_handler: Any, bundle_dir: Path, call: Any) -> None:
    corrupt_file(bundle_dir / "model" / "model.onnx", "flip")
    api = load_handler(bundle_dir)
    health = call(api, "health")[2]
    assert health["tier"] == "v2" and health["text_search"] is False
    status, _, body = call(api, "similar")
    assert status == 200 and body["tier"] == "v2" and len(body["items"]) == 5
    # Exactly the teacher's list for this anime, in its order
    teacher = NeighbourLists.load(bundle_dir / "neighbours_v2.npz").for_id(1, 5)
    assert [i["anime"]["id"] for i in body["items"]] == [a for a, _ in teacher]
    status, _, body = call(api, "recommendations")
    assert status == 200 and len(body["items"]) == 5
    assert {i["explanation"]["because_you_liked"]["id"] for i in body["items"]} <= {1, 5114}
    status, headers, body = call(api, "search")
    assert status == 503 and headers["content-type"] == "application/problem+json"
    assert body["type"] == "/problems/tier-unavailable"
