"""Exact top-k selection: per row of a score matrix, and blockwise over a whole catalogue.

Every caller (the V2 teacher, the V1 baselines, the build's brute-force checks and evaluation)
selects through these two functions, so they all break ties the same way: by the lower column
(or the lower `rank` of the column), also at the k-th place. The result is a pure function of
the scores, never of how a partial sort happened to order equal values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Scores of a block of query rows against every column: [len(rows), n].
BlockScores = Callable[[np.ndarray], np.ndarray]


def top_k_per_row(
    scores: np.ndarray, k: int, rank: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k largest entries, best first.

    Ties are broken by the lower `rank` of the column (default: the column index itself; pass the
    catalogue row of each column when columns are permuted), also at the k-th place. `k` is capped
    at the number of columns. Exclude entries by setting them to -inf first.
    """
    b, n = scores.shape
    k = min(k, n)
    if k <= 0 or b == 0:
        return np.empty((b, max(k, 0)), dtype=np.int64), np.empty((b, max(k, 0)), dtype=scores.dtype)
    kth = np.partition(scores, n - k, axis=1)[:, n - k]
    # Every entry >= the k-th largest value: exactly k per row unless values tie at the k-th place.
    # flatnonzero + divmod is ~10x faster than 2-D nonzero
    flat = np.flatnonzero(scores >= kth[:, None])
    r, c = np.divmod(flat, n)
    vals = scores.reshape(-1)[flat]
    order = np.lexsort((c if rank is None else rank[c], -vals, r))
    counts = np.bincount(r, minlength=b)
    starts = np.cumsum(counts) - counts
    pick = order[starts[:, None] + np.arange(k)[None, :]]
    return c[pick], vals[pick]


def top_k_blockwise(
    block_scores: BlockScores,
    rows: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    rank: np.ndarray | None = None,
    block_size: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_per_row` of `block_scores(rows)`, computed `block_size` rows at a time.

    Memory is O(block_size · n), never O(len(rows) · n).

    Args:
        block_scores: scores of a block of `rows` against every column, [len(block), n].
        rows: the query rows, passed to `block_scores` in order, one block at a time.
        k: entries per row (capped at n).
        exclude: per query row, one column to leave out (its own column, for "self excluded").
        rank: tie-break rank of each column (see `top_k_per_row`).
        block_size: rows per block.
        progress: called with the number of rows finished after each block.

    Returns:
        Column indices int64 [len(rows), k] and their scores (the dtype `block_scores` returns;
        float32 when `rows` is empty), best first.
    """
    rows = np.asarray(rows)
    cols_out: np.ndarray | None = None
    vals_out: np.ndarray | None = None
    for start in range(0, len(rows), block_size):
        block = rows[start : start + block_size]
        scores = block_scores(block)
        if exclude is not None:
            scores[np.arange(len(block)), exclude[start : start + block_size]] = -np.inf
        cols, vals = top_k_per_row(scores, k, rank=rank)
        if cols_out is None or vals_out is None:
            cols_out = np.empty((len(rows), cols.shape[1]), dtype=np.int64)
            vals_out = np.empty((len(rows), cols.shape[1]), dtype=vals.dtype)
        cols_out[start : start + len(block)] = cols
        vals_out[start : start + len(block)] = vals
        if progress is not None:
            progress(len(block))
    if cols_out is None or vals_out is None:
        return np.empty((0, max(k, 0)), dtype=np.int64), np.empty((0, max(k, 0)), dtype=np.float32)
    return cols_out, vals_out


def top_k_inner_products(
    queries: np.ndarray,
    matrix: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    block_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows of `matrix` by inner product with each query, blockwise.

    `exclude` gives, per query, one row of `matrix` to leave out (the query's own row when the
    queries are rows of `matrix`). Ties go to the lower row. Returns rows int64 [len(queries), k]
    and the inner products, best first.
    """
    return top_k_blockwise(
        lambda block: queries[block] @ matrix.T,
        np.arange(len(queries)),
        k,
        exclude=exclude,
        block_size=block_size,
    )
