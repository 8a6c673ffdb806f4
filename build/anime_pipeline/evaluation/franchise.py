"""Franchise lists: recall of the `franchise` list the API returns beside `items`, judged against the
served index's own groups and against groups by the title rules alone; and the groups' size distribution."""

from __future__ import annotations

from typing import Any

import numpy as np

from anime_pipeline.evaluation.devset import MAX_SIBLINGS, DevSet
from anime_recommender.catalogue import Catalogue, with_fields
from anime_recommender.ranking import FranchiseIndex, franchise_entries


def franchise_recall(catalogue: Catalogue, franchise: FranchiseIndex, dev: DevSet) -> dict[str, float | int]:
    """Share of the dev sources' siblings (franchises of 2–11) found in the API's `franchise` lists."""
    hits = total = 0
    for source, truth in dev.siblings.items():
        query = catalogue[source]
        listed, _ = franchise_entries(query, (catalogue.by_id(i) for i in franchise.siblings(query)))
        total += len(truth)
        hits += len(truth & {catalogue.row(e.anime.id) for e in listed})
    return {"franchise_recall": hits / total if total else float("nan"), "sibling_pairs": total}


def title_rule_index(catalogue: Catalogue) -> FranchiseIndex:
    """Franchise siblings by the title rules alone: the index over copies of the records without their
    relation links (`related`), so groups judged by it are not derived from those links (ask it about
    such a copy too: `siblings` follows the asking record's own links)."""
    return FranchiseIndex(with_fields(a, related=()) for a in catalogue)


def franchise_recall_title_groups(
    catalogue: Catalogue, served: FranchiseIndex, titles: FranchiseIndex, sources: np.ndarray
) -> dict[str, float | int]:
    """Share of title-rule siblings (franchises of 2–11 by `titles`) of the dev sources found in the
    `franchise` lists the API builds from `served`; also the share of listed entries the title rules
    do not know (links, or a title rule missed)."""
    hits = total = listed_total = listed_outside = 0
    for row in sources.tolist():
        query = catalogue[row]
        truth = set(titles.siblings(with_fields(query, related=())))  # the query's own links ignored too
        if not 1 <= len(truth) <= MAX_SIBLINGS:
            continue
        listed, _ = franchise_entries(query, (catalogue.by_id(i) for i in served.siblings(query)))
        ids = {e.anime.id for e in listed}
        total += len(truth)
        hits += len(truth & ids)
        listed_total += len(ids)
        listed_outside += len(ids - truth)
    return {
        "franchise_recall": hits / total if total else float("nan"),
        "sibling_pairs": total,
        "listed_outside_title_groups": listed_outside / listed_total if listed_total else float("nan"),
    }


def group_sizes(catalogue: Catalogue, franchise: FranchiseIndex) -> dict[str, Any]:
    """Distribution of franchise sibling counts over the whole catalogue (`FranchiseIndex.siblings`):
    relation links chained too far show up as huge groups (hundreds of unrelated anime)."""
    counts = np.array([len(franchise.siblings(a)) for a in catalogue], dtype=np.int64)
    if not len(counts):
        return {"anime": 0}
    largest = int(np.argmax(counts))
    return {
        "anime": int(len(counts)),
        "with_siblings": int((counts > 0).sum()),
        "siblings_mean": float(counts.mean()),
        "siblings_p50": float(np.percentile(counts, 50)),
        "siblings_p90": float(np.percentile(counts, 90)),
        "siblings_p99": float(np.percentile(counts, 99)),
        "siblings_max": int(counts[largest]),
        "largest": {"id": catalogue[largest].id, "title": catalogue[largest].title},
        "groups_over_50": int((counts + 1 > 50).sum()),
    }
