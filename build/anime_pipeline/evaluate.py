"""`anime-build evaluate`: the evaluation report (and the tuning of the final ranking).

Writes `.work/eval/report.json` and `report.md` with, per method (V1 jaccard/cosine/tfidf,
V2 teacher, V3, V4 fp32, V4 int8, and the FINAL ranking):

* **test triplet accuracy** — share of held-out test triplets (split code 2 in the teacher's
  triplets file: the split is by anchor anime, so test anchors never occur as anchors in
  training; positives/negatives are drawn by the teacher from the anchor's V2 list) where
  sim(anchor, positive) > sim(anchor, negative); ties count ½ (V1's tag scores tie often);
* **teacher recall@10** — |top-10 ∩ V2 top-10| / |V2 top-10|, mean over unique test anchors;
* **dev recall@10** — on the development recommendations (if the CSV exists): over source
  anime, targets with ≥ 2 votes that are *not* the same franchise (`same_franchise`); hits of
  those targets in the source's top-10 divided by their number (micro average over pairs);
* **franchise siblings@10** — for each dev source anime with 1–10 franchise siblings
  (`FranchiseIndex.siblings`), the share of its siblings in its top-10 (micro average); 0 for
  the final ranking by design, whose `items` never hold a sibling;
* **franchise recall** — for the same sources (franchises of 2–11 entries), the share of their
  siblings found in the `franchise` list the API returns beside `items` (`franchise_entries`).

Vectors come as `.npy` files in catalogue row order (or `.npz` with `ids` + a key of the
method's name, realigned by id): the embeddings stage writes them; `--vectors NAME=PATH` overrides.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline import search_eval
from anime_pipeline.baselines import V1Model
from anime_pipeline.embedding_eval import TripletSet
from anime_pipeline.paths import REPO_ROOT, BuildPaths
from anime_pipeline.progress import progress
from anime_recommender.catalogue import Catalogue
from anime_recommender.ranking import (
    FranchiseIndex,
    RankingConfig,
    franchise_entries,
    popularity,
    quality,
    same_franchise,
    score_arrays,
    spread_franchises,
    year_proximity,
)
from anime_recommender.similarity import SIMILAR_V2_POOL, SIMILAR_V3_POOL, SIMILAR_V4_POOL
from anime_recommender.topk import top_k_inner_products

DEFAULT_DEV_CSV = REPO_ROOT.parent / "shared" / "eval" / "mal_user_recommendations_dev.csv"
# Vector files the embeddings stage writes (catalogue row order); missing ones are skipped.
# (the export stage writes them: v3/v4_int8 from the shipped int8 graph, *_fp32 for comparison).
DEFAULT_VECTOR_NAMES: tuple[str, ...] = ("v3_fp32", "v3", "v4_fp32", "v4_int8")
K = 10
MIN_VOTES = 2
MAX_SIBLINGS = 10  # franchises up to 11 entries: every sibling could fit in a top-10

TopK = Callable[[np.ndarray], np.ndarray]  # query rows [q] -> neighbour rows [q, K] (-1 = none)
PairScore = Callable[[np.ndarray, np.ndarray], np.ndarray]  # rows a, rows b -> similarity [n]

# The knobs searched by `--tune` (kept few on purpose: the dev set is small).
TUNE_GRID: dict[str, tuple[float, ...]] = {
    "w_v3": (0.5, 1.0),
    "w_tags": (0.5, 1.0, 1.5),
    "w_popularity": (3.0, 4.0, 5.0),
    "w_quality": (0.0, 0.25, 0.5),
    "w_year": (0.25, 0.5, 1.0),
}


# ---------------------------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------------------------


@dataclass
class EvaluateInputs:
    """Everything the report reads; optional inputs that are None or missing skip their section."""

    catalogue: Path
    out_dir: Path
    vectors: dict[str, Path] = field(default_factory=dict)
    neighbours: Path | None = None
    triplets: Path | None = None
    dev_csv: Path | None = None
    model_dir: Path | None = None
    onnx_dir: Path | None = None
    final_v4: str = "v4_int8"
    final_v3: str = "v3"
    ranking: RankingConfig = field(default_factory=RankingConfig)
    tune: bool = False
    pool: int = SIMILAR_V4_POOL
    v3_pool: int = SIMILAR_V3_POOL
    v2_pool: int = SIMILAR_V2_POOL
    seed: int = 13
    labels: dict[str, str] = field(default_factory=dict)
    #: The serving bundle whose free-text search is evaluated (`search_eval`); None skips it.
    bundle: Path | None = None


@dataclass
class EvaluateResult:
    """The report as a dict plus where it was written."""

    report: dict[str, Any]
    json_path: Path
    md_path: Path


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


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
    """V1 tag-only baselines (`anime_pipeline.baselines`): Jaccard, binary cosine, TF-IDF cosine."""
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


# ---------------------------------------------------------------------------------------------
# Final ranking over candidate pools (vectorised so tuning is a few seconds per config)
# ---------------------------------------------------------------------------------------------


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

    @property
    def valid(self) -> np.ndarray:
        return self.rows >= 0


def build_pools(
    catalogue: Catalogue,
    siblings: RowSiblings,
    v4: np.ndarray,
    v3: np.ndarray,
    query_rows: np.ndarray,
    pool: int,
    v3_pool: int = 0,
    v2_top: TopK | None = None,
) -> CandidatePools:
    """What the API sees: top-`pool` by V4 ∪ top-`v3_pool` by V3 (as the two hnswlib searches
    would return) ∪ the V2 list (`v2_top`, rows), minus the query's franchise siblings."""
    years = catalogue.numbers("year")
    pop_all = popularity(catalogue.numbers("members"))
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
        top4, top3 = top_rows(v4, rows, pool), top_rows(v3, rows, v3_pool)
        top2 = v2_top(rows) if v2_top is not None else np.zeros((len(rows), 0), dtype=np.int64)
        for q, r in enumerate(rows):
            banned = siblings(int(r)) | {int(r), -1}
            first = [x for x in top4[q].tolist() if x not in banned]
            extra = sorted((set(top3[q].tolist()) | set(top2[q].tolist())) - banned - set(first))
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
    )


def rank_pools(pools: CandidatePools, config: RankingConfig, k: int = K) -> np.ndarray:
    """Top-k catalogue rows [Q, k] of the final ranking for each pooled query (-1 = none).

    The API's order (`rank_candidates`): score, then V4 similarity, then id (= row order), with
    one entry per franchise before any repeat (`spread_franchises`).
    """
    score, _ = score_arrays(
        config,
        v4=pools.v4,
        v3=pools.v3,
        pop=pools.pop,
        year_prox=year_proximity(pools.query_years, pools.years, config.year_scale),
        valid=pools.valid,
        qual=pools.qual,
        tags=pools.tags,
    )
    order = np.lexsort((pools.rows, -pools.v4, -score), axis=-1)
    out = np.full((len(score), k), -1, dtype=np.int64)
    for q in range(len(score)):
        ranked = [int(pools.rows[q, j]) for j in order[q] if np.isfinite(score[q, j])]
        top = spread_franchises(ranked, pools.siblings, k)
        out[q, : len(top)] = top
    return out


def franchise_recall(catalogue: Catalogue, franchise: FranchiseIndex, dev: DevSet) -> dict[str, float | int]:
    """Share of the dev sources' siblings (franchises of 2–11) found in the API's `franchise` lists."""
    hits = total = 0
    for source, truth in dev.siblings.items():
        query = catalogue[source]
        listed, _ = franchise_entries(query, (catalogue.by_id(i) for i in franchise.siblings(query)))
        total += len(truth)
        hits += len(truth & {catalogue.row(e.anime.id) for e in listed})
    return {"franchise_recall": hits / total if total else float("nan"), "sibling_pairs": total}


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


@dataclass
class DevSet:
    """The dev recommendations as catalogue rows: per source row, its cross-franchise targets and siblings."""

    sources: np.ndarray  # rows of all dev source anime in the catalogue
    targets: dict[int, set[int]]  # source row -> cross-franchise target rows with >= MIN_VOTES
    siblings: dict[int, set[int]]  # source row -> franchise sibling rows (1..MAX_SIBLINGS of them)
    pairs_total: int
    pairs_same_franchise: int


def read_dev_pairs(path: Path) -> list[tuple[int, int, int]]:
    """(source_id, target_id, votes) rows of the dev recommendations CSV."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [(int(r["source_id"]), int(r["target_id"]), int(r["votes"])) for r in csv.DictReader(fh)]


def build_dev_set(
    pairs: Iterable[tuple[int, int, int]], catalogue: Catalogue, franchise: FranchiseIndex
) -> DevSet:
    """Map dev pairs onto the catalogue, drop same-franchise pairs, collect siblings of each source."""
    targets: dict[int, set[int]] = {}
    sources: set[int] = set()
    total = same = 0
    for sid, tid, votes in pairs:
        if sid not in catalogue or tid not in catalogue or sid == tid:
            continue
        s, t = catalogue.row(sid), catalogue.row(tid)
        sources.add(s)
        if votes < MIN_VOTES:
            continue
        total += 1
        if same_franchise(catalogue[s], catalogue[t]):
            same += 1
            continue
        targets.setdefault(s, set()).add(t)
    siblings: dict[int, set[int]] = {}
    for s in sorted(sources):
        sibs = {catalogue.row(i) for i in franchise.siblings(catalogue[s])}
        if 1 <= len(sibs) <= MAX_SIBLINGS:
            siblings[s] = sibs
    return DevSet(np.array(sorted(sources), dtype=np.int64), targets, siblings, total, same)


def hit_share(top: np.ndarray, rows: np.ndarray, truth: dict[int, set[int]]) -> tuple[float, int]:
    """Micro share of truth rows found in each row's top list, and the number of truth pairs."""
    hits = total = 0
    for q, r in enumerate(rows.tolist()):
        wanted = truth.get(r)
        if wanted:
            total += len(wanted)
            hits += len(wanted & set(top[q].tolist()))
    return (hits / total if total else float("nan")), total


def macro_hit_share(top: np.ndarray, rows: np.ndarray, truth: dict[int, set[int]]) -> float:
    """Mean over rows with truth of the share of their truth rows found in their top list."""
    shares = [
        len(truth[r] & set(top[q].tolist())) / len(truth[r])
        for q, r in enumerate(rows.tolist())
        if truth.get(r)
    ]
    return float(np.mean(shares)) if shares else float("nan")


def dev_metrics(top: np.ndarray, rows: np.ndarray, dev: DevSet) -> dict[str, float | int]:
    """Cross-franchise recall@10 and franchise-sibling share (micro; macro beside) for top lists of `rows`."""
    recall, n_targets = hit_share(top, rows, dev.targets)
    sib, n_sibs = hit_share(top, rows, dev.siblings)
    return {
        "recall_at_10": recall,
        "target_pairs": n_targets,
        "siblings_at_10": sib,
        "sibling_pairs": n_sibs,
        "recall_at_10_macro": macro_hit_share(top, rows, dev.targets),
        "siblings_at_10_macro": macro_hit_share(top, rows, dev.siblings),
    }


def triplet_accuracy_ties(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Share of triplets with pos > neg, ties counting ½."""
    if len(scores_pos) == 0:
        return float("nan")
    return float(np.mean((scores_pos > scores_neg) + 0.5 * (scores_pos == scores_neg)))


def teacher_agreement(top: np.ndarray, teacher_top: np.ndarray) -> float:
    """Mean over queries of |top ∩ teacher top| / |teacher top| (queries without teacher list skipped)."""
    shares = [
        len(set(t[t >= 0].tolist()) & set(m.tolist())) / int((t >= 0).sum())
        for m, t in zip(top, teacher_top, strict=True)
        if (t >= 0).any()
    ]
    return float(np.mean(shares)) if shares else float("nan")


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


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _model_stats(model_dir: Path, catalogue: Catalogue, n_texts: int = 512) -> dict[str, Any]:
    """File sizes of the model directory and int8 embedding throughput on this machine (2 threads)."""
    from anime_recommender.encoder import OnnxEncoder
    from anime_recommender.text import anime_text

    sizes = {p.name: p.stat().st_size for p in sorted(model_dir.glob("*")) if p.is_file()}
    encoder = OnnxEncoder.load(model_dir, threads=2)
    texts = [anime_text(a) for a in list(catalogue)[:n_texts]]
    encoder.encode(texts[:32])  # warm-up: session init and first-call allocations
    started = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - started
    return {
        "model_dir": str(model_dir),
        "file_bytes": sizes,
        "texts_per_s": len(texts) / seconds,
        "threads": 2,
    }


def _v2_pool(inputs: EvaluateInputs, catalogue: Catalogue) -> TopK | None:
    """The V2 lists the API's by-id pool includes (None without a neighbours file)."""
    if inputs.neighbours is None or not inputs.neighbours.is_file() or inputs.v2_pool <= 0:
        return None
    return v2_list_rows(inputs.neighbours, catalogue, inputs.v2_pool)


@dataclass
class _Methods:
    """Every compared method's pair scorer and top-k, and the vectors loaded for them."""

    pair: dict[str, PairScore] = field(default_factory=dict)
    topk: dict[str, TopK] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def _collect_methods(inputs: EvaluateInputs, catalogue: Catalogue) -> _Methods:
    """The V1 baselines, V2 when its lists exist, and one method per vector file that exists."""
    methods = _Methods()
    for name, (pair_fn, topk_fn) in v1_methods(catalogue).items():
        methods.pair[name], methods.topk[name] = pair_fn, topk_fn
    if inputs.neighbours is not None and inputs.neighbours.is_file():
        methods.pair["v2"], methods.topk["v2"] = v2_method(inputs.neighbours, catalogue)
    for name, path in inputs.vectors.items():
        if path.is_file():
            methods.vectors[name] = load_vectors(path, name, catalogue)
            methods.pair[name], methods.topk[name] = vector_method(methods.vectors[name])
    return methods


@dataclass(frozen=True)
class _FinalRanking:
    """The API's ranking on the evaluated vectors: candidate pools as the API builds them, then the rerank."""

    catalogue: Catalogue
    siblings: RowSiblings
    v4: np.ndarray
    v3: np.ndarray
    inputs: EvaluateInputs
    v2_top: TopK | None

    def pools(self, rows: np.ndarray) -> CandidatePools:
        """The candidate pools of these query rows."""
        return build_pools(
            self.catalogue,
            self.siblings,
            self.v4,
            self.v3,
            rows,
            self.inputs.pool,
            self.inputs.v3_pool,
            self.v2_top,
        )

    def topk(self, rows: np.ndarray, config: RankingConfig) -> np.ndarray:
        """The final top-k rows of these query rows under `config`."""
        return rank_pools(self.pools(rows), config)


def _choose_ranking(
    report: dict[str, Any], inputs: EvaluateInputs, pools: CandidatePools, dev: DevSet
) -> RankingConfig:
    """The ranking config to report: tuned on dev with `--tune` (and saved), else the given one."""
    if not inputs.tune:
        report["final"]["config_source"] = "RankingConfig defaults / --ranking-json"
        return inputs.ranking
    tuning = tune_ranking(pools, dev, inputs.ranking, seed=inputs.seed)
    report["tuning"] = tuning
    chosen = RankingConfig.model_validate(tuning["best"])
    report["final"]["config"] = chosen.model_dump()
    report["final"]["config_source"] = "tuned in this run (--tune)"
    # Reusable as `--ranking-json`, and what to copy into RankingConfig's defaults.
    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    (inputs.out_dir / "ranking_tuned.json").write_text(chosen.model_dump_json(indent=2) + "\n")
    return chosen


def _dev_section(
    report: dict[str, Any],
    inputs: EvaluateInputs,
    catalogue: Catalogue,
    franchise: FranchiseIndex,
    methods: _Methods,
    final: _FinalRanking | None,
) -> RankingConfig:
    """Development recommendations: recall of every method and of the final ranking; returns its config."""
    dev_csv = inputs.dev_csv
    if dev_csv is None or not dev_csv.is_file():
        report["dev"] = {"skipped": f"no dev recommendations at {dev_csv}"}
        return inputs.ranking
    dev = build_dev_set(read_dev_pairs(dev_csv), catalogue, franchise)
    report["dev"] = {
        "path": str(dev_csv),
        "sources": int(len(dev.sources)),
        "pairs_min_votes": dev.pairs_total,
        "pairs_same_franchise_excluded": dev.pairs_same_franchise,
        "sources_with_targets": len(dev.targets),
        "sources_with_siblings": len(dev.siblings),
    }
    rows = dev.sources
    report.setdefault("references", {})["popularity"] = dev_metrics(
        popularity_method(catalogue)(rows), rows, dev
    )
    for name in progress(list(methods.topk), desc="dev recall", unit="method"):
        report["methods"][name]["dev"] = dev_metrics(methods.topk[name](rows), rows, dev)
    report["franchise_list"] = franchise_recall(catalogue, franchise, dev)
    if final is None:
        return inputs.ranking
    pools = final.pools(rows)
    chosen = _choose_ranking(report, inputs, pools, dev)
    top = rank_pools(pools, chosen)
    report["methods"]["final"]["dev"] = dev_metrics(top, rows, dev)
    # The same 2-fold split of source anime as the tuning uses.
    fold_of = np.random.default_rng(inputs.seed).permutation(len(rows)) % 2
    report["final"]["dev_folds"] = [dev_metrics(top[fold_of == f], rows[fold_of == f], dev) for f in range(2)]
    return chosen


def _triplet_section(
    report: dict[str, Any],
    inputs: EvaluateInputs,
    catalogue: Catalogue,
    methods: _Methods,
    final: _FinalRanking | None,
    chosen: RankingConfig,
) -> None:
    """Held-out triplet accuracy of every method, and its agreement with the teacher's top-10."""
    if inputs.triplets is None or not inputs.triplets.is_file():
        return
    trip = TripletSet.load(inputs.triplets)
    a, p, n = trip.rows(catalogue, "test")
    anchors = np.unique(a)
    report["triplets"] = {
        "test_triplets": int(len(a)),
        "test_anchors": int(len(anchors)),
        "drawn": "split code 2 of the teacher's triplets file: anchors assigned to test by anchor id, "
        "so no test anchor is an anchor in training; positive from the anchor's V2 top list, "
        "negative with a lower V2 score (see the triplets stage)",
    }
    teacher_top = methods.topk["v2"](anchors) if "v2" in methods.topk else None
    for name in progress(list(methods.pair), desc="triplets/teacher", unit="method"):
        pair_score = methods.pair[name]
        report["methods"][name]["triplet_accuracy"] = triplet_accuracy_ties(
            pair_score(a, p), pair_score(a, n)
        )
        if teacher_top is not None:
            report["methods"][name]["teacher_recall_at_10"] = teacher_agreement(
                methods.topk[name](anchors), teacher_top
            )
    if teacher_top is not None and final is not None:
        report["methods"]["final"]["teacher_recall_at_10"] = teacher_agreement(
            final.topk(anchors, chosen), teacher_top
        )


def _model_section(report: dict[str, Any], inputs: EvaluateInputs, catalogue: Catalogue) -> None:
    """Runtime model size and throughput, and the ONNX variants' sizes, when they exist."""
    if inputs.model_dir is not None and (inputs.model_dir / "model.onnx").is_file():
        report["model"] = _model_stats(inputs.model_dir, catalogue)
    if inputs.onnx_dir is not None and inputs.onnx_dir.is_dir():
        report.setdefault("model", {})["onnx_variants_bytes"] = {
            p.name: p.stat().st_size for p in sorted(inputs.onnx_dir.glob("*.onnx"))
        }


def evaluate(inputs: EvaluateInputs) -> EvaluateResult:
    """Compute every section whose inputs exist and write report.json / report.md."""
    catalogue = Catalogue.load(inputs.catalogue)
    franchise = FranchiseIndex(catalogue)
    report: dict[str, Any] = {"catalogue": {"path": str(inputs.catalogue), "size": len(catalogue)}, "k": K}
    report["labels"] = dict(inputs.labels)
    methods = _collect_methods(inputs, catalogue)
    report["methods"] = {name: {} for name in [*methods.topk, "final"]}

    final_v4 = methods.vectors.get(inputs.final_v4)
    final_v3 = methods.vectors.get(inputs.final_v3, final_v4)
    report["final"] = {
        "v4_vectors": inputs.final_v4 if final_v4 is not None else None,
        "v3_vectors": inputs.final_v3 if inputs.final_v3 in methods.vectors else None,
        "pool": inputs.pool,
        "v3_pool": inputs.v3_pool,
        "config": inputs.ranking.model_dump(),
    }
    if final_v4 is None:
        del report["methods"]["final"]
    v2_top = _v2_pool(inputs, catalogue)
    report["final"]["v2_pool"] = inputs.v2_pool if v2_top is not None else 0
    final = (
        None
        if final_v4 is None or final_v3 is None
        else _FinalRanking(catalogue, RowSiblings(catalogue, franchise), final_v4, final_v3, inputs, v2_top)
    )

    chosen = _dev_section(report, inputs, catalogue, franchise, methods, final)
    _triplet_section(report, inputs, catalogue, methods, final, chosen)
    _model_section(report, inputs, catalogue)
    report["search"] = search_eval.report_section(inputs.bundle)

    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = inputs.out_dir / "report.json", inputs.out_dir / "report.md"
    json_path.write_text(json.dumps(_clean(report), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return EvaluateResult(report=report, json_path=json_path, md_path=md_path)


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null so other tools can read the report.
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.1f} %"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a readable Markdown page (one table per section)."""
    lines = [
        "# Evaluation report",
        "",
        f"Catalogue: {report['catalogue']['size']} anime. k = {report['k']}.",
        "",
    ]
    for name, label in report.get("labels", {}).items():
        lines.append(f"- `{name}`: {label}")
    lines += [
        "",
        "| method | test triplet acc. | teacher recall@10 | dev recall@10 (cross-franchise, ≥2 votes) "
        "| franchise siblings@10 |",
        "|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        dev = m.get("dev", {})
        lines.append(
            f"| {name} | {_pct(m.get('triplet_accuracy'))} | {_pct(m.get('teacher_recall_at_10'))} "
            f"| {_pct(dev.get('recall_at_10'))} | {_pct(dev.get('siblings_at_10'))} |"
        )
    for name, m in report.get("references", {}).items():
        lines.append(
            f"| ({name} reference) | – | – | {_pct(m['recall_at_10'])} | {_pct(m['siblings_at_10'])} |"
        )
    lines.append("")
    if "triplets" in report:
        t = report["triplets"]
        lines += [f"Test triplets: {t['test_triplets']} over {t['test_anchors']} anchors — {t['drawn']}.", ""]
    dev = report.get("dev", {})
    if "skipped" in dev:
        lines += [f"Dev section skipped: {dev['skipped']}.", ""]
    else:
        lines += [
            f"Dev set: {dev['sources']} source anime; {dev['pairs_min_votes']} pairs with ≥ 2 votes, "
            f"of which {dev['pairs_same_franchise_excluded']} same-franchise pairs excluded; "
            f"{dev['sources_with_siblings']} sources with 1–10 franchise siblings.",
            "",
        ]
    fl = report.get("franchise_list")
    if fl:
        lines += [
            f"Franchise lists (`franchise`, beside `items`): {_pct(fl['franchise_recall'])} of the "
            f"{fl['sibling_pairs']} siblings of those sources (franchises of 2–11 entries) found. "
            "The final ranking's `items` hold no sibling by design (its siblings@10 is 0).",
            "",
        ]
    final = report.get("final", {})
    if final.get("v4_vectors") is None:
        lines += ["Final ranking not evaluated: no V4 vectors.", ""]
    else:
        lines += [
            f"Final ranking ({final.get('config_source', '')}): `{json.dumps(final.get('config'))}`; "
            f"pool: V4 top-{final.get('pool')} ∪ V3 top-{final.get('v3_pool')} ∪ V2 list "
            f"top-{final.get('v2_pool', 0)}, franchise siblings left out, one entry per franchise first.",
            "",
        ]
    for f, m in enumerate(final.get("dev_folds", [])):
        lines.append(
            f"- dev fold {f}: recall@10 {_pct(m['recall_at_10'])}, siblings@10 {_pct(m['siblings_at_10'])}"
        )
    if "tuning" in report:
        tun = report["tuning"]
        lines += ["", f"Tuning: {tun['configs_tried']} configs, grid `{json.dumps(tun['grid'])}`.", ""]
        for fr in tun["folds"]:
            ho = fr["held_out"]
            lines.append(
                f"- tuned without fold {fr['held_out_fold']}: `{json.dumps(fr['chosen'])}` → on that fold "
                f"recall@10 {_pct(ho['recall_at_10'])}, siblings@10 {_pct(ho['siblings_at_10'])}"
            )
    mod = report.get("model", {})
    if "texts_per_s" in mod:
        lines += [
            "",
            f"Model `{mod['model_dir']}`: {mod['texts_per_s']:.0f} texts/s ({mod['threads']} threads).",
            "",
        ]
        lines += [f"- {name}: {size / 1e6:.1f} MB" for name, size in mod["file_bytes"].items()]
    if "onnx_variants_bytes" in mod:
        lines += ["", "ONNX variants:", ""]
        lines += [f"- {name}: {size / 1e6:.1f} MB" for name, size in mod["onnx_variants_bytes"].items()]
    lines += search_eval.markdown_lines(report.get("search"))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _parse_vectors(items: Sequence[str], default_dir: Path) -> dict[str, Path]:
    vectors = {name: default_dir / f"{name}.npy" for name in DEFAULT_VECTOR_NAMES}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"--vectors expects NAME=PATH, got {item!r}")
        vectors[name] = Path(path)
    return vectors


def config_from_args(args: argparse.Namespace, paths: BuildPaths) -> EvaluateInputs:
    """The evaluation inputs the CLI arguments describe."""
    ranking = (
        RankingConfig.model_validate_json(Path(args.ranking_json).read_text(encoding="utf-8"))
        if args.ranking_json
        else RankingConfig()
    )
    labels = dict(item.partition("=")[::2] for item in args.label)
    return EvaluateInputs(
        catalogue=Path(args.catalogue or paths.catalogue),
        out_dir=Path(args.out or paths.eval),
        vectors=_parse_vectors(args.vectors, paths.models / "vectors"),
        neighbours=Path(args.neighbours or paths.neighbours),
        triplets=Path(args.triplets or paths.triplets),
        dev_csv=Path(args.dev_csv),
        model_dir=Path(args.model_dir or paths.models / "runtime"),
        onnx_dir=paths.models / "onnx",
        final_v4=args.final_v4,
        final_v3=args.final_v3,
        ranking=ranking,
        tune=args.tune,
        pool=args.pool,
        v3_pool=args.v3_pool,
        v2_pool=args.v2_pool,
        labels=labels,
        bundle=paths.artifacts_dir,
    )


def default_config(paths: BuildPaths) -> EvaluateInputs:
    """`anime-build evaluate` without arguments: every earlier stage's output, the shared dev set."""
    return EvaluateInputs(
        catalogue=paths.catalogue,
        out_dir=paths.eval,
        vectors=_parse_vectors([], paths.models / "vectors"),
        neighbours=paths.neighbours,
        triplets=paths.triplets,
        dev_csv=DEFAULT_DEV_CSV,
        model_dir=paths.models / "runtime",
        onnx_dir=paths.models / "onnx",
        bundle=paths.artifacts_dir,
    )


def run_and_report(inputs: EvaluateInputs) -> EvaluateResult:
    """Write the report and print its Markdown."""
    result = evaluate(inputs)
    sys.stdout.write(result.md_path.read_text(encoding="utf-8"))
    sys.stdout.write(f"wrote {result.json_path} and {result.md_path}\n")
    return result


def run_default(paths: BuildPaths) -> EvaluateResult:
    """The evaluate stage with its defaults (what `anime-build all` runs)."""
    return run_and_report(default_config(paths))


def run(args: argparse.Namespace) -> int:
    """Run the `evaluate` stage from parsed CLI arguments."""
    run_and_report(config_from_args(args, BuildPaths.from_env()))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="write the evaluation report (triplet accuracy, teacher recall, dev recall, siblings)",
        description="Evaluate V1/V2/V3/V4 and the final ranking; write report.json and report.md to "
        ".work/eval/. Sections whose inputs are missing are skipped.",
    )
    p.add_argument("--catalogue", help="catalogue .jsonl.gz (default: the ingest stage's output)")
    p.add_argument(
        "--vectors",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="catalogue vectors (.npy in row order, or .npz with ids); defaults: "
        ".work/models/vectors/{v3_fp32,v3,v4_fp32,v4_int8}.npy from the export stage",
    )
    p.add_argument("--neighbours", help="V2 neighbour lists .npz (default: the teacher stage's output)")
    p.add_argument("--triplets", help="triplets .npz (default: the triplets stage's output)")
    p.add_argument(
        "--dev-csv",
        default=str(DEFAULT_DEV_CSV),
        help="MyAnimeList dev recommendations CSV (default: ../shared/eval/…); absent = section skipped",
    )
    p.add_argument(
        "--model-dir", help="runtime ONNX model dir for throughput and sizes (default: .work/models/runtime)"
    )
    p.add_argument("--final-v4", default="v4_int8", help="vectors NAME used as V4 by the final ranking")
    p.add_argument("--final-v3", default="v3", help="vectors NAME used as V3 by the final ranking")
    p.add_argument("--ranking-json", help="RankingConfig as JSON (default: the tuned defaults)")
    p.add_argument(
        "--tune", action="store_true", help="grid-search RankingConfig on the dev set (2-fold check)"
    )
    p.add_argument(
        "--pool",
        type=int,
        default=SIMILAR_V4_POOL,
        help="V4 candidates over-fetched per query before re-ranking (default: the API's)",
    )
    p.add_argument(
        "--v3-pool", type=int, default=SIMILAR_V3_POOL, help="V3 candidates added to the pool (0 = none)"
    )
    p.add_argument(
        "--v2-pool", type=int, default=SIMILAR_V2_POOL, help="V2 list entries added to the pool (0 = none)"
    )
    p.add_argument("--label", action="append", default=[], metavar="NAME=TEXT", help="describe a method")
    p.add_argument("--out", help="output folder (default: .work/eval)")
    p.set_defaults(func=run)
