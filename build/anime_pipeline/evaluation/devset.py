"""The development recommendations (real viewers' picks) as catalogue rows, and the metrics on them."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anime_pipeline.paths import REPO_ROOT
from anime_recommender.catalogue import Catalogue
from anime_recommender.ranking import FranchiseIndex, same_franchise

DEFAULT_DEV_CSV = REPO_ROOT.parent / "shared" / "eval" / "mal_user_recommendations_dev.csv"
K = 10
MIN_VOTES = 2
MAX_SIBLINGS = 10  # franchises up to 11 entries: every sibling could fit in a top-10


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
