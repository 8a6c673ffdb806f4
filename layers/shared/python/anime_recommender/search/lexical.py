"""BM25 lexical index over titles, synonyms, tags and story text (bm25s, numpy backend only).

One document per catalogue row. Fields are weighted by repetition before BM25's saturation:
title words ×3, synonym words ×2, tag words ×2, synopsis words ×1 (the `synopsis` field when the
record has one). Tokens are folded, lower-cased, plural-stemmed words minus a small stopword list
(`normalise.tokens`, the same tokenizer the query side uses).

bm25s precomputes every (token, document) score into a CSC matrix, so a query is a few numpy
slices; it never needs scipy (blocked in the tests) or the network. Saved as bm25s's own `.npy`
and JSON files plus `ids.npy` (row → anime id) and `lexical.json` (format and field weights).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from anime_recommender.catalogue import Anime
from anime_recommender.search.normalise import tokens

FORMAT = "anime-lexical-bm25s"
FORMAT_VERSION = 1
IDS_FILE = "ids.npy"
META_FILE = "lexical.json"
# Repetitions per field (BM25 term frequency saturates, so a title word counts more, not 3x).
FIELD_WEIGHTS: dict[str, int] = {"title": 3, "synonyms": 2, "tags": 2, "synopsis": 1}
# BM25 parameters (Lucene variant): documents are short, so length normalisation is kept mild.
K1 = 1.2
B = 0.5
# A document with no usable word (all-symbol titles) gets this token, so every row is indexed.
_EMPTY_DOC_TOKEN = "\x00"

# bm25s logs at INFO on empty queries; the API logs structured JSON of its own.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class LexicalIndexError(ValueError):
    """A saved lexical index is missing, of another format, or does not match its catalogue."""


def document_fields(anime: Anime) -> dict[str, list[str]]:
    """The tokens of each indexed field of an anime (before field weighting)."""
    synonym_tokens: list[str] = []
    seen: set[str] = set()
    for synonym in anime.synonyms:
        for token in tokens(synonym):
            # Many synonyms repeat the title's words; count each synonym word once.
            if token not in seen:
                seen.add(token)
                synonym_tokens.append(token)
    synopsis = getattr(anime, "synopsis", None)
    return {
        "title": tokens(anime.title),
        "synonyms": synonym_tokens,
        "tags": [t for tag in anime.tags for t in tokens(tag)],
        "synopsis": tokens(synopsis) if isinstance(synopsis, str) else [],
    }


def document_tokens(anime: Anime) -> list[str]:
    """The weighted token list BM25 indexes for one anime."""
    out: list[str] = []
    for name, field_tokens in document_fields(anime).items():
        out.extend(field_tokens * FIELD_WEIGHTS[name])
    return out or [_EMPTY_DOC_TOKEN]


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """One lexical result: the anime, its BM25 score and the query terms its document contains."""

    anime_id: int
    score: float
    terms: tuple[str, ...]


class LexicalIndex:
    """BM25 over catalogue rows (row order = the catalogue's, sorted by id)."""

    def __init__(self, retriever: bm25s.BM25, ids: np.ndarray) -> None:
        self._bm25 = retriever
        self.ids = np.asarray(ids, dtype=np.int64)
        self._vocab: dict[str, int] = dict(retriever.vocab_dict)
        scores = retriever.scores
        self._indptr = np.asarray(scores["indptr"])
        self._indices = np.asarray(scores["indices"])
        if int(scores["num_docs"]) != len(self.ids):
            raise LexicalIndexError(f"index has {scores['num_docs']} documents for {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.ids)

    # -- build / save / load -------------------------------------------------------------------
    @classmethod
    def build(cls, animes: Sequence[Anime]) -> LexicalIndex:
        """Index a catalogue (rows in its order)."""
        retriever = bm25s.BM25(k1=K1, b=B, method="lucene", backend="numpy", csc_backend="numpy")
        # Token ids in first-seen order: bm25s numbers a token list's vocabulary through a set, whose
        # order depends on the process's string hash seed, so the same catalogue gave other files
        # (delta and rebuild bundles must be byte-reproducible).
        vocab: dict[str, int] = {}
        token_ids = [[vocab.setdefault(t, len(vocab)) for t in document_tokens(a)] for a in animes]
        retriever.index((token_ids, vocab), show_progress=False)
        return cls(retriever, np.fromiter((a.id for a in animes), dtype=np.int64, count=len(animes)))

    def save(self, directory: Path) -> list[Path]:
        """Write the index into `directory`; returns the files written."""
        directory.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(directory), show_progress=False)
        np.save(directory / IDS_FILE, self.ids, allow_pickle=False)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "field_weights": FIELD_WEIGHTS, "k1": K1, "b": B}
        (directory / META_FILE).write_text(
            json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        return sorted(p for p in directory.iterdir() if p.is_file())

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Read an index `save` wrote; `LexicalIndexError` when absent or of another format."""
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LexicalIndexError(f"{meta_path}: {exc}") from exc
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise LexicalIndexError(f"{meta_path}: not a {FORMAT} v{FORMAT_VERSION} index")
        try:
            retriever = bm25s.BM25.load(str(directory), mmap=False, show_progress=False)
            ids = np.load(directory / IDS_FILE, allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise LexicalIndexError(f"{directory}: {exc}") from exc
        return cls(retriever, ids)

    # -- query ---------------------------------------------------------------------------------
    def query_terms(self, text: str) -> list[str]:
        """The distinct query tokens the index knows, in query order."""
        return [t for t in dict.fromkeys(tokens(text)) if t in self._vocab]

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every row (float32 [n]) for already-tokenised, known `terms`."""
        if not terms:
            return np.zeros(len(self.ids), dtype=np.float32)
        token_ids = [self._vocab[t] for t in terms if t in self._vocab]
        if not token_ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(token_ids), dtype=np.float32)

    def matched_terms(self, row: int, terms: Sequence[str]) -> tuple[str, ...]:
        """Which of `terms` row `row`'s document contains."""
        found: list[str] = []
        for term in terms:
            token = self._vocab.get(term)
            if token is None:
                continue
            column = self._indices[self._indptr[token] : self._indptr[token + 1]]
            # bm25s writes each column's rows in ascending order.
            pos = int(np.searchsorted(column, row))
            if pos < len(column) and int(column[pos]) == row:
                found.append(term)
        return tuple(found)

    def search(self, text: str, k: int, allowed_rows: np.ndarray | None = None) -> list[LexicalHit]:
        """Top-k rows by BM25 for free text, best first; rows with score 0 never appear.

        Args:
            text: the query (tokenised with the index's tokenizer).
            k: how many hits at most.
            allowed_rows: a boolean mask over rows (True = may appear) or an array of row numbers.
        """
        terms = self.query_terms(text)
        if k <= 0 or not terms:
            return []
        score = self.scores(terms)
        mask = row_mask(allowed_rows, len(self.ids))
        if mask is not None:
            score = np.where(mask, score, 0.0)
        candidates = np.flatnonzero(score > 0)
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-score[candidates], k - 1)[:k]]
        # Best first; ties by row (= by id), so results are deterministic.
        order = candidates[np.lexsort((candidates, -score[candidates]))]
        return [
            LexicalHit(int(self.ids[row]), float(score[row]), self.matched_terms(int(row), terms))
            for row in order
        ]


def row_mask(allowed_rows: np.ndarray | None, n: int) -> np.ndarray | None:
    """A boolean row mask from a mask or an array of row numbers (None stays None)."""
    if allowed_rows is None:
        return None
    allowed = np.asarray(allowed_rows)
    if allowed.dtype == bool:
        if allowed.shape != (n,):
            raise ValueError(f"allowed_rows mask has shape {allowed.shape}, expected ({n},)")
        return allowed
    mask = np.zeros(n, dtype=bool)
    mask[allowed.astype(np.int64)] = True
    return mask


def build_lexical_index(animes: Sequence[Anime]) -> LexicalIndex:
    """`LexicalIndex.build` of a catalogue (the build stage's entry point)."""
    return LexicalIndex.build(animes)
