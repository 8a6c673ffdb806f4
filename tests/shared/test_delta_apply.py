"""Applying a plan (`delta/apply.py`): only changes embedded, indexes updated, unchanged files linked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from delta_support import weekly_change

from anime_recommender.artifacts import Manifest, load_bundle, verify
from anime_recommender.catalogue import Catalogue
from anime_recommender.catalogue_tables import CatalogueTables
from anime_recommender.delta.apply import apply_delta
from anime_recommender.delta.lexical import LexicalBuild, LexicalBuildError
from anime_recommender.delta.plan import plan_delta
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.search.lexical import LexicalIndex
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
    # The lexical index was rebuilt for the new catalogue: the added anime by its title words, the
    # changed one by its new tag, the removed one gone
    assert bundle.lexical is not None and bundle.lexical.ids.tolist() == list(new.ids)
    assert bundle.lexical.search("sousou frieren", 1)[0].anime_id == 52991
    assert 1 in {h.anime_id for h in bundle.lexical.search("jazz", 5)}
    assert 40000 not in bundle.lexical.ids
    # ... and so were the lookup tables: the new version's cold start reads them, with the added
    # anime in autocomplete and the removed one gone.
    assert bundle.tables is not None
    assert vars(bundle.tables.titles) == vars(CatalogueTables.build(new).titles)
    assert [m.anime_id for m in bundle.tables.titles.search("sousou no frieren", 1)] == [52991]
    assert 40000 not in {a for ids in bundle.tables.titles.state()["name_ids"] for a in ids}


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


def test_lexical_build_forked_and_threaded_write_the_same_index(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given the build forked (in a fresh, single-threaded interpreter: fork is used only there) ...
    saved = tmp_path / "catalogue.jsonl.gz"
    base_catalogue.save(saved)
    script = f"""
import json
from pathlib import Path
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.lexical import LexicalBuild
build = LexicalBuild(Catalogue.load(Path({str(saved)!r})), Path({str(tmp_path / "forked")!r}))
files = build.result()
print(json.dumps({{"forked": build.forked, "files": {{k: v.sha256 for k, v in files.items()}}}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    forked = json.loads(done.stdout.strip().splitlines()[-1])
    # ... and in a thread (another thread runs, so fork is unsafe)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        build = LexicalBuild(base_catalogue, tmp_path / "threaded")
        threaded = build.result()
    finally:
        stop.set()
    # Then both wrote the same lexical/ files, each listed with its size, and the index loads
    assert forked["forked"] is True and build.forked is False
    assert forked["files"] == {rel: e.sha256 for rel, e in threaded.items()}
    assert threaded and all(rel.startswith("lexical/") for rel in threaded)
    assert all((tmp_path / "threaded" / rel).stat().st_size == e.bytes for rel, e in threaded.items())
    index = LexicalIndex.load(tmp_path / "threaded" / "lexical")
    assert index.ids.tolist() == list(base_catalogue.ids)


def test_lexical_build_failure_is_a_delta_error(base_catalogue: Catalogue, tmp_path: Path) -> None:
    blocked = tmp_path / "out"
    blocked.mkdir()
    (blocked / "lexical").write_text("a file where the folder must go")
    with pytest.raises(LexicalBuildError, match="lexical index"):
        LexicalBuild(base_catalogue, blocked).result()
