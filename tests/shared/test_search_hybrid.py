"""The hybrid ranking on the tiny catalogue: fusion, filters, anchors, explanations, bad queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from anime_recommender.artifacts import load_bundle
from anime_recommender.catalogue import AnimeType, Catalogue
from anime_recommender.search.dense import EncoderDense
from anime_recommender.search.hybrid import HybridRanker, HybridWeights, SearchHit
from anime_recommender.search.lexical import build_lexical_index
from anime_recommender.search.query import ParsedQuery, QueryParser


class FakeDense:
    """Dense search returning fixed cosines (inside `allowed`), recording what it was asked."""

    def __init__(self, cosines: dict[int, float]) -> None:
        self.cosines = cosines
        self.calls: list[tuple[str, int, set[int] | None]] = []

    def __call__(self, text: str, k: int, allowed: set[int] | None) -> Sequence[tuple[int, float]]:
        self.calls.append((text, k, allowed))
        ranked = sorted(self.cosines.items(), key=lambda pair: -pair[1])
        return [(a, s) for a, s in ranked if allowed is None or a in allowed][:k]


@pytest.fixture(scope="module")
def ranker(tiny_catalogue: Catalogue) -> HybridRanker:
    return HybridRanker(tiny_catalogue, build_lexical_index(tiny_catalogue))


@pytest.fixture(scope="module")
def parser(tiny_catalogue: Catalogue) -> QueryParser:
    return QueryParser.for_catalogue(tiny_catalogue)


def ids(hits: Sequence[SearchHit]) -> list[int]:
    return [h.anime_id for h in hits]


def test_genre_words_and_priors_rank_the_space_western_first(
    ranker: HybridRanker, parser: QueryParser
) -> None:
    # Given the query: no title word matches, but 'space' and 'jazz' name genres
    hits = ranker.search(parser.parse("space bounty hunters with a jazz soundtrack"), 5)
    # Then the most popular anime tagged space leads, explained by the genre it matched
    assert hits[0].anime_id == 1
    assert ("genre", "space") in {(p.kind, p.value) for p in hits[0].explanation}


def test_dense_and_lexical_fuse(ranker: HybridRanker, parser: QueryParser) -> None:
    # A dense pool that prefers an obscure anime lifts it above more popular ones
    dense = FakeDense({40000: 0.9, 20: 0.2, 1: 0.1})
    weights = HybridWeights(dense=5.0, popularity=1.0)
    hits = HybridRanker(ranker.catalogue, ranker.lexical, weights).search(
        parser.parse("a mystery"), 3, dense=dense
    )
    assert hits[0].anime_id == 40000
    assert any(p.kind == "dense" for p in hits[0].explanation)
    # The dense search sees the residual text, unfiltered here
    assert dense.calls[-1] == ("a mystery", weights.pool, None)
    # Components sum to the score
    for hit in hits:
        assert hit.score == pytest.approx(sum(hit.components.values()))


def test_dense_search_is_asked_inside_the_filters(ranker: HybridRanker, parser: QueryParser) -> None:
    dense = FakeDense({40000: 0.9, 5: 0.5, 199: 0.4})
    hits = ranker.search(parser.parse("a short mystery"), 3, dense=dense)
    text, _, allowed = dense.calls[-1]
    # "short" (≤ 13 episodes) keeps only anime with a known, small episode count: the tiny movies
    movies = {a.id for a in ranker.catalogue if a.type is AnimeType.MOVIE}
    assert text == "a mystery" and allowed == movies
    assert set(ids(hits)) <= movies and hits[0].anime_id == 5


def test_hard_filters_hold(ranker: HybridRanker, parser: QueryParser) -> None:
    catalogue = ranker.catalogue
    no_movies = ranker.search(parser.parse("space drama, not a movie"), 10)
    assert no_movies and all(catalogue.by_id(a).type is not AnimeType.MOVIE for a in ids(no_movies))
    no_romance = ranker.search(parser.parse("school drama without romance"), 10)
    assert no_romance and all("romance" not in catalogue.by_id(a).tags for a in ids(no_romance))
    nineties = ranker.search(parser.parse("90s mecha"), 10)
    # Mecha is a boost (Evangelion first), the decade a filter
    assert nineties[0].anime_id == 30
    assert all(catalogue.by_id(a).year in range(1990, 2000) for a in ids(nineties))
    # Nothing passes: an empty list (the API turns it into an empty result), never an error
    assert ranker.search(parser.parse("a movie from the 2010s about mecha, no romance, no drama"), 10) == []


def test_only_a_negation_is_popular_within_the_filter(ranker: HybridRanker, parser: QueryParser) -> None:
    parsed = parser.parse("no romance")
    hits = ranker.search(parsed, 5)
    catalogue = ranker.catalogue
    w = ranker.weights

    def prior(anime_id: int) -> float:
        row = catalogue.row(anime_id)
        return float(w.popularity * ranker.pop[row] + w.quality * ranker.qual[row])

    expected = sorted((a.id for a in catalogue if "romance" not in a.tags), key=lambda a: -prior(a))
    assert ids(hits) == expected[:5]
    assert all(p.kind == "popular" for h in hits for p in h.explanation)


def test_like_anchor_pulls_similar_and_excludes_itself(ranker: HybridRanker, parser: QueryParser) -> None:
    parsed = parser.parse("like Cowboy Bebop but funnier")
    assert parsed.anchor_ids == (1,)

    def anchors(anchor_ids: Sequence[int], k: int, allowed: set[int] | None) -> list[tuple[int, float]]:
        assert allowed is None or 1 not in allowed
        return [(6, 0.95), (5, 0.9), (820, 0.5)]

    hits = ranker.search(parsed, 5, anchors=anchors)
    assert 1 not in ids(hits)
    assert hits[0].anime_id == 6  # Trigun: closest to the anchor and a comedy
    assert any(p.kind == "like" and p.value == "Cowboy Bebop" for p in hits[0].explanation)


def test_explanations_are_never_empty(ranker: HybridRanker, parser: QueryParser) -> None:
    for text in ("cowboy bebop", "a 2001 movie", "", "no romance", "like Naruto", "zzzz", "magic school"):
        for hit in ranker.search(parser.parse(text), 10):
            assert hit.explanation, (text, hit)
    title_hit = ranker.search(parser.parse("cowboy bebop"), 1)[0]
    assert ("title_words", "cowboy, bebop") in {(p.kind, p.value) for p in title_hit.explanation}


@pytest.mark.parametrize(
    "text", ["", "   ", "the of and", "x" * 10_000, "ロボット 宇宙", "аниме", "not", "no romance", "🤖" * 100]
)
def test_bad_queries_through_the_whole_path(ranker: HybridRanker, parser: QueryParser, text: str) -> None:
    dense = FakeDense({1: 0.5})
    hits = ranker.search(parser.parse(text), 10, dense=dense, anchors=lambda a, k, allowed: [])
    assert len(hits) == 10  # the catalogue has more than 10 anime passing: popular within filter


def test_allowed_rows_restrict_results(ranker: HybridRanker) -> None:
    mask = np.zeros(len(ranker.catalogue), dtype=bool)
    mask[[ranker.catalogue.row(5), ranker.catalogue.row(20)]] = True
    hits = ranker.search(ParsedQuery(text="cowboy", residual="cowboy"), 10, allowed_rows=mask)
    assert ids(hits) == [5, 20]


def test_rejects_a_lexical_index_of_another_catalogue(tiny_catalogue: Catalogue) -> None:
    other = build_lexical_index(Catalogue(list(tiny_catalogue)[:5]))
    with pytest.raises(ValueError, match="do not match"):
        HybridRanker(tiny_catalogue, other)


def test_encoder_dense_over_the_tiny_bundle(bundle_template: Path, parser: QueryParser) -> None:
    # The real adapter over the real (tiny) int8 ONNX encoder and hnswlib indexes
    bundle = load_bundle(bundle_template, all_tiers=True)
    assert bundle.encoder is not None and bundle.index is not None
    dense = EncoderDense(bundle.encoder, bundle.index, space=bundle.tier, secondary=bundle.indexes.get("v3"))
    pool = dense("Cowboy Bebop space western", 5, None)
    assert len(pool) == 5 and all(-2.0 <= s <= 2.0 for _, s in pool)
    assert [a for a, _ in dense("naruto", 3, {20, 1735})] and {
        a for a, _ in dense("naruto", 3, {20, 1735})
    } <= {20, 1735}
    assert dense("", 5, None) == [] and dense("naruto", 5, set()) == []
    similar = dense.anchors([1], 5, None)
    assert len(similar) == 5 and 1 not in {a for a, _ in similar}
    ranker = HybridRanker(bundle.catalogue, build_lexical_index(bundle.catalogue))
    hits = ranker.search(parser.parse("like Cowboy Bebop, a movie"), 3, dense=dense, anchors=dense.anchors)
    assert hits and all(bundle.catalogue.by_id(h.anime_id).type is AnimeType.MOVIE for h in hits)


def test_story_words_are_explained_in_the_viewers_words(tiny_catalogue: Catalogue) -> None:
    from dataclasses import replace

    # Given an anime whose synopsis says 'mask' and 'touched' where the viewer says 'masked' and 'touches'
    story = "Gin, a boy wearing a mask, will vanish if he is ever touched by a human."
    catalogue = Catalogue([replace(a, synopsis=story) if a.id == 820 else a for a in tiny_catalogue])
    ranker = HybridRanker(catalogue, build_lexical_index(catalogue))
    text = "a masked boy who vanishes when a human touches him"
    hits = ranker.search(ParsedQuery(text=text, residual=text), 1)
    # Then it is found, and its reason quotes the viewer's words, not the index's stems
    assert hits[0].anime_id == 820
    story_terms = next(p for p in hits[0].explanation if p.kind == "story_terms")
    assert story_terms.terms == ("masked", "boy", "vanishes", "human", "touches")
