"""The dense side of hybrid search over the bundle's encoder and vector indexes.

`EncoderDense` is both callables `hybrid.HybridRanker.search` takes: text → (id, cosine) pool,
scored as today's free-text search scores it (cos_v4 + w_v3 · cos_v3 over the union of both
indexes' top hits; the popularity prior is the ranker's), and anchor ids → the pool most similar
to the mean of their vectors. `ListAnchors` is the anchor side without vectors (tier V2): the
mean of the anchors' V2 neighbour-list scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

Scored = tuple[int, float]


class VectorIndexLike(Protocol):
    """What `anime_recommender.index.VectorIndex` offers."""

    def search(
        self, vector: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]: ...

    def vector(self, anime_id: int) -> np.ndarray: ...

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...


class EncoderLike(Protocol):
    """What `anime_recommender.encoder.OnnxEncoder` offers."""

    def encode(self, texts: Sequence[str]) -> Mapping[str, np.ndarray]: ...


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-6:
        return None
    return (vector / norm).astype(np.float32)


class EncoderDense:
    """Dense pools for hybrid search.

    Args:
        encoder: the ONNX text encoder.
        index: the active tier's index (space `space`).
        space: the encoder output matching `index` ("v4" or "v3").
        secondary: the V3 index while serving V4 (adds cos_v3 · `w_v3`), or None.
        w_v3: weight of the V3 cosine (`RankingConfig.text_w_v3`).
        story: the story index (synopsis passages in V3's space), or None. With it, free text is
            matched against the synopses and the V3 vectors, each hit scored by the better of its two
            cosines: a plot description meets the story itself, not a title and genre list (dense-only
            hit@10 of the own queries: 44 % against 12 % for cos_v4 + cos_v3). Anchors are unchanged.
    """

    def __init__(
        self,
        encoder: EncoderLike,
        index: VectorIndexLike,
        space: str = "v4",
        secondary: VectorIndexLike | None = None,
        w_v3: float = 1.0,
        story: VectorIndexLike | None = None,
    ) -> None:
        self._encoder = encoder
        self._index = index
        self._space = space
        self._secondary = secondary
        self._w_v3 = w_v3
        self._story = story if secondary is not None else None

    def __call__(self, text: str, k: int, allowed: set[int] | None) -> list[Scored]:
        """Up to k (id, cos_v4 + w_v3 · cos_v3) for free text, best first."""
        if k <= 0 or not text.strip() or (allowed is not None and not allowed):
            return []
        encoded = self._encoder.encode([text])
        if self._story is not None and "v3" in encoded:
            return self._story_pool(encoded["v3"][0], k, allowed)
        query = _unit(np.asarray(encoded[self._space][0], dtype=np.float32))
        if query is None:
            return []
        found = dict(self._index.search(query, k, allowed=allowed))
        query_v3 = None
        if self._secondary is not None and "v3" in encoded:
            query_v3 = _unit(np.asarray(encoded["v3"][0], dtype=np.float32))
            if query_v3 is not None:
                found.update(dict(self._secondary.search(query_v3, k, allowed=allowed)))
        if not found:
            return []
        ids = list(found)
        matrix, _ = self._index.vectors(ids)
        score = matrix @ query
        if self._secondary is not None and query_v3 is not None:
            matrix_v3, _ = self._secondary.vectors(ids)
            score = score + self._w_v3 * (matrix_v3 @ query_v3)
        ranked = sorted(zip(ids, score.tolist(), strict=True), key=lambda pair: (-pair[1], pair[0]))
        return [(int(a), float(s)) for a, s in ranked[:k]]

    def _story_pool(self, raw_v3: np.ndarray, k: int, allowed: set[int] | None) -> list[Scored]:
        """Up to k (id, max(cos_story, cos_v3)) for a V3 query vector, best first."""
        assert self._story is not None and self._secondary is not None
        query = _unit(np.asarray(raw_v3, dtype=np.float32))
        if query is None:
            return []
        best: dict[int, float] = {}
        for index in (self._story, self._secondary):
            for anime_id, cos in index.search(query, k, allowed=allowed):
                best[int(anime_id)] = max(float(cos), best.get(int(anime_id), -1.0))
        ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))
        return ranked[:k]

    def anchors(self, anchor_ids: Sequence[int], k: int, allowed: set[int] | None) -> list[Scored]:
        """Up to k (id, cosine) closest to the mean vector of the anchor anime (anchors excluded)."""
        vectors = []
        for anime_id in anchor_ids:
            try:
                vectors.append(np.asarray(self._index.vector(anime_id), dtype=np.float32))
            except KeyError:
                continue
        if not vectors or k <= 0 or (allowed is not None and not allowed):
            return []
        query = _unit(np.mean(vectors, axis=0))
        if query is None:
            return []
        banned = set(anchor_ids)
        hits = self._index.search(query, k + len(banned), allowed=allowed)
        return [(int(a), float(s)) for a, s in hits if a not in banned][:k]


class NeighbourListsLike(Protocol):
    """What `anime_recommender.neighbours.NeighbourLists` offers."""

    def for_id(self, anime_id: int, k: int) -> list[tuple[int, float]]: ...


class ListAnchors:
    """Anchor pools from the V2 neighbour lists (tier V2 has no vectors): mean score over the anchors."""

    def __init__(self, neighbours: NeighbourListsLike) -> None:
        self._neighbours = neighbours

    def __call__(self, anchor_ids: Sequence[int], k: int, allowed: set[int] | None) -> list[Scored]:
        """Up to k (id, mean V2 score over the anchors' lists), best first; anchors excluded."""
        if k <= 0 or not anchor_ids or (allowed is not None and not allowed):
            return []
        banned = set(anchor_ids)
        total: dict[int, float] = {}
        for anchor in anchor_ids:
            try:
                found = self._neighbours.for_id(anchor, len(banned) + max(k, 200))
            except KeyError:
                continue
            for anime_id, score in found:
                if anime_id not in banned and (allowed is None or anime_id in allowed):
                    total[int(anime_id)] = total.get(int(anime_id), 0.0) + float(score) / len(anchor_ids)
        ranked = sorted(total.items(), key=lambda pair: (-pair[1], pair[0]))
        return ranked[:k]
