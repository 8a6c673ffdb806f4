"""Applying a plan (`delta/apply.py`): only changes embedded, indexes updated, unchanged files linked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from delta_support import weekly_change

from anime_recommender.artifacts import Manifest, load_bundle, verify
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.apply import apply_delta
from anime_recommender.delta.plan import plan_delta
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.text import anime_text


def test_apply_delta_embeds_only_changes_and_updates_indexes(
    base_catalogue: Catalogue, layer: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    new = Catalogue(weekly_change(base_catalogue))
    plan = plan_delta(base_catalogue, new)
    encoder = OnnxEncoder.load(tiny_model_dir, threads=1)
    embedded: list[str] = []
    original = encoder.encode

    def counting(texts: Any, batch_size: int = 32) -> dict[str, np.ndarray]:
        embedded.extend(texts)
        return original(texts, batch_size=batch_size)

    encoder.encode = counting  # type: ignore[method-assign]
    before = Manifest.read(layer)
    result = apply_delta(layer, plan, encoder, tmp_path / "new")

    # only added + changed were embedded
    assert sorted(embedded) == sorted(anime_text(new.by_id(i)) for i in (1, 29277, 52991))
    bundle = load_bundle(result.out_dir, all_tiers=True)
    assert bundle.tier == "v4" and not bundle.failures
    assert bundle.data_version == plan.new_version != before.data_version
    assert Manifest.read(layer).data_version == before.data_version  # base untouched
    fresh = original([anime_text(new.by_id(1))])
    for space, index in bundle.indexes.items():
        assert set(index.ids.tolist()) == set(new.ids)
        assert 40000 not in index
        np.testing.assert_allclose(index.vector(1), fresh[space][0], atol=1e-5)  # replaced in place
        assert index.search(index.vector(52991), 1)[0][0] == 52991
    assert bundle.manifest.indexes["v4"].count == len(new)
    assert bundle.manifest.extra["delta"]["added"] == 2


def test_delta_version_links_the_model_and_verifies(
    base_catalogue: Catalogue, layer: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    plan = plan_delta(base_catalogue, Catalogue(weekly_change(base_catalogue)))
    result = apply_delta(layer, plan, None, tmp_path / "new")
    assert not verify(result.out_dir)  # every entry, reused or hashed, matches its file
    for rel in ("model/model.onnx", "model/tokenizer.json"):
        assert (result.out_dir / rel).stat().st_ino == (layer / rel).stat().st_ino
        assert result.manifest.files[rel] == Manifest.read(layer).files[rel]
    assert result.manifest.extra["delta"]["lists_merged"] == result.lists_merged
