"""The compared methods as (pair score, top-k) functions over catalogue rows: vectors, V1, V2, popularity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from anime_pipeline.evaluation.baselines import V1Model
from anime_pipeline.evaluation.devset import K
from anime_recommender.catalogue import Catalogue

TopK = Callable[[np.ndarray], np.ndarray]  # query rows [q] -> neighbour rows [q, K] (-1 = none)
PairScore = Callable[[np.ndarray, np.ndarray], np.ndarray]  # rows a, rows b -> similarity [n]


def load_vectors(path: Path, name: str, catalogue: Catalogue) -> np.ndarray:
    """Unit vectors in catalogue row order from `.npy` (row order) or `.npz` (`ids` + `name`/`vectors`)."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            key = name if name in data else "vectors"
            vectors = np.asarray(data[key], dtype=np.float32)
            ids = np.asarray(data["ids"], dtype=np.int64) if "ids" in data else None
        if ids is not None:
            position = {int(a): i for i, a in enumerate(ids)}
            missing = [a for a in catalogue.ids if a not in position]
            if missing:
                raise ValueError(f"{path}: no vectors for {len(missing)} catalogue ids (e.g. {missing[:3]})")
            vectors = vectors[[position[a] for a in catalogue.ids]]
    else:
        vectors = np.load(path).astype(np.float32)
    if vectors.shape[0] != len(catalogue):
        raise ValueError(f"{path}: {vectors.shape[0]} vectors for a catalogue of {len(catalogue)}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _topk_from_sims(sims: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    # Not `anime_recommender.topk`: equal scores keep argpartition's order here, and the V1 baselines'
    # reported numbers depend on it (tag Jaccard ties at the 10th place in most rows; breaking them
    # by row moves dev recall@10 from 3.2 % to 3.7 %). Kept so the evaluation report is unchanged.
    sims = sims.astype(np.float64, copy=True)
    sims[np.arange(len(rows)), rows] = -np.inf
    k_eff = min(k, sims.shape[1] - 1)
    part = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    out = np.full((len(rows), k), -1, dtype=np.int64)
    out[:, :k_eff] = np.take_along_axis(part, order, axis=1)
    return out


def _chunked_topk(sim_rows: Callable[[np.ndarray], np.ndarray], k: int, chunk: int = 512) -> TopK:
    def topk(rows: np.ndarray) -> np.ndarray:
        parts = [
            _topk_from_sims(sim_rows(rows[s : s + chunk]), rows[s : s + chunk], k)
            for s in range(0, len(rows), chunk)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)

    return topk


def vector_method(vectors: np.ndarray, k: int = K) -> tuple[PairScore, TopK]:
    """Cosine similarity of unit vectors: pair scores and exact top-k."""

    def pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", vectors[a], vectors[b])

    return pairs, _chunked_topk(lambda rows: vectors[rows] @ vectors.T, k)


def v1_methods(catalogue: Catalogue, k: int = K) -> dict[str, tuple[PairScore, TopK]]:
    """V1 tag-only baselines (`evaluation.baselines`): Jaccard, binary cosine, TF-IDF cosine."""
    methods: dict[str, tuple[PairScore, TopK]] = {}
    for name in ("jaccard", "cosine", "tfidf"):
        model = V1Model.from_catalogue(catalogue, name)
        methods[f"v1_{name}"] = (model.pair_scores, _chunked_topk(model.block_scores, k))
    return methods


def v2_method(neighbours: Path, catalogue: Catalogue, k: int = K) -> tuple[PairScore, TopK]:
    """The teacher from its neighbour lists: pair score = listed score, unlisted pairs score -1."""
    with np.load(neighbours) as data:
        ids = np.asarray(data["ids"], dtype=np.int64)
        nids = np.asarray(data["neighbour_ids"], dtype=np.int64)
        scores = np.asarray(data["scores"], dtype=np.float32)
    listed: dict[int, dict[int, float]] = {}
    rows_of: dict[int, np.ndarray] = {}
    for i, aid in enumerate(ids.tolist()):
        if aid in catalogue:
            listed[aid] = {int(n): float(s) for n, s in zip(nids[i], scores[i], strict=True)}
            rows_of[aid] = np.array([catalogue.row(int(n)) for n in nids[i, :k] if int(n) in catalogue])
    cat_ids = catalogue.ids

    def pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array(
            [listed.get(cat_ids[i], {}).get(cat_ids[j], -1.0) for i, j in zip(a, b, strict=True)],
            dtype=np.float64,
        )

    def topk(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), k), -1, dtype=np.int64)
        for q, r in enumerate(rows):
            found = rows_of.get(cat_ids[int(r)], np.zeros(0, dtype=np.int64))[:k]
            out[q, : len(found)] = found
        return out

    return pairs, topk


def v2_list_rows(neighbours: Path, catalogue: Catalogue, depth: int) -> TopK:
    """The first `depth` entries of each anime's V2 list as catalogue rows (-1 = none)."""
    with np.load(neighbours) as data:
        ids = np.asarray(data["ids"], dtype=np.int64)
        nids = np.asarray(data["neighbour_ids"][:, :depth], dtype=np.int64)
    listed = {int(a): i for i, a in enumerate(ids.tolist())}
    cat_ids = np.asarray(catalogue.ids, dtype=np.int64)
    pos = np.clip(np.searchsorted(cat_ids, nids), 0, len(cat_ids) - 1)
    rows_of = np.where(cat_ids[pos] == nids, pos, -1)
    empty = np.full(nids.shape[1], -1, dtype=np.int64)

    def topk(rows: np.ndarray) -> np.ndarray:
        out = [rows_of[listed[cat_ids[int(r)]]] if int(cat_ids[int(r)]) in listed else empty for r in rows]
        return np.stack(out) if out else np.zeros((0, nids.shape[1]), dtype=np.int64)

    return topk


def popularity_method(catalogue: Catalogue, k: int = K) -> TopK:
    """Reference: the same top-k most-members list for every query (the query itself excluded)."""
    members = np.array([a.members or 0 for a in catalogue], dtype=np.float64)
    best = np.argsort(-members, kind="stable")[: k + 1]

    def topk(rows: np.ndarray) -> np.ndarray:
        return np.stack([best[best != r][:k] for r in rows]) if len(rows) else np.zeros((0, k), np.int64)

    return topk
