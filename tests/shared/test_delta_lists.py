"""The delta's V2 lists (`delta/lists.py`): touched lists recomputed, the rest merged, against a full
recompute."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from delta_support import weekly_change

from anime_pipeline.synthetic import synthetic_catalogue
from anime_recommender.artifacts import load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.lists import update_neighbours
from anime_recommender.delta.plan import plan_delta
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours


def test_neighbour_lists_match_full_recompute_where_it_matters(
    base_catalogue: Catalogue, layer: Path
) -> None:
    new = Catalogue(weekly_change(base_catalogue))
    plan = plan_delta(base_catalogue, new)
    old = load_bundle(layer).neighbours
    update = update_neighbours(old, new, plan)
    lists = update.lists
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)
    assert lists.ids.tolist() == new.ids
    assert not np.isin(lists.neighbour_ids, [40000]).any()  # removed anime appear nowhere
    for anime_id in plan.touched:  # new and changed lists are exact
        assert lists.for_id(anime_id) == full.for_id(anime_id)
    assert update.recomputed < len(new)  # only part of the catalogue
    same = sum(
        set(lists.neighbour_ids[r].tolist()) == set(full.neighbour_ids[r].tolist()) for r in range(len(new))
    )
    assert same / len(new) >= 0.9


@pytest.fixture(scope="module")
def synthetic_lists() -> tuple[Catalogue, NeighbourLists]:
    """A 600-anime synthetic catalogue and its full V2 top-20 lists."""
    catalogue = synthetic_catalogue(600, seed=3)
    return catalogue, top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=20)


def overlap(a: NeighbourLists, b: NeighbourLists) -> float:
    """Mean share of each list's neighbours that the other list also has."""
    same = [len(np.intersect1d(x, y)) for x, y in zip(a.neighbour_ids, b.neighbour_ids, strict=True)]
    return float(np.mean(same)) / a.k


def test_removed_anime_lists_are_recomputed_exactly(
    synthetic_lists: tuple[Catalogue, NeighbourLists],
) -> None:
    # Given two anime removed and nothing else changed
    catalogue, old = synthetic_lists
    gone = catalogue.ids[10], catalogue.ids[300]
    new = Catalogue(a for a in catalogue if a.id not in gone)
    update = update_neighbours(old, new, plan_delta(catalogue, new))
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)

    # Then no list names them; every list that did is the full recompute's; no other list moved
    assert not np.isin(update.lists.neighbour_ids, gone).any()
    had = set(old.ids[np.isin(old.neighbour_ids, gone).any(axis=1)].tolist()) - set(gone)
    for anime_id in set(new.ids):
        expected = full.for_id(anime_id) if anime_id in had else old.for_id(anime_id)
        assert update.lists.for_id(anime_id) == expected
    assert update.recomputed == len(had)


def test_changed_and_added_anime_are_merged_into_existing_lists(
    synthetic_lists: tuple[Catalogue, NeighbourLists],
) -> None:
    # Given a week: 5 anime re-tagged and re-scored, 5 new ones (copies of popular ones, so they enter lists)
    catalogue, old = synthetic_lists
    changed = set(catalogue.ids[::120])
    items = [
        replace(a, tags=(*a.tags, "award winning"), score=9.0) if a.id in changed else a for a in catalogue
    ]
    first = max(catalogue.ids) + 1
    items += [replace(catalogue[r], id=first + i, title=f"S{i}") for i, r in enumerate(range(5, 600, 120))]
    new = Catalogue(items)
    plan = plan_delta(catalogue, new)

    # When the lists are updated
    update = update_neighbours(old, new, plan)
    full = top_k_neighbours(TeacherFeatures.from_catalogue(new), k=old.k)

    # Then only the touched anime's lists were recomputed; the rest were merged (or left alone)
    assert update.recomputed == len(plan.touched) and update.merged > 0
    for anime_id in plan.touched:
        assert update.lists.for_id(anime_id) == full.for_id(anime_id)
    # a new anime appears where a full recompute puts it (up to ties and IDF drift)
    added = np.array(plan.added)
    placed = np.isin(update.lists.neighbour_ids, added).sum(axis=1)
    expected = np.isin(full.neighbour_ids, added).sum(axis=1)
    assert (placed == expected).mean() >= 0.97
    assert overlap(update.lists, full) >= 0.98


def test_uncompressed_neighbour_lists_read_back(
    synthetic_lists: tuple[Catalogue, NeighbourLists], tmp_path: Path
) -> None:
    _, lists = synthetic_lists
    lists.save(tmp_path / "plain.npz", compress=False)
    lists.save(tmp_path / "small.npz")
    for name in ("plain.npz", "small.npz"):
        back = NeighbourLists.load(tmp_path / name)
        assert np.array_equal(back.neighbour_ids, lists.neighbour_ids) and np.array_equal(
            back.scores, lists.scores
        )
    assert (tmp_path / "small.npz").stat().st_size < (tmp_path / "plain.npz").stat().st_size
