"""The evaluation stage on tiny inputs: sections, metrics and the tuning loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.evaluation.cli import register
from anime_pipeline.evaluation.devset import (
    DevSet,
    build_dev_set,
    hit_share,
    teacher_agreement,
    triplet_accuracy_ties,
)
from anime_pipeline.evaluation.final_ranking import (
    PoolDepths,
    RowSiblings,
    build_pools,
    rank_pools,
    tune_ranking,
)
from anime_pipeline.evaluation.franchise import franchise_recall
from anime_pipeline.evaluation.methods import v2_list_rows
from anime_pipeline.evaluation.report import EvaluateInputs, evaluate
from anime_recommender.catalogue import Catalogue
from anime_recommender.ranking import Candidate, FranchiseIndex, RankingConfig, rank_candidates


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def inputs(tmp_path: Path, tiny_catalogue: Catalogue) -> EvaluateInputs:
    cat_path = tmp_path / "catalogue.jsonl.gz"
    tiny_catalogue.save(cat_path)
    n = len(tiny_catalogue)
    ids = np.array(tiny_catalogue.ids, dtype=np.int64)
    v3, v4 = _unit(n, 8, 1), _unit(n, 8, 2)
    np.save(tmp_path / "v3.npy", v3)
    # V4 as .npz with ids in reverse order: the loader must realign by id.
    np.savez(tmp_path / "v4.npz", ids=ids[::-1], v4_int8=v4[::-1])
    # Teacher lists: each anime's neighbours by V4 (so V4 must agree perfectly with the teacher).
    sims = v4 @ v4.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :12]
    np.savez(
        tmp_path / "neighbours.npz",
        ids=ids,
        neighbour_ids=ids[order],
        scores=np.take_along_axis(sims, order, axis=1).astype(np.float16),
    )
    # Triplets: positive = first teacher neighbour, negative = the least similar anime.
    rows = np.arange(n)
    neg = np.argsort(sims.copy(), axis=1)[:, 1]  # the lowest is -inf (itself); take the next
    np.savez(
        tmp_path / "triplets.npz",
        anchor=ids[rows].astype(np.int32),
        positive=ids[order[:, 0]].astype(np.int32),
        negative=ids[neg].astype(np.int32),
        margin=np.ones(n, dtype=np.float32),
        split=(rows % 3).astype(np.uint8),
        seed=np.array(0),
    )
    dev = tmp_path / "dev.csv"
    dev.write_text(
        "source_id,source_title,target_id,target_title,votes\n"
        "1,Cowboy Bebop,6,Trigun,40\n"
        "1,Cowboy Bebop,5,Cowboy Bebop: Tengoku no Tobira,9\n"  # same franchise: excluded
        "20,Naruto,11061,Hunter x Hunter (2011),12\n"
        "20,Naruto,16498,Shingeki no Kyojin,1\n"  # one vote: below the threshold
        "1575,Code Geass: Hangyaku no Lelouch,1535,Death Note,30\n"
        "99999,Not In Catalogue,1,Cowboy Bebop,5\n",
        encoding="utf-8",
    )
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    (onnx_dir / "model_int8.onnx").write_bytes(b"x" * 1234)
    return EvaluateInputs(
        catalogue=cat_path,
        out_dir=tmp_path / "eval",
        vectors={
            "v3": tmp_path / "v3.npy",
            "v4_int8": tmp_path / "v4.npz",
            "v4_fp32": tmp_path / "absent.npy",
        },
        neighbours=tmp_path / "neighbours.npz",
        triplets=tmp_path / "triplets.npz",
        dev_csv=dev,
        model_dir=tmp_path / "no-model",
        onnx_dir=onnx_dir,
        pool=20,
    )


def test_evaluate_writes_every_section(inputs: EvaluateInputs) -> None:
    result = evaluate(inputs)
    report = json.loads(result.json_path.read_text(encoding="utf-8"))
    methods = report["methods"]
    assert set(methods) == {"v1_jaccard", "v1_cosine", "v1_tfidf", "v2", "v3", "v4_int8", "final"}
    # V4 is the teacher here, and positives are the teacher's first neighbours: both are perfect.
    assert methods["v4_int8"]["triplet_accuracy"] == 1.0
    assert methods["v4_int8"]["teacher_recall_at_10"] == 1.0
    assert methods["v2"]["triplet_accuracy"] == 1.0
    assert methods["v2"]["teacher_recall_at_10"] == 1.0
    assert report["triplets"]["test_triplets"] == len([r for r in range(30) if r % 3 == 2])
    assert report["dev"]["pairs_same_franchise_excluded"] == 1
    assert report["dev"]["pairs_min_votes"] == 4
    for name in methods:
        dev = methods[name]["dev"]
        assert 0.0 <= dev["recall_at_10"] <= 1.0
        assert dev["target_pairs"] == 3
    assert len(report["final"]["dev_folds"]) == 2
    # The final items never hold a sibling; the franchise list holds them all (Bebop's movie, ...).
    assert methods["final"]["dev"]["siblings_at_10"] == 0.0
    assert report["franchise_list"]["franchise_recall"] == 1.0
    assert report["franchise_list"]["sibling_pairs"] >= 1
    assert report["final"]["v2_pool"] == 100
    assert report["model"] == {"onnx_variants_bytes": {"model_int8.onnx": 1234}}
    md = result.md_path.read_text(encoding="utf-8")
    assert "| v4_int8 |" in md and "| final |" in md and "model_int8.onnx" in md


def test_dev_section_is_skipped_without_the_csv(inputs: EvaluateInputs, tmp_path: Path) -> None:
    inputs.dev_csv = tmp_path / "missing.csv"
    inputs.triplets = None
    report = evaluate(inputs).report
    assert "skipped" in report["dev"]
    assert "triplets" not in report
    assert all("dev" not in m for m in report["methods"].values())


def test_without_v4_the_final_ranking_is_not_reported(inputs: EvaluateInputs, tmp_path: Path) -> None:
    inputs.vectors = {"v3": tmp_path / "v3.npy"}
    result = evaluate(inputs)
    assert "final" not in result.report["methods"]
    assert "Final ranking not evaluated" in result.md_path.read_text(encoding="utf-8")


def test_misaligned_vectors_fail_loudly(inputs: EvaluateInputs, tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", _unit(5, 8, 3))
    inputs.vectors = {"v3": tmp_path / "short.npy"}
    with pytest.raises(ValueError, match="5 vectors"):
        evaluate(inputs)


def test_metrics_on_hand_made_lists() -> None:
    top = np.array([[1, 2, 3], [4, 5, -1]])
    assert hit_share(top, np.array([0, 9]), {0: {1, 7}, 9: {5}}) == (2 / 3, 3)
    assert teacher_agreement(top, np.array([[3, 8, -1], [-1, -1, -1]])) == 0.5
    assert triplet_accuracy_ties(np.array([1.0, 0.5, 0.2]), np.array([0.0, 0.5, 0.9])) == pytest.approx(0.5)


def test_final_ranking_leaves_siblings_out_and_tuning_reports_two_folds(tiny_catalogue: Catalogue) -> None:
    siblings = RowSiblings(tiny_catalogue, FranchiseIndex(tiny_catalogue))
    n = len(tiny_catalogue)
    v = _unit(n, 8, 4)
    rows = np.arange(n)
    pools = build_pools(tiny_catalogue, siblings, v, v, rows, PoolDepths(n))
    # A V3 pool widens the candidates with the V3 search's own neighbours.
    v3 = _unit(n, 8, 5)
    wide = build_pools(tiny_catalogue, siblings, v, v3, rows, PoolDepths(5, 5))
    sims3 = v3 @ v3.T
    np.fill_diagonal(sims3, -np.inf)
    best3 = int(np.argmax(sims3[0]))
    assert best3 in wide.rows[0] or best3 in siblings(0)
    assert np.all((wide.tags >= 0) & (wide.tags <= 1))
    # Siblings are never candidates, even with the whole catalogue in the pool.
    naruto, shippuuden = tiny_catalogue.row(20), tiny_catalogue.row(1735)
    assert shippuuden not in pools.rows[naruto] and naruto not in pools.rows[naruto]
    top = rank_pools(pools, RankingConfig(), k=10)
    dev = build_dev_set([(20, 11061, 5), (1, 6, 5)], tiny_catalogue, FranchiseIndex(tiny_catalogue))
    assert isinstance(dev, DevSet)
    assert hit_share(top, rows, dev.siblings)[0] == 0.0
    assert franchise_recall(tiny_catalogue, FranchiseIndex(tiny_catalogue), dev)["franchise_recall"] == 1.0
    tuning = tune_ranking(
        pools, dev, RankingConfig(), grid={"w_popularity": (0.0, 0.5), "w_year": (0.0, 1.0)}
    )
    assert tuning["configs_tried"] == 4
    assert [f["held_out_fold"] for f in tuning["folds"]] == [0, 1]
    RankingConfig.model_validate(tuning["best"])


def test_v2_lists_join_the_pool(inputs: EvaluateInputs, tiny_catalogue: Catalogue) -> None:
    # Given a pool with no vector candidates at all, the V2 list still supplies them
    assert inputs.neighbours is not None
    v2 = v2_list_rows(inputs.neighbours, tiny_catalogue, 5)
    siblings = RowSiblings(tiny_catalogue, FranchiseIndex(tiny_catalogue))
    v = _unit(len(tiny_catalogue), 8, 4)
    rows = np.arange(len(tiny_catalogue))
    pools = build_pools(tiny_catalogue, siblings, v, v, rows, PoolDepths(0), v2_top=v2)
    listed = v2(rows)
    for q in rows:
        expected = {int(r) for r in listed[q] if r >= 0} - siblings(int(q))
        assert {int(r) for r in pools.rows[q] if r >= 0} == expected


def test_pool_ranking_matches_the_api_path(tiny_catalogue: Catalogue) -> None:
    # The evaluation's vectorised ranking and the API's `rank_candidates` must agree exactly.
    siblings = RowSiblings(tiny_catalogue, FranchiseIndex(tiny_catalogue))
    n = len(tiny_catalogue)
    v4, v3 = _unit(n, 8, 6), _unit(n, 8, 7)
    rows = np.arange(n)
    pools = build_pools(tiny_catalogue, siblings, v4, v3, rows, PoolDepths(8, 4))
    config = RankingConfig(w_year=0.1)
    top = rank_pools(pools, config, k=5)
    for q, row in enumerate(rows):
        cand = [
            Candidate(tiny_catalogue[int(r)], float(v4[row] @ v4[r]), float(v3[row] @ v3[r]))
            for r in pools.rows[q]
            if r >= 0
        ]
        expected = [r.id for r in rank_candidates(tiny_catalogue[int(row)], cand, config, k=5)]
        assert [tiny_catalogue[int(r)].id for r in top[q] if r >= 0] == expected


def test_cli_registers_evaluate() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--tune", "--vectors", "v4_int8=x.npy"])
    assert args.tune and args.vectors == ["v4_int8=x.npy"] and callable(args.func)
