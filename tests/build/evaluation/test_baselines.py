"""V1 baselines: pure-Python references, vectorised scores and top-k."""

from __future__ import annotations

import numpy as np
import pytest

from anime_pipeline.evaluation.baselines import V1_METHODS, V1Model, binary_cosine, jaccard, tfidf_cosine
from anime_recommender.catalogue import Catalogue


def test_reference_formulas() -> None:
    a, b = frozenset({"x", "y"}), frozenset({"y", "z", "w"})
    idf = {"x": 1.0, "y": 2.0, "z": 1.0, "w": 3.0}
    assert jaccard(a, b, idf) == pytest.approx(1 / 4)
    assert binary_cosine(a, b, idf) == pytest.approx(1 / np.sqrt(6))
    assert tfidf_cosine(a, b, idf) == pytest.approx(4 / (np.sqrt(5) * np.sqrt(14)))
    assert (
        jaccard(a, frozenset(), idf)
        == binary_cosine(a, frozenset(), idf)
        == tfidf_cosine(a, frozenset(), idf)
        == 0
    )


@pytest.mark.parametrize("method", sorted(V1_METHODS))
def test_vectorised_matches_reference(tiny_catalogue: Catalogue, method: str) -> None:
    model = V1Model.from_catalogue(tiny_catalogue, method)
    fn = V1_METHODS[method]
    tags = [frozenset(a.tags) for a in tiny_catalogue]
    ref = np.array([[fn(x, y, model.idf) for y in tags] for x in tags])
    n = len(tiny_catalogue)
    np.testing.assert_allclose(model.block_scores(np.arange(n)), ref, atol=1e-5)
    ra, rb = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    np.testing.assert_allclose(model.pair_scores(ra.ravel(), rb.ravel()), ref.ravel(), atol=1e-5)
    lists = model.top_k(k=5, block_size=4)
    np.fill_diagonal(ref, -np.inf)
    for row, anime in enumerate(tiny_catalogue):
        scores = [s for _, s in lists.for_id(anime.id)]
        np.testing.assert_allclose(scores, np.sort(ref[row])[::-1][:5], atol=1e-3)  # float16 storage
        assert anime.id not in [i for i, _ in lists.for_id(anime.id)]


def test_tfidf_prefers_rare_shared_tags(tiny_catalogue: Catalogue) -> None:
    # K-On! shares "music" (rare) with the idol clip and "comedy" (common) with the mystery short.
    model = V1Model.from_catalogue(tiny_catalogue, "tfidf")
    k_on, idol, short = (tiny_catalogue.row(i) for i in (5680, 40001, 40000))
    assert (
        model.pair_scores(np.array([k_on]), np.array([idol]))[0]
        > model.pair_scores(np.array([k_on]), np.array([short]))[0]
    )
    binary = V1Model.from_catalogue(tiny_catalogue, "cosine")
    assert binary.pair_scores(np.array([k_on]), np.array([idol]))[0] == pytest.approx(
        binary.pair_scores(np.array([k_on]), np.array([short]))[0]
    )


def test_unknown_method_is_refused(tiny_catalogue: Catalogue) -> None:
    with pytest.raises(ValueError, match="unknown V1 method"):
        V1Model.from_catalogue(tiny_catalogue, "bm25")
