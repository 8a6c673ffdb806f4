"""Exact top-k: ties by the lower column (or rank) at every place, and blockwise equals all at once."""

from __future__ import annotations

import numpy as np
import pytest

from anime_recommender.topk import top_k_blockwise, top_k_inner_products, top_k_per_row


def _reference(scores: np.ndarray, k: int) -> np.ndarray:
    # Full sort by (score desc, column asc): the definition top_k_per_row must match.
    return np.stack([np.lexsort((np.arange(row.size), -row))[:k] for row in scores])


def test_top_k_per_row_tie_rank() -> None:
    sim = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], dtype=np.float32)
    cols, vals = top_k_per_row(sim, 3)
    assert cols.tolist() == [[1, 0, 2]]
    cols, _ = top_k_per_row(sim, 3, rank=np.array([4, 0, 3, 1, 2]))
    assert cols.tolist() == [[1, 3, 2]]
    assert vals.dtype == np.float32


def test_top_k_per_row_matches_a_full_sort_with_many_ties() -> None:
    # Given scores drawn from four values, so nearly every k-th place is a tie
    scores = np.random.default_rng(0).integers(0, 4, size=(50, 40)).astype(np.float32)

    # When the top 7 are selected, then they are the full sort's first 7, values alongside
    cols, vals = top_k_per_row(scores, 7)
    assert np.array_equal(cols, _reference(scores, 7))
    assert np.array_equal(vals, np.take_along_axis(scores, cols, axis=1))


def test_top_k_per_row_caps_k_and_handles_empty_input() -> None:
    scores = np.array([[1.0, 3.0], [2.0, 2.0]])
    cols, vals = top_k_per_row(scores, 5)
    assert cols.tolist() == [[1, 0], [0, 1]] and vals.dtype == np.float64
    assert top_k_per_row(np.zeros((0, 4)), 3)[0].shape == (0, 3)
    assert top_k_per_row(scores, 0)[0].shape == (2, 0)


@pytest.mark.parametrize("block_size", [1, 7, 1024])
def test_blockwise_equals_one_block_and_excludes_each_rows_own_column(block_size: int) -> None:
    # Given a square score matrix with ties, queried for a subset of its rows
    scores = np.random.default_rng(1).integers(0, 5, size=(30, 30)).astype(np.float32)
    rows = np.array([0, 3, 4, 17, 29])
    done: list[int] = []

    # When the top 6 of each row, itself excluded, are taken blockwise
    cols, vals = top_k_blockwise(
        lambda block: scores[block].copy(), rows, 6, exclude=rows, block_size=block_size, progress=done.append
    )

    # Then it equals the reference on the masked matrix, and progress counted every row
    masked = scores[rows].copy()
    masked[np.arange(rows.size), rows] = -np.inf
    assert np.array_equal(cols, _reference(masked, 6))
    assert np.array_equal(vals, np.take_along_axis(masked, cols, axis=1))
    assert sum(done) == rows.size
    assert not np.any(cols == rows[:, None])


def test_blockwise_of_no_rows_is_empty() -> None:
    cols, vals = top_k_blockwise(lambda block: np.zeros((len(block), 5)), np.zeros(0, dtype=np.int64), 3)
    assert cols.shape == vals.shape == (0, 3) and cols.dtype == np.int64


def test_inner_products_match_brute_force() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(200, 8)).astype(np.float32)
    queries = matrix[[5, 50, 150]]
    rows, sims = top_k_inner_products(queries, matrix, 10, exclude=np.array([5, 50, 150]), block_size=2)
    full = queries @ matrix.T
    full[np.arange(3), [5, 50, 150]] = -np.inf
    assert np.array_equal(rows, _reference(full, 10))
    assert np.allclose(sims, np.take_along_axis(full, rows, axis=1))
