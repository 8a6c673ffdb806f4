"""VectorIndex: label↔id mapping, recall against brute force, filtered search, updates, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anime_recommender import index as index_module
from anime_recommender.index import UnknownAnimeError, VectorIndex

N, DIM, K = 1500, 32, 10


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    # Sparse, shuffled anime ids: labels must never be confused with ids or row numbers.
    ids = rng.permutation(np.arange(N, dtype=np.int64) * 7 + 3)
    return ids, _unit(rng, N)


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray]) -> VectorIndex:
    ids, vecs = data
    return VectorIndex.build(ids, vecs, M=16, ef_construction=100, ef=64)


def _brute(
    ids: np.ndarray, vecs: np.ndarray, query: np.ndarray, k: int, mask: np.ndarray | None = None
) -> list[int]:
    sims = vecs @ query
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
    top = np.argsort(-sims)[:k]
    return [int(ids[i]) for i in top if np.isfinite(sims[i])]


def test_label_id_mapping_returns_anime_ids(built: VectorIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    for row in (0, 17, N - 1):
        hits = built.search(vecs[row], 3)
        assert hits[0][0] == ids[row]
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(built.vector(int(ids[row])), vecs[row], atol=1e-6)
    assert len(built) == N and int(ids[5]) in built and 0 not in built
    with pytest.raises(UnknownAnimeError):
        built.vector(0)


def test_vectors_batch_matches_single_lookups(
    built: VectorIndex, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    ids, vecs = data
    wanted = [int(ids[3]), 0, int(ids[900]), int(ids[3])]  # 0 is no anime id; duplicates allowed
    loaded = VectorIndex.load(built.save(tmp_path / "idx")[0].parent, ef=64)
    for index in (built, loaded):
        matrix, present = index.vectors(wanted)
        assert matrix.shape == (4, DIM) and matrix.dtype == np.float32
        assert present.tolist() == [True, False, True, True]
        np.testing.assert_array_equal(matrix[0], index.vector(int(ids[3])))
        np.testing.assert_array_equal(matrix[2], index.vector(int(ids[900])))
        assert not matrix[1].any()  # absent ids are zero rows, so their cosine is 0
    # A deleted id is absent from then on; the others are unchanged.
    loaded.mark_deleted([int(ids[900])])
    matrix, present = loaded.vectors(wanted)
    assert present.tolist() == [True, False, False, True]
    np.testing.assert_allclose(matrix[0], vecs[3], atol=1e-6)
    assert loaded.vectors([])[0].shape == (0, DIM)


def test_recall_at_10_vs_brute_force(built: VectorIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    queries = _unit(np.random.default_rng(1), 200)
    found, sims = built.knn_batch(queries, K)
    hits = sum(len(set(found[i].tolist()) & set(_brute(ids, vecs, q, K))) for i, q in enumerate(queries))
    assert hits / (len(queries) * K) >= 0.99
    # cosine from 'ip' distance: the reported score is the true inner product
    row = {int(a): r for r, a in enumerate(ids)}
    np.testing.assert_allclose(sims[0], vecs[[row[int(a)] for a in found[0]]] @ queries[0], atol=1e-5)


@pytest.mark.parametrize("path", ["exact", "overfetch", "filter"])
@pytest.mark.parametrize("fraction", [0.01, 0.3])
def test_filtered_search_returns_k_allowed_results(
    built: VectorIndex,
    data: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    fraction: float,
) -> None:
    ids, vecs = data
    if path != "exact":
        monkeypatch.setattr(index_module, "EXACT_SCAN_MAX", 0)
    if path == "filter":
        monkeypatch.setattr(index_module, "OVERFETCH_MAX", 0)
    rng = np.random.default_rng(3)
    mask = rng.random(N) < fraction
    allowed = {int(i) for i in ids[mask]}
    recall = []
    for q in _unit(rng, 20):
        hits = built.search(q, K, allowed=allowed)
        assert len(hits) == K
        assert {a for a, _ in hits} <= allowed
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        recall.append(len({a for a, _ in hits} & set(_brute(ids, vecs, q, K, mask))) / K)
    assert np.mean(recall) >= (1.0 if path == "exact" else 0.95)


def test_filter_smaller_than_k_and_exclude(built: VectorIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    few = {int(ids[1]), int(ids[2]), int(ids[3]), 999_999}  # one unknown id: ignored
    assert {a for a, _ in built.search(vecs[0], K, allowed=few)} == few - {999_999}
    excluded = [int(ids[0])]
    hits = built.search(vecs[0], K, exclude=excluded)
    assert len(hits) == K and int(ids[0]) not in {a for a, _ in hits}
    assert built.search(vecs[0], K, allowed=set()) == []
    assert built.search(vecs[0], 0) == []


def test_add_replace_delete_resize_and_persist(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    ids, vecs = data
    rng = np.random.default_rng(11)
    base_ids, base = ids[:300], vecs[:300]
    index = VectorIndex.build(base_ids, base, M=16, ef_construction=100, ef=64)
    assert index.capacity == 300

    # add beyond capacity: resize happens inside add
    new_ids = np.arange(100_000, 100_050, dtype=np.int64)
    new_vecs = _unit(rng, 50)
    index.add(new_ids, new_vecs)
    assert len(index) == 350 and index.capacity >= 350
    assert index.search(new_vecs[7], 1)[0][0] == 100_007

    # replace: an existing id moves to a new vector, keeping one entry
    target = int(base_ids[0])
    moved = _unit(rng, 1)[0]
    index.replace([target], moved[None, :])
    assert index.search(moved, 1)[0][0] == target
    assert len(index) == 350
    np.testing.assert_allclose(index.vector(target), moved, atol=1e-6)

    # delete: never returned again, not even under a filter or exact scan
    gone = [int(base_ids[1]), int(base_ids[2]), 100_000]
    assert index.mark_deleted(gone + [123_456_789]) == 3
    assert index.mark_deleted(gone) == 0  # idempotent, no hnswlib "already deleted" error
    assert len(index) == 347
    for aid in gone:
        assert aid not in index
    assert all(a not in gone for a, _ in index.search(base[1], 20))
    assert all(a not in gone for a, _ in index.search(base[1], 20, allowed=set(gone) | {int(base_ids[3])}))

    # add reuses deleted slots (element count stays) and a deleted id can come back under a new label
    element_count = index._index.element_count
    back = _unit(rng, 2)
    index.add([int(base_ids[1]), 20_000], back)
    assert index._index.element_count == element_count
    assert index.search(back[0], 1)[0][0] == int(base_ids[1])
    assert index.search(back[1], 1)[0][0] == 20_000

    # persistence keeps ids, deletions and vectors; ef comes from the caller (the manifest)
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", ef=32)
    assert loaded.params.ef == 32 and loaded._index.ef == 32
    np.testing.assert_array_equal(loaded.ids, index.ids)
    assert 100_000 not in loaded and int(base_ids[2]) not in loaded and 20_000 in loaded
    np.testing.assert_allclose(loaded.vector(target), moved, atol=1e-6)
    q = _unit(rng, 1)[0]
    got, want = loaded.search(q, 10), index.search(q, 10)
    assert [a for a, _ in got] == [a for a, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-6)

    # updates after load: the one remaining deleted slot is reused, then the index grows
    before = loaded._index.element_count
    loaded.add([30_000, 30_001], _unit(rng, 2))
    assert loaded._index.element_count == before + 1
    assert 30_000 in loaded and 30_001 in loaded


def test_flat_view_matches_hnswlib_storage(built: VectorIndex, tmp_path: Path) -> None:
    built.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", ef=64)
    sample = [int(a) for a in loaded.ids[:50]]
    labels = [loaded.label(a) for a in sample]
    stored = np.asarray(loaded._index.get_items(labels), dtype=np.float32)
    np.testing.assert_array_equal(np.stack([loaded.vector(a) for a in sample]), stored)


def test_build_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unique"):
        VectorIndex.build([1, 1], _unit(rng, 2))
    with pytest.raises(ValueError, match="ids but"):
        VectorIndex.build([1, 2, 3], _unit(rng, 2))
    with pytest.raises(ValueError, match="non-zero"):
        VectorIndex.build([1, 2], np.zeros((2, DIM), dtype=np.float32))
