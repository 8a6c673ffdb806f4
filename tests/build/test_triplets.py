"""Triplet mining: determinism, anchor-disjoint split, margins, file format and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.cli import main
from anime_pipeline.synthetic import synthetic_catalogue
from anime_pipeline.triplets import TripletConfig, load_triplets, mine_triplets
from anime_recommender.catalogue import Catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return synthetic_catalogue(400, seed=5)


@pytest.fixture(scope="module")
def lists(catalogue: Catalogue) -> NeighbourLists:
    return top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=60)


CFG = TripletConfig(n_triplets=6000, seed=7, positive_ranks=(0, 5), hard_ranks=(20, 60))


def test_deterministic_for_seed(catalogue: Catalogue, lists: NeighbourLists) -> None:
    a = mine_triplets(catalogue, lists, CFG)
    b = mine_triplets(catalogue, lists, CFG)
    c = mine_triplets(catalogue, lists, TripletConfig(**{**CFG.__dict__, "seed": 8}))
    for col in ("anchor", "positive", "negative", "margin", "split", "hard"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.anchor, c.anchor)


def test_split_is_by_anchor_and_shares_match(catalogue: Catalogue, lists: NeighbourLists) -> None:
    t = mine_triplets(catalogue, lists, CFG)
    anchors = [set(t.anchor[t.split == s].tolist()) for s in range(3)]
    assert not anchors[0] & anchors[2] and not anchors[0] & anchors[1] and not anchors[1] & anchors[2]
    n_anchors = sum(len(x) for x in anchors)
    assert n_anchors == len(catalogue)
    assert abs(len(anchors[0]) / n_anchors - 0.8) < 0.01 and abs(len(anchors[2]) / n_anchors - 0.1) < 0.01


def test_triplets_follow_the_teacher(catalogue: Catalogue, lists: NeighbourLists) -> None:
    t = mine_triplets(catalogue, lists, CFG)
    assert len(t) >= 0.99 * CFG.n_triplets  # only teacher ties are dropped
    assert np.mean(t.margin > 0) == 1.0
    assert 0.4 < t.hard.mean() < 0.6
    assert t.margin[t.hard].mean() < t.margin[~t.hard].mean()  # hard negatives are harder
    for a, p, n, h in list(zip(t.anchor, t.positive, t.negative, t.hard, strict=True))[:300]:
        top = [i for i, _ in lists.for_id(int(a))]
        assert int(p) in top[:5] and a != n and p != n
        assert (int(n) in top[20:60]) if h else (int(n) not in top)
    # Margins are the teacher's own scores.
    feats = TeacherFeatures.from_catalogue(catalogue)
    rows = {aid: r for r, aid in enumerate(catalogue.ids)}
    ra, rp, rn = (np.array([rows[int(x)] for x in col[:200]]) for col in (t.anchor, t.positive, t.negative))
    np.testing.assert_allclose(
        t.margin[:200], feats.pair_scores(ra, rp) - feats.pair_scores(ra, rn), atol=1e-6
    )


def test_stale_lists_are_refused(catalogue: Catalogue, lists: NeighbourLists) -> None:
    smaller = Catalogue(list(catalogue)[:-5])
    with pytest.raises(ValueError, match="rerun the teacher"):
        mine_triplets(smaller, lists, CFG)


def test_cli_teacher_then_triplets(
    tmp_path: Path, tiny_catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    cat_path, nb_path, tr_path = tmp_path / "c.jsonl.gz", tmp_path / "n.npz", tmp_path / "t.npz"
    tiny_catalogue.save(cat_path)
    assert (
        main(["teacher", "--catalogue", str(cat_path), "--output", str(nb_path), "-k", "20", "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert "pairs/s" in out and "peak RSS" in out and "Cowboy Bebop" in out
    lists = NeighbourLists.load(nb_path)
    assert lists.k == 20 and len(lists) == len(tiny_catalogue)
    argv = ["triplets", "--catalogue", str(cat_path), "--neighbours", str(nb_path), "--output", str(tr_path)]
    assert main([*argv, "-n", "600", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "test" in out
    t = load_triplets(tr_path)
    assert (
        t.seed == 3
        and t.anchor.dtype == np.int32
        and t.margin.dtype == np.float32
        and t.split.dtype == np.uint8
    )
    assert 0 < len(t) <= 600
    assert main(["triplets", "--catalogue", str(tmp_path / "missing.gz"), "--neighbours", str(nb_path)]) == 2


def test_cli_help_lists_stages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["teacher", "--help"])
    assert "V2 teacher" in capsys.readouterr().out
