"""Numpy metrics shared by the train and export stages (and usable by the evaluation report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anime_recommender.catalogue import Catalogue
from anime_recommender.topk import top_k_inner_products

SPLITS = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class TripletSet:
    """The teacher's triplets (contract format), as anime ids plus split codes."""

    anchor: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    margin: np.ndarray
    split: np.ndarray

    @classmethod
    def load(cls, path: Path) -> TripletSet:
        """Read `.work/triplets/triplets.npz` (anchor/positive/negative ids, margin, split)."""
        with np.load(path) as data:
            return cls(
                anchor=data["anchor"].astype(np.int64),
                positive=data["positive"].astype(np.int64),
                negative=data["negative"].astype(np.int64),
                margin=data["margin"].astype(np.float32),
                split=data["split"].astype(np.uint8),
            )

    def __len__(self) -> int:
        return int(self.anchor.shape[0])

    def rows(self, catalogue: Catalogue, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(anchor, positive, negative) rows of one split; triplets naming unknown ids are dropped."""
        ids = np.asarray(catalogue.ids, dtype=np.int64)
        select = self.split == SPLITS[split]
        a, p, n = self.anchor[select], self.positive[select], self.negative[select]
        ra, rp, rn = (np.searchsorted(ids, x) for x in (a, p, n))
        ra, rp, rn = (np.minimum(r, len(ids) - 1) for r in (ra, rp, rn))
        known = (ids[ra] == a) & (ids[rp] == p) & (ids[rn] == n)
        return ra[known], rp[known], rn[known]


def triplet_accuracy(vectors: np.ndarray, a: np.ndarray, p: np.ndarray, n: np.ndarray) -> float:
    """Share of triplets where cos(anchor, positive) > cos(anchor, negative) (unit vectors)."""
    if len(a) == 0:
        return float("nan")
    sp = np.einsum("ij,ij->i", vectors[a], vectors[p])
    sn = np.einsum("ij,ij->i", vectors[a], vectors[n])
    return float(np.mean(sp > sn))


def top_k_rows(vectors: np.ndarray, query_rows: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Exact top-k rows by inner product for each query row, excluding the row itself (ties: lower row)."""
    rows = np.asarray(query_rows, dtype=np.int64)
    return top_k_inner_products(vectors[rows], vectors, k, exclude=rows, block_size=chunk)[0]


def recall_at_k(found: np.ndarray, truth: list[np.ndarray]) -> float:
    """Mean over queries of |found_i ∩ truth_i| / |truth_i| (queries with empty truth skipped)."""
    scores = [
        len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True) if len(t)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def teacher_top_k(
    neighbours_path: Path, catalogue: Catalogue, anchor_rows: np.ndarray, k: int
) -> list[np.ndarray]:
    """The teacher's top-k neighbour rows of each anchor row, read from the neighbour-list npz."""
    with np.load(neighbours_path) as data:
        ids = data["ids"].astype(np.int64)
        neighbour_ids = data["neighbour_ids"].astype(np.int64)
    position = {int(aid): i for i, aid in enumerate(ids)}
    truth: list[np.ndarray] = []
    for row in anchor_rows:
        i = position.get(catalogue[int(row)].id)
        if i is None:
            truth.append(np.zeros(0, dtype=np.int64))
            continue
        rows = [catalogue.row(int(n)) for n in neighbour_ids[i, :k] if int(n) in catalogue]
        truth.append(np.asarray(rows, dtype=np.int64))
    return truth


def teacher_recall(
    vectors: np.ndarray,
    catalogue: Catalogue,
    anchor_rows: np.ndarray,
    neighbours_path: Path | None,
    k: int = 10,
) -> float | None:
    """Recall@k of the embedding's neighbours against the teacher's top-k (None without teacher lists)."""
    if neighbours_path is None or not neighbours_path.is_file() or len(anchor_rows) == 0:
        return None
    anchors = np.unique(anchor_rows)
    return recall_at_k(top_k_rows(vectors, anchors, k), teacher_top_k(neighbours_path, catalogue, anchors, k))
