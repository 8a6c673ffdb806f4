"""Plain baselines over story text: the bar the learned parts (V4, dense search, understanding) must clear.

* **BM25 search** (`Bm25Search`): one bag of words per anime (title, English title, synonyms, tags,
  synopsis), plain Okapi BM25 (k1 1.2, b 0.75), plus a popularity prior: score = BM25 / the query's best
  BM25 + w · popularity (`ranking.popularity`, log10 members / 7). w is chosen on the query set's TUNE
  half only (`tune_prior`), so the HOLDOUT figures stay untouched by it.
* **TF-IDF recommendations** (`TfidfRecommender`): cosine of one TF-IDF vector per anime, its tags
  (binary, smoothed IDF, block weighted 0.5) beside its synopsis words (1 + log tf, smoothed IDF), plus
  w · popularity. Like the served ranking (`final_ranking.rank_pools`) its top-k leaves out the query's
  franchise siblings and lists one entry per franchise first, so its dev recall is comparable.

Without synopses (the default catalogue) both still work: BM25 on titles and tags, TF-IDF on tags. Sparse
matrices (scipy, which the build's sentence-transformers brings), so 27k anime take seconds.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from anime_pipeline.evaluation.devset import DevSet, dev_metrics
from anime_recommender.catalogue import Anime, Catalogue
from anime_recommender.ranking import popularity, spread_franchises

if TYPE_CHECKING:
    from scipy import sparse

K = 10
BM25_K1 = 1.2
BM25_B = 0.75
TAG_WEIGHT = 0.5
#: Prior weights tried (BM25: on the tune queries; TF-IDF: on the dev set).
BM25_PRIOR_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
TFIDF_PRIOR_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# Words too common to tell anime apart; BM25's IDF would mostly mute them anyway.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his in into is it its of on or she that the "
    "their them they this to was who whose with".split()
)
_WORD = re.compile(r"[0-9a-z]+")


def words(text: str) -> list[str]:
    """Lower-case ASCII-folded word tokens of `text`, stopwords left out."""
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode("ascii")
    return [w for w in _WORD.findall(folded) if w not in STOPWORDS]


def search_text(anime: Anime) -> str:
    """The one bag of words BM25 indexes: title, English title, synonyms, tags and synopsis."""
    parts = [anime.title, anime.title_english or "", *anime.synonyms, *anime.tags, anime.synopsis or ""]
    return " ".join(p for p in parts if p)


def _term_matrix(docs: Iterable[list[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    """Term counts [docs, vocab] (CSR); `vocab` grows with every new term."""
    from scipy import sparse

    indptr: list[int] = [0]
    indices: list[int] = []
    counts: list[int] = []
    for doc in docs:
        bag: dict[int, int] = {}
        for w in doc:
            col = vocab.setdefault(w, len(vocab))
            bag[col] = bag.get(col, 0) + 1
        indices.extend(bag)
        counts.extend(bag.values())
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(counts, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(indptr) - 1, len(vocab)),
    )


# ---------------------------------------------------------------------------------------------
# BM25 search
# ---------------------------------------------------------------------------------------------


@dataclass
class Bm25Search:
    """Plain BM25 over one bag of words per anime, plus a popularity prior."""

    ids: np.ndarray
    vocab: dict[str, int]
    weights: sparse.csc_matrix  # [anime, terms]: idf · tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))
    prior: np.ndarray  # popularity in [0, 1] per anime
    prior_weight: float = 0.2

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, k1: float = BM25_K1, b: float = BM25_B) -> Bm25Search:
        """Index every anime's `search_text`."""
        vocab: dict[str, int] = {}
        tf = _term_matrix((words(search_text(a)) for a in catalogue), vocab)
        n = tf.shape[0]
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        avg = float(lengths.mean()) if n and lengths.mean() > 0 else 1.0
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float64)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        norm = np.repeat(k1 * (1.0 - b + b * lengths / avg), np.diff(tf.indptr))
        weighted = tf.copy()
        weighted.data = idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm)
        return cls(
            ids=np.asarray(catalogue.ids, dtype=np.int64),
            vocab=vocab,
            weights=weighted.tocsc(),
            prior=popularity(catalogue.numbers("members")),
        )

    def bm25(self, query: str) -> np.ndarray:
        """Plain BM25 of every anime for the query (each distinct query term counted once)."""
        cols = sorted({self.vocab[w] for w in words(query) if w in self.vocab})
        if not cols:
            return np.zeros(len(self.ids))
        return np.asarray(self.weights[:, cols].sum(axis=1)).ravel()

    def scores(self, query: str, prior_weight: float | None = None) -> np.ndarray:
        """BM25 scaled to the query's best match, plus the weighted popularity prior."""
        raw = self.bm25(query)
        best = float(raw.max()) if len(raw) else 0.0
        lexical = raw / best if best > 0 else raw
        return lexical + (self.prior_weight if prior_weight is None else prior_weight) * self.prior

    def search(self, query: str, k: int = K, prior_weight: float | None = None) -> list[int]:
        """The top-k anime ids for a query (ties: lower id first)."""
        s = self.scores(query, prior_weight)
        k = min(k, len(s))
        top = np.argpartition(-s, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        top = top[np.lexsort((self.ids[top], -s[top]))]
        return [int(self.ids[i]) for i in top]


def tune_prior(
    ranked_for: Callable[[float], list[list[int]]],
    score: Callable[[list[list[int]]], dict[str, float | int]],
    grid: Sequence[float] = BM25_PRIOR_GRID,
) -> tuple[float, list[dict[str, float]]]:
    """The grid weight with the best (hit@10, MRR) on what `score` judges, and every weight's result."""
    tried: list[dict[str, float]] = []
    best, best_key = grid[0], (-1.0, -1.0)
    for w in grid:
        result = score(ranked_for(w))
        key = (float(result["hit@10"]), float(result["mrr"]))
        tried.append({"prior_weight": w, "hit@10": key[0], "mrr": key[1]})
        if key > best_key:
            best, best_key = w, key
    return best, tried


# ---------------------------------------------------------------------------------------------
# TF-IDF recommendations
# ---------------------------------------------------------------------------------------------


def _l2_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.repeat(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0), np.diff(matrix.indptr))
    out = matrix.copy()
    out.data = out.data * scale
    return out


def _idf(tf: sparse.csr_matrix) -> np.ndarray:
    n = tf.shape[0]
    df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float64)
    return np.log((1.0 + n) / (1.0 + df)) + 1.0


@dataclass
class TfidfRecommender:
    """Cosine of [0.5 · tag TF-IDF, synopsis TF-IDF] per anime, plus a popularity prior."""

    vectors: sparse.csr_matrix  # [anime, tags + words], rows of unit length (or empty)
    prior: np.ndarray
    prior_weight: float = 0.05

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, tag_weight: float = TAG_WEIGHT) -> TfidfRecommender:
        """Fit tag and synopsis-word TF-IDF to the catalogue."""
        from scipy import sparse

        tags = _term_matrix(([t.lower() for t in set(a.tags)] for a in catalogue), {})
        tags.data[:] = 1.0
        tag_part = _l2_rows(tags.multiply(_idf(tags)).tocsr())
        text = _term_matrix((words(a.synopsis or "") for a in catalogue), {})
        text.data = 1.0 + np.log(text.data)
        text_part = _l2_rows(text.multiply(_idf(text)).tocsr()) if text.shape[1] else text
        both = sparse.hstack([tag_part * tag_weight, text_part], format="csr")
        return cls(vectors=_l2_rows(both), prior=popularity(catalogue.numbers("members")))

    def similarities(self, rows: np.ndarray) -> np.ndarray:
        """Cosine of `rows` against every anime: dense float64 [len(rows), n]."""
        return np.asarray((self.vectors[rows] @ self.vectors.T).toarray(), dtype=np.float64)

    def top_k(
        self,
        rows: np.ndarray,
        siblings_of: Callable[[int], frozenset[int]],
        prior_weights: Sequence[float],
        k: int = K,
        chunk: int = 256,
    ) -> dict[float, np.ndarray]:
        """Per prior weight, the top-k rows [len(rows), k] of each query row (-1 = none): the query and
        its franchise siblings left out, one entry per franchise first (as the served ranking)."""
        out = {w: np.full((len(rows), k), -1, dtype=np.int64) for w in prior_weights}
        depth = min(8 * k, self.vectors.shape[0])
        for start in range(0, len(rows), chunk):
            block = rows[start : start + chunk]
            sims = self.similarities(block)
            for w in prior_weights:
                scores = sims + w * self.prior[None, :]
                scores[np.arange(len(block)), block] = -np.inf
                part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
                for q, r in enumerate(block.tolist()):
                    cand = part[q][np.lexsort((part[q], -scores[q, part[q]]))]
                    banned = siblings_of(r)
                    ranked = [int(c) for c in cand if int(c) != r and int(c) not in banned]
                    top = spread_franchises(ranked, siblings_of, k)
                    out[w][start + q, : len(top)] = top
        return out


def describe() -> dict[str, Any]:
    """How the baselines are defined, for the report."""
    return {
        "bm25": f"Okapi BM25 (k1 {BM25_K1}, b {BM25_B}) over title, English title, synonyms, tags and "
        "synopsis as one bag of words; score / the query's best + w · popularity, w chosen on the tune half",
        "tfidf": f"cosine of [{TAG_WEIGHT} · tag TF-IDF, synopsis-word TF-IDF] + w · popularity, query's "
        "franchise siblings left out, one entry per franchise first; w chosen on the dev set",
    }


def tfidf_dev_baseline(
    catalogue: Catalogue,
    siblings_of: Callable[[int], frozenset[int]],
    dev: DevSet,
    grid: Sequence[float] = TFIDF_PRIOR_GRID,
) -> dict[str, Any]:
    """The TF-IDF + popularity baseline's dev metrics (`dev_metrics`, as the served ranking's), with the
    prior weight chosen on the dev set (best cross-franchise recall@10) from a small grid."""
    started = time.perf_counter()
    model = TfidfRecommender.from_catalogue(catalogue)
    rows = dev.sources
    tops = model.top_k(rows, siblings_of, grid)
    tried = {w: dev_metrics(top, rows, dev) for w, top in tops.items()}

    def recall(w: float) -> float:
        value = float(tried[w]["recall_at_10"])
        return -1.0 if math.isnan(value) else value

    best = max(grid, key=lambda w: (recall(w), -w))
    return {
        "dev": tried[best],
        "prior_weight": best,
        "prior_weights_tried_on_dev": [
            {"prior_weight": w, "recall_at_10": tried[w]["recall_at_10"]} for w in grid
        ],
        "synopses": sum(1 for a in catalogue if a.synopsis),
        "seconds": round(time.perf_counter() - started, 2),
    }
