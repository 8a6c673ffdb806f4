"""V2 teacher: each feature's formula, missing fields, and the vectorised path against the reference."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.synthetic import synthetic_catalogue
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import (
    TeacherConfig,
    TeacherFeatures,
    TeacherStats,
    top_k_arrays,
    top_k_neighbours,
    v2_components,
    v2_similarity,
)


def _anime(aid: int, tags: tuple[str, ...] = ("a",), **kw: object) -> Anime:
    return Anime(id=aid, title=f"A{aid}", tags=tags, **kw)  # type: ignore[arg-type]


def _stats(items: list[Anime], **cfg: object) -> TeacherStats:
    return TeacherStats.from_catalogue(items, TeacherConfig(**cfg))  # type: ignore[arg-type]


def test_shared_rare_tag_counts_more_than_shared_common_tag() -> None:
    # "comedy" on every anime, "space" on two: sharing "space" must beat sharing "comedy".
    filler = [_anime(100 + i, ("comedy", f"x{i}")) for i in range(20)]
    a = _anime(1, ("comedy", "space"))
    b = _anime(2, ("space", "drama"))
    c = _anime(3, ("comedy", "drama2"))
    stats = _stats([a, b, c, *filler])
    assert stats.tag_weight("space") > 2 * stats.tag_weight("comedy")
    assert v2_components(a, b, stats)["tags"] > v2_components(a, c, stats)["tags"]  # type: ignore[operator]


def test_weighted_jaccard_formula() -> None:
    a, b = _anime(1, ("x", "y")), _anime(2, ("y", "z"))
    stats = _stats([a, b, _anime(3, ("x",))])
    w = stats.tag_weight
    expected = w("y") / (w("x") + w("y") + w("z"))
    assert v2_components(a, b, stats)["tags"] == pytest.approx(expected)
    assert v2_components(a, a, stats)["tags"] == pytest.approx(1.0)
    assert v2_components(a, _anime(4, ()), stats)["tags"] == 0.0


def test_score_proximity_is_normalised_difference() -> None:
    stats = _stats([], score_scale=3.0)
    a = _anime(1, score=8.0)
    assert v2_components(a, _anime(2, score=8.0), stats)["score"] == pytest.approx(1.0)
    assert v2_components(a, _anime(2, score=6.5), stats)["score"] == pytest.approx(0.5)
    assert v2_components(a, _anime(2, score=2.0), stats)["score"] == 0.0


def test_year_tolerance_narrows_for_recent_years() -> None:
    stats = _stats([])
    old = v2_components(_anime(1, year=1975), _anime(2, year=1980), stats)["year"]
    recent = v2_components(_anime(1, year=2015), _anime(2, year=2020), stats)["year"]
    assert old is not None and recent is not None
    assert old > recent > 0
    assert v2_components(_anime(1, year=2020), _anime(2, year=2020), stats)["year"] == 1.0
    assert v2_components(_anime(1, year=2000), _anime(2, year=2020), stats)["year"] == 0.0
    cfg = TeacherConfig()
    assert cfg.year_tolerance(1950) == cfg.year_tolerance_old
    assert cfg.year_tolerance(2024) == cfg.year_tolerance_recent


def test_type_compatibility_is_a_graded_matrix() -> None:
    stats = _stats([])

    def t(x: AnimeType, y: AnimeType) -> float | None:
        return v2_components(_anime(1, type=x), _anime(2, type=y), stats)["type"]

    assert t(AnimeType.TV, AnimeType.TV) == 1.0
    graded = [t(AnimeType.TV, x) for x in (AnimeType.ONA, AnimeType.MOVIE, AnimeType.MUSIC)]
    assert graded == sorted((g for g in graded if g is not None), reverse=True)
    assert len(set(graded)) == 3 and graded[0] is not None and graded[0] < 1.0
    assert t(AnimeType.OVA, AnimeType.SPECIAL) == t(AnimeType.SPECIAL, AnimeType.OVA)
    assert t(AnimeType.TV, AnimeType.UNKNOWN) is None
    with pytest.raises(ValueError):
        TeacherConfig(type_compatibility={(AnimeType.TV, AnimeType.TV): 1.0})


def test_missing_field_drops_its_weight_and_renormalises() -> None:
    stats = _stats([_anime(9, ("a", "b"))])
    full_a = _anime(1, ("a",), score=8.0, year=2000, type=AnimeType.TV)
    full_b = _anime(2, ("a", "b"), score=7.0, year=2004, type=AnimeType.TV)
    comp = v2_components(full_a, full_b, stats)
    no_score = replace(full_b, score=None)
    expected = (0.6 * comp["tags"] + 0.15 * comp["year"] + 0.05 * comp["type"]) / 0.8  # type: ignore[operator]
    assert v2_similarity(full_a, no_score, stats) == pytest.approx(expected)
    # Neither reward nor punishment: a missing score sits between a perfect and a poor score match.
    perfect = replace(full_b, score=8.0)
    poor = replace(full_b, score=2.0)
    assert (
        v2_similarity(full_a, poor, stats)
        < v2_similarity(full_a, no_score, stats)
        < v2_similarity(full_a, perfect, stats)
    )
    no_year = replace(full_b, year=None)
    expected = (0.6 * comp["tags"] + 0.2 * comp["score"] + 0.05 * comp["type"]) / 0.85  # type: ignore[operator]
    assert v2_similarity(full_a, no_year, stats) == pytest.approx(expected)
    # Two anime that both miss a field do not become identical on it either.
    both = v2_similarity(replace(full_a, score=None), no_score, stats)
    assert both == pytest.approx(v2_similarity(full_a, no_score, stats))


def _check_against_reference(catalogue: Catalogue, features: TeacherFeatures, k: int) -> None:
    stats = features.stats
    n = len(catalogue)
    ref = np.array([[v2_similarity(a, b, stats) for b in catalogue] for a in catalogue])
    np.fill_diagonal(ref, -np.inf)  # self-pairs are excluded everywhere
    rows = np.arange(n)
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(features.block_scores(rows)[off], ref[off], atol=1e-5)
    ra, rb = np.meshgrid(rows, rows, indexing="ij")
    ra, rb = ra[off], rb[off]
    np.testing.assert_allclose(features.pair_scores(ra, rb), ref[off], atol=1e-5)
    query, nb, sc = top_k_arrays(features, k=k, block_size=7)
    for row in query:
        assert row not in nb[row]
        np.testing.assert_allclose(sc[row], np.sort(ref[row])[::-1][:k], atol=1e-5)
        # Same set modulo ties: everything strictly above the k-th reference score is present.
        kth = np.sort(ref[row])[::-1][k - 1]
        assert set(np.flatnonzero(ref[row] > kth + 1e-5)) <= set(nb[row].tolist())
        assert np.all(np.diff(sc[row]) <= 0)


@pytest.mark.parametrize("measure", ["jaccard", "cosine"])
def test_vectorised_matches_reference_on_tiny(tiny_catalogue: Catalogue, measure: str) -> None:
    features = TeacherFeatures.from_catalogue(tiny_catalogue, TeacherConfig(tag_measure=measure))  # type: ignore[arg-type]
    _check_against_reference(tiny_catalogue, features, k=10)


@pytest.mark.parametrize(
    ("dense_share", "measure"), [(0.0, "jaccard"), (0.05, "jaccard"), (1.1, "jaccard"), (0.05, "cosine")]
)
def test_vectorised_matches_reference_on_synthetic(dense_share: float, measure: str) -> None:
    # Dense-only, mixed and sparse-only tag paths must agree with the reference.
    catalogue = synthetic_catalogue(120, seed=3)
    config = TeacherConfig(tag_measure=measure)  # type: ignore[arg-type]
    features = TeacherFeatures.from_catalogue(catalogue, config, dense_tag_share=dense_share)
    _check_against_reference(catalogue, features, k=20)


def test_top_k_rows_subset_equals_full(tiny_catalogue: Catalogue) -> None:
    features = TeacherFeatures.from_catalogue(tiny_catalogue)
    full = top_k_neighbours(features, k=5)
    part = top_k_neighbours(features, k=5, rows=[3, 0, 7])
    assert part.ids.tolist() == [tiny_catalogue[r].id for r in (0, 3, 7)]
    for aid in part.ids.tolist():
        assert part.for_id(aid) == full.for_id(aid)
    merged = full.with_lists(part)
    assert np.array_equal(merged.neighbour_ids, full.neighbour_ids)


def test_franchise_neighbours_make_sense(tiny_catalogue: Catalogue) -> None:
    lists = top_k_neighbours(TeacherFeatures.from_catalogue(tiny_catalogue), k=3)
    assert lists.for_id(5114)[0][0] == 121  # FMA:B -> FMA
    assert lists.for_id(5680)[0][0] == 7791  # K-On! -> K-On!!
    assert 1735 in [i for i, _ in lists.for_id(20)]  # Naruto -> Shippuuden


def test_ties_break_to_lower_id() -> None:
    # Identical anime: every neighbour ties, so lists must be the lowest ids, ascending.
    cat = Catalogue(_anime(i, ("a", "b"), score=7.0, type=AnimeType.TV) for i in range(10, 30))
    lists = top_k_neighbours(TeacherFeatures.from_catalogue(cat), k=4)
    assert [i for i, _ in lists.for_id(10)] == [11, 12, 13, 14]
    assert [i for i, _ in lists.for_id(12)] == [10, 11, 13, 14]


def test_neighbour_lists_save_load_for_id(tmp_path: Path, tiny_catalogue: Catalogue) -> None:
    lists = top_k_neighbours(TeacherFeatures.from_catalogue(tiny_catalogue), k=100)
    assert lists.k == len(tiny_catalogue) - 1
    assert lists.scores.dtype == np.float16 and lists.neighbour_ids.dtype == np.int32
    path = tmp_path / "n.npz"
    lists.save(path)
    back = NeighbourLists.load(path)
    assert np.array_equal(back.ids, lists.ids) and np.array_equal(back.scores, lists.scores)
    top = back.for_id(1, 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert 1 in back and 999_999 not in back
    with pytest.raises(KeyError):
        back.for_id(999_999)
    assert 1 not in back.without_ids([1])
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.npz"):
        np.savez(tmp_path / "bad.npz", ids=np.arange(3))
        NeighbourLists.load(tmp_path / "bad.npz")


@pytest.mark.slow
def test_default_catalogue_examples_make_sense() -> None:
    # Full 17.5k catalogue: the teacher's lists for well-known titles start with their franchise.
    from anime_recommender.loaders import load_catalogue
    from anime_recommender.release_dates import local_release_dates

    catalogue = load_catalogue(None, release_dates=local_release_dates()).catalogue
    features = TeacherFeatures.from_catalogue(catalogue)
    lists = top_k_neighbours(features, k=10, rows=[catalogue.row(i) for i in (1, 5114, 5680)])
    assert lists.for_id(5114)[0][0] == 121  # FMA:B -> FMA
    assert 7791 in [i for i, _ in lists.for_id(5680)[:3]]  # K-On! -> K-On!!
    assert {6, 400} <= {i for i, _ in lists.for_id(1)}  # Cowboy Bebop -> Trigun and Outlaw Star
