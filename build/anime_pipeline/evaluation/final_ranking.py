"""The API's final ranking over candidate pools, vectorised so tuning is a few seconds per config."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.evaluation.baselines import V1Model
from anime_pipeline.evaluation.devset import DevSet, K, dev_metrics
from anime_pipeline.evaluation.methods import TopK
from anime_pipeline.progress import progress
from anime_recommender.artifacts import index_dir
from anime_recommender.catalogue import Catalogue
from anime_recommender.index import FlatIndex
from anime_recommender.ranking import (
    CandidateColumns,
    FranchiseIndex,
    RankingConfig,
    catalogue_popularity,
    quality,
    score_arrays,
    spread_franchises,
    year_proximity,
)
from anime_recommender.similarity import SIMILAR_STORY_POOL, SIMILAR_V4_POOL
from anime_recommender.topk import top_k_inner_products

# The knobs searched by `--tune` (kept few on purpose: the dev set is small).
TUNE_GRID: dict[str, tuple[float, ...]] = {
    "w_v3": (0.5, 1.0),
    "w_tags": (0.5, 1.0, 1.5, 3.0),
    "w_popularity": (3.0, 4.0, 5.0),
    "w_quality": (0.0, 0.25, 0.5),
    "w_year": (0.25, 0.5, 1.0),
}
#: Added to the grid when the bundle has a story index.
STORY_TUNE_GRID: dict[str, tuple[float, ...]] = {"w_story": (0.0, 1.0, 2.0, 3.0)}


def story_vectors(bundle: Path | None, catalogue: Catalogue) -> np.ndarray | None:
    """The bundle's story-index vectors in catalogue row order (zero rows for anime without a
    synopsis), as the API scores them; None when the bundle has no story index."""
    directory = None if bundle is None else bundle / index_dir("story")
    if directory is None or not directory.is_dir():
        return None
    index = FlatIndex.load(directory)
    vectors, present = index.vectors(catalogue.ids)
    return vectors if present.any() else None


class RowSiblings:
    """Catalogue row → rows of its franchise siblings (`FranchiseIndex.siblings`), memoised."""

    def __init__(self, catalogue: Catalogue, franchise: FranchiseIndex) -> None:
        self._catalogue, self._franchise = catalogue, franchise
        self._memo: dict[int, frozenset[int]] = {}

    def __call__(self, row: int) -> frozenset[int]:
        found = self._memo.get(row)
        if found is None:
            cat = self._catalogue
            found = frozenset(cat.row(i) for i in self._franchise.siblings(cat[row]))
            self._memo[row] = found
        return found


@dataclass
class CandidatePools:
    """Per query row: the API's candidates (its franchise siblings left out), padded to [Q, C]."""

    query_rows: np.ndarray
    rows: np.ndarray  # [Q, C] catalogue rows, -1 = padding
    v4: np.ndarray
    v3: np.ndarray
    pop: np.ndarray
    qual: np.ndarray
    years: np.ndarray
    query_years: np.ndarray
    tags: np.ndarray  # [Q, C] tag Jaccard with the query
    siblings: RowSiblings  # what one-per-franchise spreading asks of each listed row
    story: np.ndarray | None = None  # [Q, C] story cosine with the query (None: no story index)

    @property
    def valid(self) -> np.ndarray:
        return self.rows >= 0


@dataclass(frozen=True)
class PoolDepths:
    """How many candidates each source gives a similar list (the API's `SIMILAR_*_POOL`s)."""

    v4: int = SIMILAR_V4_POOL
    v3: int = 0
    story: int = SIMILAR_STORY_POOL


def build_pools(
    catalogue: Catalogue,
    siblings: RowSiblings,
    v4: np.ndarray,
    v3: np.ndarray,
    query_rows: np.ndarray,
    depths: PoolDepths,
    v2_top: TopK | None = None,
    story: np.ndarray | None = None,
) -> CandidatePools:
    """What the API sees: top-`depths.v4` by V4 ∪ top-`depths.v3` by V3 (as the two index searches
    would return) ∪ the V2 list (`v2_top`, rows) ∪ with `story` vectors (row order, zero rows for no
    synopsis) the top-`depths.story` by story cosine, minus the query's franchise siblings."""
    years = catalogue.numbers("year")
    # What no served list shows (promotional videos) is no candidate here either.
    unlisted = {int(r) for r in np.flatnonzero(~catalogue.listed_mask())}
    pop_all = catalogue_popularity(catalogue)
    qual_all = quality(catalogue.numbers("score"))
    lists: list[np.ndarray] = []
    jaccard = V1Model.from_catalogue(catalogue, "jaccard")

    def top_rows(vectors: np.ndarray, rows: np.ndarray, depth: int) -> np.ndarray:
        depth = min(depth, len(catalogue) - 1)
        if depth <= 0:
            return np.zeros((len(rows), 0), dtype=np.int64)
        return top_k_inner_products(vectors[rows], vectors, depth, exclude=rows, block_size=512)[0]

    for s in progress(range(0, len(query_rows), 512), desc="candidate pools", unit="chunk", leave=False):
        rows = query_rows[s : s + 512]
        top4, top3 = top_rows(v4, rows, depths.v4), top_rows(v3, rows, depths.v3)
        top2 = v2_top(rows) if v2_top is not None else np.zeros((len(rows), 0), dtype=np.int64)
        top_story = top_rows(story, rows, depths.story) if story is not None else None
        for q, r in enumerate(rows):
            banned = siblings(int(r)) | {int(r), -1} | unlisted
            first = [x for x in top4[q].tolist() if x not in banned]
            joined = set(top3[q].tolist()) | set(top2[q].tolist())
            if top_story is not None and story is not None and story[r].any():
                joined |= set(top_story[q].tolist())
            extra = sorted(joined - banned - set(first))
            lists.append(np.array(first + extra, dtype=np.int64))
    width = max((len(x) for x in lists), default=1)
    rows_arr = np.full((len(lists), width), -1, dtype=np.int64)
    for q, cand in enumerate(lists):
        rows_arr[q, : len(cand)] = cand
    safe = np.maximum(rows_arr, 0)
    qv4, qv3 = v4[query_rows], v3[query_rows]
    tag_overlap = jaccard.pair_scores(np.repeat(query_rows, safe.shape[1]), safe.ravel()).reshape(safe.shape)
    return CandidatePools(
        query_rows=query_rows,
        rows=rows_arr,
        v4=np.einsum("qd,qcd->qc", qv4, v4[safe]),
        v3=np.einsum("qd,qcd->qc", qv3, v3[safe]),
        pop=pop_all[safe],
        qual=qual_all[safe],
        years=years[safe],
        query_years=years[query_rows][:, None],
        tags=tag_overlap.astype(np.float64),
        siblings=siblings,
        story=None if story is None else np.einsum("qd,qcd->qc", story[query_rows], story[safe]),
    )


def rank_pools(pools: CandidatePools, config: RankingConfig, k: int = K) -> np.ndarray:
    """Top-k catalogue rows [Q, k] of the final ranking for each pooled query (-1 = none).

    The API's order (`rank_candidates`): score, then V4 similarity, then id (= row order), with
    one entry per franchise before any repeat (`spread_franchises`).
    """
    score, _ = score_arrays(
        config,
        CandidateColumns(
            v4=pools.v4,
            v3=pools.v3,
            pop=pools.pop,
            year_prox=year_proximity(pools.query_years, pools.years, config.year_scale),
            valid=pools.valid,
            qual=pools.qual,
            tags=pools.tags,
            story=pools.story,
        ),
    )
    order = np.lexsort((pools.rows, -pools.v4, -score), axis=-1)
    out = np.full((len(score), k), -1, dtype=np.int64)
    for q in range(len(score)):
        ranked = [int(pools.rows[q, j]) for j in order[q] if np.isfinite(score[q, j])]
        top = spread_franchises(ranked, pools.siblings, k)
        out[q, : len(top)] = top
    return out


# ---------------------------------------------------------------------------------------------
# Tuning
# ---------------------------------------------------------------------------------------------


def _configs(base: RankingConfig, grid: dict[str, tuple[float, ...]]) -> list[RankingConfig]:
    names = list(grid)
    out = []
    for values in itertools.product(*(grid[n] for n in names)):
        update: dict[str, Any] = dict(zip(names, values, strict=True))
        out.append(base.model_copy(update=update))
    return out


def _objective(m: dict[str, float | int]) -> float:
    # Cross-franchise recall alone: siblings have their own list now, so nothing trades against it.
    rec = float(m["recall_at_10"])
    return 0.0 if math.isnan(rec) else rec


def tune_ranking(
    pools: CandidatePools,
    dev: DevSet,
    base: RankingConfig,
    grid: dict[str, tuple[float, ...]] | None = None,
    folds: int = 2,
    seed: int = 13,
) -> dict[str, Any]:
    """Grid search on dev: the best config overall, and per fold (tune on one half, test on the other)."""
    configs = _configs(base, grid or TUNE_GRID)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(pools.query_rows)) % folds
    results: list[list[dict[str, float | int]]] = []  # [config][fold]
    for cfg in progress(configs, desc="tuning ranking", unit="config"):
        top = rank_pools(pools, cfg)
        results.append(
            [dev_metrics(top[fold_of == f], pools.query_rows[fold_of == f], dev) for f in range(folds)]
        )

    def merged(per_fold: list[dict[str, float | int]]) -> dict[str, float | int]:
        t = sum(int(m["target_pairs"]) for m in per_fold)
        s = sum(int(m["sibling_pairs"]) for m in per_fold)
        # Pair-weighted (micro) means of the folds; a fold without pairs adds nothing (its share is NaN).
        hits_t = sum(float(m["recall_at_10"]) * int(m["target_pairs"]) for m in per_fold if m["target_pairs"])
        hits_s = sum(
            float(m["siblings_at_10"]) * int(m["sibling_pairs"]) for m in per_fold if m["sibling_pairs"]
        )
        return {
            "recall_at_10": hits_t / t if t else float("nan"),
            "target_pairs": t,
            "siblings_at_10": hits_s / s if s else float("nan"),
            "sibling_pairs": s,
        }

    all_dev = [merged(r) for r in results]
    best = max(range(len(configs)), key=lambda i: _objective(all_dev[i]))
    fold_reports = []
    for f in range(folds):
        train = [merged([r[g] for g in range(folds) if g != f]) for r in results]
        pick = max(range(len(configs)), key=lambda i: _objective(train[i]))
        fold_reports.append(
            {
                "held_out_fold": f,
                "chosen": _knobs(configs[pick], grid or TUNE_GRID),
                "tuning_folds": train[pick],
                "held_out": results[pick][f],
            }
        )
    return {
        "grid": {k: list(v) for k, v in (grid or TUNE_GRID).items()},
        "configs_tried": len(configs),
        "best": configs[best].model_dump(),
        "best_dev": all_dev[best],
        "folds": fold_reports,
    }


def _knobs(cfg: RankingConfig, grid: dict[str, tuple[float, ...]]) -> dict[str, float]:
    return {k: float(getattr(cfg, k)) for k in grid}
