"""V1 baselines: tag-only similarities, kept for evaluation against the V2 teacher and the embeddings.

Build-only (`anime-build evaluate` reads them); the API never ranks with V1, so it is not in the layer.

* ``jaccard``: ``|A∩B| / |A∪B|`` on tag sets.
* ``cosine``: binary tag vectors, ``|A∩B| / sqrt(|A| |B|)``.
* ``tfidf``: cosine of TF-IDF vectors; a tag occurs at most once per anime, so tf = 1 and the
  weight is the smoothed IDF ``ln((1 + N) / (1 + df)) + 1``: ``Σ_{A∩B} idf² / (‖idf_A‖ ‖idf_B‖)``.

An anime without tags has similarity 0 with everything. Each method has a pure-Python reference
in `V1_METHODS` (name → function of two tag sets and the IDF table) and a vectorised `V1Model`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from anime_recommender.catalogue import Catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import tag_idf
from anime_recommender.topk import top_k_blockwise

V1Method = Literal["jaccard", "cosine", "tfidf"]
V1PairFunction = Callable[[frozenset[str], frozenset[str], Mapping[str, float]], float]


def jaccard(a: frozenset[str], b: frozenset[str], idf: Mapping[str, float]) -> float:
    """|A∩B| / |A∪B| (idf unused)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def binary_cosine(a: frozenset[str], b: frozenset[str], idf: Mapping[str, float]) -> float:
    """|A∩B| / sqrt(|A| |B|) (idf unused)."""
    return len(a & b) / math.sqrt(len(a) * len(b)) if a and b else 0.0


def tfidf_cosine(a: frozenset[str], b: frozenset[str], idf: Mapping[str, float]) -> float:
    """Cosine of the IDF-weighted tag vectors."""
    if not a or not b:
        return 0.0
    norm_a = math.sqrt(sum(idf[t] ** 2 for t in a))
    norm_b = math.sqrt(sum(idf[t] ** 2 for t in b))
    return sum(idf[t] ** 2 for t in a & b) / (norm_a * norm_b)


V1_METHODS: dict[str, V1PairFunction] = {"jaccard": jaccard, "cosine": binary_cosine, "tfidf": tfidf_cosine}


@dataclass(frozen=True)
class V1Model:
    """One V1 method fitted to a catalogue: vectorised pair scores and all-pairs top-k."""

    method: V1Method
    ids: np.ndarray
    vectors: np.ndarray  # float32 [n, tags]; binary for jaccard, L2-normalised for the cosines
    sizes: np.ndarray  # float32 [n]; |A| for jaccard (1 for empty sets, which keeps 0/x finite)
    idf: dict[str, float]

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, method: str) -> V1Model:
        """Fit `method` ('jaccard', 'cosine' or 'tfidf') to the catalogue's tags."""
        if method not in V1_METHODS:
            raise ValueError(f"unknown V1 method {method!r}; choose from {sorted(V1_METHODS)}")
        df: Counter[str] = Counter()
        for anime in catalogue:
            df.update(set(anime.tags))
        n = len(catalogue)
        idf = {t: tag_idf(d, n) for t, d in df.items()}
        tags = sorted(df)
        col = {t: j for j, t in enumerate(tags)}
        binary = np.zeros((n, len(tags)), dtype=np.float32)
        for row, anime in enumerate(catalogue):
            binary[row, [col[t] for t in set(anime.tags)]] = 1.0
        sizes = binary.sum(axis=1)
        if method == "jaccard":
            vectors = binary
        else:
            weights = np.array([idf[t] for t in tags], dtype=np.float32)
            weighted = binary * weights if method == "tfidf" else binary
            norms = np.linalg.norm(weighted, axis=1)
            vectors = (weighted / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
        return cls(
            method=method,  # type: ignore[arg-type]
            ids=np.asarray(catalogue.ids, dtype=np.int64),
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            sizes=np.where(sizes > 0, sizes, 1.0).astype(np.float32),
            idf=idf,
        )

    def _finish(self, inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
        if self.method == "jaccard":
            return inter / (size_a + size_b - inter)
        return inter

    def block_scores(self, rows: np.ndarray) -> np.ndarray:
        """Similarity of `rows` against every anime: float32 [len(rows), n] (self included)."""
        rows = np.asarray(rows, dtype=np.int64)
        inter = self.vectors[rows] @ self.vectors.T
        return self._finish(inter, self.sizes[rows, None], self.sizes[None, :])

    def pair_scores(self, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
        """Similarity of the pairs (rows_a[i], rows_b[i]): float32 [len(rows_a)]."""
        rows_a = np.asarray(rows_a, dtype=np.int64)
        rows_b = np.asarray(rows_b, dtype=np.int64)
        inter = np.einsum("ij,ij->i", self.vectors[rows_a], self.vectors[rows_b])
        return self._finish(inter, self.sizes[rows_a], self.sizes[rows_b]).astype(np.float32)

    def top_k(
        self, k: int = 100, rows: Sequence[int] | np.ndarray | None = None, block_size: int = 1024
    ) -> NeighbourLists:
        """Top-k neighbour lists by this method (self excluded; ties to the lower id), blockwise."""
        n = len(self.ids)
        query = np.arange(n, dtype=np.int64) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        k = max(0, min(k, n - 1))
        nb, sc = top_k_blockwise(self.block_scores, query, k, exclude=query, block_size=block_size)
        return NeighbourLists(ids=self.ids[query], neighbour_ids=self.ids[nb], scores=sc.astype(np.float16))
