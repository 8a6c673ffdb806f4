"""FlatIndex (the V3 tier): recall of int8 against float brute force, exact search over what it stores,
filters, updates, persistence, `load_index` picking the kind, and bundles and deltas with a flat V3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anime_recommender.artifacts import CATALOGUE, MODEL_DIR, NEIGHBOURS, Manifest, index_dir, load_bundle
from anime_recommender.artifacts import write_bundle as write_bundle_files
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.delta.indexer import IndexJob, IndexWorker
from anime_recommender.delta.plan import plan_delta
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.index import (
    FLAT_CHUNK_ROWS,
    FlatIndex,
    IndexFormatError,
    UnknownAnimeError,
    VectorIndex,
    load_index,
)
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.text import anime_text
from anime_recommender.topk import top_k_inner_products

N, DIM, K = 3000, 64, 10  # more rows than one scan chunk, so chunk edges are exercised
assert N > 2 * FLAT_CHUNK_ROWS


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors around a shared direction (mean norm ~0.7, as the shipped V3's is ~0.65)."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((300, DIM)) + 1.5 * rng.standard_normal(DIM)
    x = centres[rng.integers(0, 300, N)] + rng.standard_normal((N, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return rng.permutation(np.arange(N, dtype=np.int64) * 5 + 2), x


@pytest.fixture(scope="module")
def flat(data: tuple[np.ndarray, np.ndarray]) -> FlatIndex:
    return FlatIndex.build(*data)


def _decoded_brute(flat: FlatIndex, query: np.ndarray, k: int, allowed: set[int] | None = None) -> list[int]:
    ids = flat.ids
    matrix, _ = flat.vectors(ids.tolist())
    sims = matrix @ (query / np.linalg.norm(query))
    if allowed is not None:
        sims = np.where(np.isin(ids, list(allowed)), sims, -np.inf)
    order = np.lexsort((ids, -sims))[:k]
    return [int(ids[i]) for i in order if np.isfinite(sims[i])]


def test_recall_at_10_against_float_brute_force(flat: FlatIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    queries = vecs[:300]
    truth = ids[top_k_inner_products(queries, vecs, K)[0]]
    found, sims = flat.knn_batch(queries, K)
    recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.99
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=5e-3)  # each query finds itself


def test_search_is_exact_over_the_stored_vectors(
    flat: FlatIndex, data: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, vecs = data
    for row in (0, 7, 1500, N - 1):
        hits = flat.search(vecs[row], 50)
        assert [a for a, _ in hits] == _decoded_brute(flat, vecs[row], 50)
        assert hits[0][0] == ids[row]
        found, _ = flat.knn_batch(vecs[row : row + 1], 50)
        assert found[0].tolist() == [a for a, _ in hits]
    # scores are the stored vectors' inner products with the query
    vector = flat.vector(int(ids[3]))
    np.testing.assert_allclose(np.linalg.norm(vector), 1.0, atol=5e-3)
    matrix, present = flat.vectors([int(ids[3]), -1, int(ids[4])])
    assert present.tolist() == [True, False, True] and not matrix[1].any()
    np.testing.assert_allclose(matrix[0], vector, atol=1e-6)
    assert flat.search(vecs[3], 1)[0][1] == pytest.approx(float(vector @ vecs[3]), abs=1e-5)


def test_filters_and_exclusions(flat: FlatIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    rng = np.random.default_rng(1)
    query = vecs[10]
    for size in (5, 200, 2500):  # gathered rows, and a mask over a full scan
        allowed = set(ids[rng.choice(N, size, replace=False)].tolist())
        hits = flat.search(query, K, allowed=allowed)
        assert [a for a, _ in hits] == _decoded_brute(flat, query, K, allowed)
    allowed = {int(ids[10]), int(ids[11]), 999_999}
    assert {a for a, _ in flat.search(query, K, allowed=allowed, exclude=[int(ids[10])])} == {int(ids[11])}
    assert flat.search(query, K, allowed=set()) == [] and flat.search(query, 0) == []
    assert int(ids[10]) not in {a for a, _ in flat.search(query, K, exclude=[int(ids[10])])}
    assert len(flat.search(query, N + 5)) == N


def test_ties_go_to_the_lower_id() -> None:
    vec = np.ones((1, 8), dtype=np.float32)
    flat = FlatIndex.build([30, 10, 20], np.repeat(vec, 3, axis=0))
    assert [a for a, _ in flat.search(vec[0], 2)] == [10, 20]


def test_add_replace_and_delete(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    index = FlatIndex.build(ids[:2000], vecs[:2000])
    assert index.mark_deleted([int(ids[0]), int(ids[1]), 123_456_789]) == 2
    assert int(ids[0]) not in index and len(index) == 1998
    # re-adding a deleted id, replacing a live one with another's vector, adding new ones
    index.add(
        [int(ids[0]), int(ids[5]), *ids[2000:2100].tolist()], np.vstack([vecs[0], vecs[6], vecs[2000:2100]])
    )
    assert len(index) == 2099 and int(ids[0]) in index and int(ids[2050]) in index
    np.testing.assert_allclose(index.vector(int(ids[5])), vecs[6], atol=2e-2)
    assert index.search(vecs[2050], 1)[0][0] == ids[2050]
    assert index.search(vecs[0], 1)[0][0] == ids[0]
    assert index.ids.tolist() == sorted(index.ids.tolist())
    with pytest.raises(ValueError, match="unique"):
        index.add([1, 1], vecs[:2])
    with pytest.raises(UnknownAnimeError):
        index.vector(int(ids[1]))


def test_save_load_and_kind_dispatch(
    flat: FlatIndex, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    ids, vecs = data
    written = flat.save(tmp_path / "flat")
    assert {p.name for p in written} == {"vectors.npy", "scales.npy", "codebook.npy", "ids.npy", "index.json"}
    assert np.load(tmp_path / "flat" / "vectors.npy").dtype == np.int8
    loaded = load_index(tmp_path / "flat", ef=0, kind="flat-int8")
    assert isinstance(loaded, FlatIndex) and len(loaded) == N and loaded.dim == DIM
    assert loaded.search(vecs[42], K) == flat.search(vecs[42], K)
    # an hnswlib directory loads as VectorIndex, also one written before index.json named a kind
    hnsw = VectorIndex.build(ids[:300], vecs[:300], M=8, ef_construction=40)
    hnsw.save(tmp_path / "hnsw")
    meta = json.loads((tmp_path / "hnsw" / "index.json").read_text())
    del meta["kind"]
    (tmp_path / "hnsw" / "index.json").write_text(json.dumps(meta))
    assert isinstance(load_index(tmp_path / "hnsw", ef=32), VectorIndex)
    with pytest.raises(IndexFormatError, match="manifest says"):
        load_index(tmp_path / "hnsw", ef=32, kind="flat-int8")
    with pytest.raises(IndexFormatError):
        FlatIndex.load(tmp_path / "hnsw")


def _with_flat_v3(bundle_dir: Path, out: Path) -> Path:
    """The tiny bundle rewritten as the index stage now writes it: V4 hnswlib, V3 flat int8."""
    base = load_bundle(bundle_dir, all_tiers=True)
    indexes = {"v4": base.indexes["v4"], "v3": FlatIndex.from_index(base.indexes["v3"])}
    write_bundle_files(
        out,
        catalogue=Catalogue.load(bundle_dir / CATALOGUE),
        neighbours=NeighbourLists.load(bundle_dir / NEIGHBOURS),
        model_dir=bundle_dir / MODEL_DIR,
        indexes=indexes,
    )
    return out


def test_bundle_with_a_flat_v3_loads_it_and_falls_back_to_it(bundle_dir: Path, tmp_path: Path) -> None:
    flat_dir = _with_flat_v3(bundle_dir, tmp_path / "flat-bundle")
    manifest = Manifest.read(flat_dir)
    assert manifest.indexes["v3"].kind == "flat-int8" and manifest.indexes["v4"].kind == "hnsw"
    assert manifest.indexes["v3"].ef == 0 and manifest.indexes["v4"].ef > 0
    bundle = load_bundle(flat_dir, all_tiers=True)
    assert bundle.tier == "v4" and isinstance(bundle.indexes["v3"], FlatIndex) and bundle.failures == []
    # With V4 gone, the flat V3 serves
    shutil.rmtree(flat_dir / index_dir("v4"))
    fallback = load_bundle(flat_dir)
    assert fallback.tier == "v3" and isinstance(fallback.index, FlatIndex)
    some_id = int(fallback.catalogue.ids[0])
    assert fallback.index.search(fallback.index.vector(some_id), 1)[0][0] == some_id


def test_delta_updates_a_flat_v3_in_kind(bundle_dir: Path, tmp_path: Path) -> None:
    # Given a base with a flat V3 and a job adding one anime and removing the first
    flat_dir = _with_flat_v3(bundle_dir, tmp_path / "flat-bundle")
    base = Catalogue.load(flat_dir / CATALOGUE)
    new_anime = Anime(id=52991, title="Sousou no Frieren", type=AnimeType.TV, year=2023, tags=("fantasy",))
    out = tmp_path / "new"
    out.mkdir()
    job = IndexJob.from_plan(plan_delta(base, Catalogue([*list(base)[1:], new_anime])), out)
    encoder = OnnxEncoder.load(flat_dir / MODEL_DIR, threads=1)
    with IndexWorker(flat_dir, encoder=encoder) as worker:
        worker.submit(job)
        result = worker.result()
    # Then V3 is written flat again, holding the new anime (int8 of its vector) and not the removed one
    assert result.infos["v3"].kind == "flat-int8" and result.infos["v3"].count == job.catalogue_size
    v3 = load_index(out / index_dir("v3"), ef=0, kind="flat-int8")
    assert isinstance(v3, FlatIndex) and job.removed[0] not in v3 and len(v3) == job.catalogue_size
    fresh = encoder.encode([anime_text(new_anime)], batch_size=1)["v3"][0]
    np.testing.assert_allclose(v3.vector(new_anime.id), fresh, atol=2e-2)
    assert v3.search(fresh, 1)[0][0] == new_anime.id


def test_hnswlib_build_refuses_a_flat_manifests_zero_parameters() -> None:
    # A flat index's manifest entry records M=0; handing it to hnswlib must fail clearly, not crash
    vectors = np.random.default_rng(0).standard_normal((8, 4))
    with pytest.raises(ValueError, match="M >= 2"):
        VectorIndex.build(range(8), vectors, M=0, ef_construction=0)


def test_search_after_add_and_delete_sees_the_new_rows(data: tuple[np.ndarray, np.ndarray]) -> None:
    # Given an index that has answered a search (its float rows are kept from then on)
    ids, vectors = data
    index = FlatIndex.build(ids[:100], vectors[:100])
    query = vectors[150] / np.linalg.norm(vectors[150])
    assert int(ids[150]) not in [a for a, _ in index.search(query, 5)]
    # When a delta adds that anime, then removes it again
    index.add([int(ids[150])], vectors[150:151])
    found = index.search(query, 5)
    index.mark_deleted([int(ids[150])])
    # Then the next searches see each change
    assert found[0][0] == int(ids[150]) and found[0][1] > 0.99
    assert int(ids[150]) not in [a for a, _ in index.search(query, 5)]
