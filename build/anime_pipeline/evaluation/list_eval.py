"""How a viewer's imported list should weigh mild likes: simulated lists judged by real viewers' picks.

The dev set says what people who liked an anime recommend ("liked S → recommend T"). A simulated
viewer's list is built from dev source anime of distinct franchises: `STRONG` loved ones (scored 9),
`MILD` liked ones (scored 6, 7 or unscored), one disliked (scored 3) and Plan to Watch entries. What
that viewer should be shown is what the dev set's viewers recommend for the anime they liked:
the cross-franchise targets (>= 2 votes) of the loved anime with gain 1, and of the liked ones with
gain `MILD_GAIN` (a liked anime says less about taste than a loved one), none of them on the list.
Each candidate `ListWeights.mild` is scored by the graded recall@10 of the served backend's
`recommend` over the same viewers (the share of the attainable gain in the top 10), on two halves of
the viewers (tune on one, check on the other) and on all of them; the share of the top 10 that the
disliked anime's fans recommend is reported beside it.

What it cannot say: real lists mix moods and eras the simulation does not, and `MILD_GAIN` is an
assumption (reported with the results). It does say whether the served recommender uses a list's
loved anime and liked anime in the proportion the viewers' own picks suggest.

    anime-build list-eval [--artifacts DIR] [--viewers N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.evaluation.devset import DEFAULT_DEV_CSV, MIN_VOTES, read_dev_pairs
from anime_pipeline.paths import BuildPaths
from anime_pipeline.progress import progress
from anime_recommender.artifacts import load_bundle
from anime_recommender.similarity import Taste, TieredBackend, backend_from_bundle
from anime_recommender.viewer_list import ListEntry, ListStatus, ListWeights, taste_of

STRONG = 2
MILD = 3
PLAN_TO_WATCH = 2
MILD_GAIN = 0.5
K = 10
MILD_GRID: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class SimulatedViewer:
    """A list and what the dev set's viewers would recommend for it (id → gain)."""

    entries: list[ListEntry]
    relevant: dict[int, float]
    disliked_targets: frozenset[int]


def dev_targets(backend: TieredBackend, dev_csv: Path) -> dict[int, set[int]]:
    """Source id → its cross-franchise target ids with >= MIN_VOTES votes, inside the catalogue."""
    catalogue = backend.catalogue
    targets: dict[int, set[int]] = {}
    for source, target, votes in read_dev_pairs(dev_csv):
        if votes < MIN_VOTES or source not in catalogue or target not in catalogue or source == target:
            continue
        if target in backend.siblings(source):
            continue
        targets.setdefault(source, set()).add(target)
    return {s: t for s, t in targets.items() if len(t) >= 2}


def simulate_viewers(
    backend: TieredBackend, targets: dict[int, set[int]], n: int, seed: int = 0
) -> list[SimulatedViewer]:
    """`n` lists of dev sources from distinct franchises (see the module docstring)."""
    rng = random.Random(seed)
    sources = sorted(targets)
    others = list(backend.catalogue.ids)
    viewers: list[SimulatedViewer] = []
    while len(viewers) < n:
        picked: list[int] = []
        for source in rng.sample(sources, len(sources)):
            if all(source not in backend.siblings(p) and source != p for p in picked):
                picked.append(source)
            if len(picked) == STRONG + MILD + 1:
                break
        strong, mild, disliked = picked[:STRONG], picked[STRONG : STRONG + MILD], picked[-1]
        entries = [ListEntry(a, ListStatus.COMPLETED, 9) for a in strong]
        entries += [ListEntry(a, ListStatus.COMPLETED, rng.choice((6, 7, 0))) for a in mild]
        entries.append(ListEntry(disliked, ListStatus.COMPLETED, 3))
        entries += [ListEntry(a, ListStatus.PLAN_TO_WATCH, 0) for a in rng.sample(others, PLAN_TO_WATCH)]
        on_list = {e.anime_id for e in entries}
        relevant: dict[int, float] = {}
        for gain, group in ((MILD_GAIN, mild), (1.0, strong)):
            for source in group:
                for target in targets[source] - on_list:
                    relevant[target] = max(relevant.get(target, 0.0), gain)
        if relevant:
            viewers.append(SimulatedViewer(entries, relevant, frozenset(targets[disliked] - on_list)))
    return viewers


Recommender = Callable[[Taste, frozenset[int]], list[int]]


def served(backend: TieredBackend) -> Recommender:
    """The served ranking (`TieredBackend.recommend`)."""
    return lambda taste, on_list: [hit.anime_id for hit in backend.recommend(taste, K, None, on_list)]


def centroid(backend: TieredBackend) -> Recommender:
    """The baseline the served ranking replaced: the unit weighted mean of the liked anime's vectors,
    one nearest-neighbour search, liked franchises and the list left out."""
    index = backend.index
    assert index is not None, "the centroid baseline needs a vector tier"

    def recommend(taste: Taste, on_list: frozenset[int]) -> list[int]:
        ids = list(taste.liked)
        matrix, present = index.vectors(ids)
        weights = np.array([taste.liked[a] for a in ids], dtype=np.float32) * present
        profile = weights @ matrix
        profile /= max(float(np.linalg.norm(profile)), 1e-12)
        banned = set(on_list)
        for anime_id in ids:
            banned |= backend.siblings(anime_id)
        unlisted = backend.catalogue.unlisted_ids()
        found = index.search(profile, K + len(banned) + len(unlisted))
        return [a for a, _ in found if a not in banned and a not in unlisted][:K]

    return recommend


def score(recommender: Recommender, viewers: list[SimulatedViewer], weights: ListWeights) -> dict[str, float]:
    """Graded recall@10 and the disliked anime's share of the top 10, averaged over `viewers`."""
    recall = leak = 0.0
    for viewer in viewers:
        on_list = frozenset(e.anime_id for e in viewer.entries)
        shown = recommender(taste_of(viewer.entries, weights), on_list)
        attainable = sum(sorted(viewer.relevant.values(), reverse=True)[:K])
        recall += sum(viewer.relevant.get(a, 0.0) for a in shown) / attainable
        leak += sum(a in viewer.disliked_targets for a in shown) / K
    return {
        "graded_recall_at_10": round(recall / len(viewers), 4),
        "disliked_share": round(leak / len(viewers), 4),
    }


def evaluate_list_weights(artifacts: Path, dev_csv: Path, viewers: int, seed: int = 0) -> dict[str, Any]:
    """The report: every `MILD_GRID` value on both halves and all viewers, and the pick."""
    backend = backend_from_bundle(load_bundle(artifacts, all_tiers=True))
    simulated = simulate_viewers(backend, dev_targets(backend, dev_csv), viewers, seed)
    halves = {"a": simulated[0::2], "b": simulated[1::2], "all": simulated}
    results: dict[str, dict[str, dict[str, float]]] = {}
    ranking = served(backend)
    for mild in progress(MILD_GRID, desc="list-eval", unit="weight"):
        weights = ListWeights(mild=mild)
        results[str(mild)] = {name: score(ranking, group, weights) for name, group in halves.items()}
    baseline = score(centroid(backend), simulated, ListWeights()) if backend.index is not None else None

    def best(half: str) -> float:
        return max(MILD_GRID, key=lambda m: results[str(m)][half]["graded_recall_at_10"])

    return {
        "method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "tier": backend.info.tier,
        "viewers": len(simulated),
        "list_shape": {"loved": STRONG, "liked": MILD, "disliked": 1, "plan_to_watch": PLAN_TO_WATCH},
        "mild_gain": MILD_GAIN,
        "results": results,
        "best_on_a_scored_on_b": {"mild": best("a"), **results[str(best("a"))]["b"]},
        "best_on_b_scored_on_a": {"mild": best("b"), **results[str(best("b"))]["a"]},
        "best_on_all": best("all"),
        "baseline_centroid_default_weights": baseline,
        "default_mild": ListWeights().mild,
    }


def run(args: argparse.Namespace) -> int:
    """Print the report as JSON (and write it to --out when given)."""
    artifacts = Path(args.artifacts) if args.artifacts else BuildPaths.from_env().artifacts_dir
    report = evaluate_list_weights(artifacts, Path(args.dev_csv), args.viewers, args.seed)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build list-eval`."""
    p = subparsers.add_parser(
        "list-eval",
        help="how an imported list should weigh mild likes (simulated lists judged by the dev set)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--artifacts", help="bundle to serve from (default: the build's layers/artifacts bundle)")
    p.add_argument("--dev-csv", default=str(DEFAULT_DEV_CSV), help="dev recommendations CSV")
    p.add_argument("--viewers", type=int, default=600, help="simulated viewers (split in two halves)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON report here")
    p.set_defaults(func=run)
