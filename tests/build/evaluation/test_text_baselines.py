"""The plain baselines (BM25 search, TF-IDF recommendations), franchise recall against title-rule groups,
and the flat quality keys, on tiny hand-written catalogues."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anime_pipeline.evaluation.devset import build_dev_set, dev_metrics
from anime_pipeline.evaluation.final_ranking import RowSiblings
from anime_pipeline.evaluation.franchise import (
    franchise_recall_title_groups,
    group_sizes,
    title_rule_index,
)
from anime_pipeline.evaluation.quality import QUALITY_KEYS, configuration_entry, quality_summary
from anime_pipeline.evaluation.search_eval import EvalQuery, bm25_baseline
from anime_pipeline.evaluation.text_baselines import Bm25Search, TfidfRecommender, tfidf_dev_baseline, words
from anime_pipeline.paths import BuildPaths
from anime_recommender.catalogue import Anime, Catalogue, with_fields
from anime_recommender.ranking import FranchiseIndex

MAL = "https://myanimelist.net/anime/{}"


def _anime(anime_id: int, title: str, **fields: object) -> Anime:
    return Anime(id=anime_id, title=title, sources=(MAL.format(anime_id),), **fields)  # type: ignore[arg-type]


def _story_catalogue() -> Catalogue:
    return Catalogue(
        [
            _anime(1, "Alpha Blue", tags=("action", "space"), members=900_000),
            _anime(
                2,
                "Quiet Hills",
                tags=("drama",),
                members=2_000,
                title_english="The Quiet Hills",
                synopsis="A boy rewinds time to stop the murder of his classmate in a snowy town.",
            ),
            _anime(3, "Gamma Green", tags=("comedy", "school"), members=500_000),
            _anime(
                4,
                "Delta Red",
                tags=("drama", "mystery"),
                members=1_000,
                synopsis="A detective travels back through time to prevent a classmate's murder.",
            ),
            _anime(5, "Epsilon", tags=("drama", "mystery"), members=800_000, synopsis="Cooking contests."),
        ]
    )


def test_words_fold_case_accents_and_stopwords() -> None:
    assert words("The Café of DREAMS, 2nd season") == ["cafe", "dreams", "2nd", "season"]


def test_bm25_finds_an_anime_by_words_only_its_synopsis_has() -> None:
    # Given an unpopular anime whose plot words are only in its synopsis, and popular ones without them
    catalogue = _story_catalogue()
    engine = Bm25Search.from_catalogue(catalogue)
    # When a plot query is searched with a modest popularity prior
    top = engine.search("boy rewinds time snowy town", k=3, prior_weight=0.2)
    # Then the synopsis match comes first, and the English title is searchable too
    assert top[0] == 2
    assert engine.search("the quiet hills", k=1, prior_weight=0.0) == [2]
    # Without any matching word the popularity prior alone orders the list
    assert engine.search("zzz unknown", k=2, prior_weight=1.0) == [1, 5]


def test_bm25_baseline_reports_splits_and_tunes_its_prior_on_tune_only() -> None:
    catalogue = _story_catalogue()
    queries = [
        EvalQuery("boy rewinds time snowy town", (2,), "tune"),
        EvalQuery("detective prevents a classmate murder", (4,), "holdout"),
    ]
    section = bm25_baseline(catalogue, queries)
    assert section["tune"]["hit@10"] == 1.0 and section["holdout"]["n"] == 1
    assert section["prior_weight"] in [t["prior_weight"] for t in section["prior_weights_tried_on_tune"]]


def test_tfidf_ranks_the_anime_sharing_synopsis_words_above_one_sharing_none() -> None:
    # Given two anime with the same tags as the query, one sharing its synopsis words and one not
    catalogue = _story_catalogue()
    model = TfidfRecommender.from_catalogue(catalogue)
    sims = model.similarities(np.array([catalogue.row(2)]))[0]
    # Then the one sharing synopsis words is more similar, whatever its popularity
    assert sims[catalogue.row(4)] > sims[catalogue.row(5)] > 0.0
    siblings = RowSiblings(catalogue, FranchiseIndex(catalogue))
    top = model.top_k(np.array([catalogue.row(2)]), siblings, prior_weights=(0.0,), k=3)[0.0][0]
    assert top[0] == catalogue.row(4) and catalogue.row(2) not in top.tolist()


def test_tfidf_falls_back_to_tags_without_synopses_and_leaves_siblings_out() -> None:
    catalogue = Catalogue(
        [
            _anime(1, "Kiseki", tags=("drama", "music"), members=10),
            _anime(2, "Kiseki 2nd Season", tags=("drama", "music"), members=10),
            _anime(3, "Other Song", tags=("drama", "music"), members=10),
            _anime(4, "Far Away", tags=("sports",), members=10),
        ]
    )
    franchise = FranchiseIndex(catalogue)
    dev = build_dev_set([(1, 3, 5), (1, 4, 5)], catalogue, franchise)
    result = tfidf_dev_baseline(catalogue, RowSiblings(catalogue, franchise), dev)
    # The sibling (2) never takes a slot: the cross-franchise target (3) ranks first
    assert result["dev"]["siblings_at_10"] == 0.0
    assert result["dev"]["recall_at_10"] == 1.0  # both targets fit in 10 slots of a 4-anime catalogue
    top = TfidfRecommender.from_catalogue(catalogue).top_k(
        dev.sources, RowSiblings(catalogue, franchise), prior_weights=(0.0,), k=1
    )[0.0]
    assert top[0, 0] == catalogue.row(3)
    assert result["dev"] == dev_metrics(
        TfidfRecommender.from_catalogue(catalogue).top_k(
            dev.sources, RowSiblings(catalogue, franchise), prior_weights=(result["prior_weight"],)
        )[result["prior_weight"]],
        dev.sources,
        dev,
    )


def _franchise_catalogue() -> Catalogue:
    return Catalogue(
        [
            _anime(1, "Hoshi no Umi", tags=("drama",), year=2001),
            _anime(2, "Hoshi no Umi 2nd Season", tags=("drama",), year=2003),
            # Linked to 1 only by a relation (a crossover): no title rule joins them
            _anime(3, "Totally Different Show", tags=("comedy",), related=(MAL.format(1),)),
            _anime(4, "Lonely Movie", tags=("drama",)),
        ]
    )


def test_franchise_recall_is_judged_against_title_rule_groups_not_the_links() -> None:
    catalogue = _franchise_catalogue()
    served = FranchiseIndex(catalogue)
    titles = title_rule_index(catalogue)
    # The served index follows the relation link; the title-rule index cannot see it
    assert served.siblings(catalogue.by_id(1)) == [2, 3]
    assert titles.siblings(catalogue.by_id(1)) == [2]
    assert titles.siblings(with_fields(catalogue.by_id(3), related=())) == []
    result = franchise_recall_title_groups(catalogue, served, titles, np.array([0, 1, 2, 3]))
    # Sources 1 and 2 have title groups (each other); 3 and 4 have none and are not judged
    assert result["sibling_pairs"] == 2 and result["franchise_recall"] == 1.0
    # Of the entries listed for 1 and 2 (2; 1 and 3), one (3) is outside the title groups
    assert result["listed_outside_title_groups"] == 1 / 3


def test_franchise_recall_against_title_groups_counts_a_missed_sibling() -> None:
    catalogue = _franchise_catalogue()
    titles = title_rule_index(catalogue)
    empty = FranchiseIndex([])  # a served index that lists nothing
    result = franchise_recall_title_groups(catalogue, empty, titles, np.array([0, 1]))
    assert result["franchise_recall"] == 0.0 and result["sibling_pairs"] == 2


def test_group_sizes_describe_the_sibling_counts() -> None:
    catalogue = _franchise_catalogue()
    sizes = group_sizes(catalogue, FranchiseIndex(catalogue))
    assert sizes["anime"] == 4 and sizes["siblings_max"] == 2 and sizes["largest"]["id"] == 1
    assert sizes["with_siblings"] == 3 and sizes["groups_over_50"] == 0


def test_quality_summary_has_every_key_and_a_missing_configuration_says_why(tmp_path: Path) -> None:
    report = {
        "search": {
            "modes": {"hybrid_understanding": {"tune": {"hit@10": 0.9, "mrr": 0.5}}},
            "baseline_bm25": {"holdout": {"hit@10": 0.8, "mrr": 0.4}, "prior_weight": 1.0},
        },
        "methods": {"final": {"dev": {"recall_at_10": 0.17}}},
        "baselines": {"tfidf": {"dev": {"recall_at_10": 0.15}, "prior_weight": 0.5}},
    }
    summary = quality_summary(report)
    assert list(summary) == list(QUALITY_KEYS)
    assert summary["search_hit_at_10_tune"] == 0.9 and summary["search_hit_at_10_holdout"] is None
    assert summary["baseline_bm25_hit_at_10_holdout"] == 0.8 and summary["dev_recall_at_10"] == 0.17
    assert (
        summary["baseline_tfidf_dev_recall_at_10"] == 0.15 and summary["baseline_tfidf_prior_weight"] == 0.5
    )

    paths = BuildPaths(work=tmp_path / "work", artifacts_layer=tmp_path / "layer")
    assert configuration_entry(paths)["status"] == "missing"
    (paths.eval).mkdir(parents=True)
    (paths.eval / "report.json").write_text(json.dumps(report), encoding="utf-8")
    entry = configuration_entry(paths)  # no bundle: the report's own search keys stay
    assert entry["status"] == "ok" and entry["search_hit_at_10_tune"] == 0.9
    assert set(QUALITY_KEYS) <= set(entry)
