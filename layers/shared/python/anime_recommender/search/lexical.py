"""BM25 lexical index over titles, synonyms, tags and story text: built with bm25s, served by numpy.

One document per catalogue row. Fields are weighted by repetition before BM25's saturation:
title words ×3, synonym words ×2, tag words ×2, synopsis words ×1 (the `synopsis` field when the
record has one). Terms are folded, lower-cased words minus a small stopword list (`normalise.tokens`),
each reduced to its Snowball English stem (`normalise.english_stem`), the same on the query side. The rule
is saved with the index ("terms" in lexical.json), so an index saved before it existed (plural stems only)
keeps being queried the way it was built.

bm25s precomputes every (token, document) score into a CSC matrix; a query's scores are the sum of
its tokens' columns. Only the build imports bm25s: the index is saved as its own compact arrays
(float16 scores, uint16 row numbers while the catalogue has at most 65,536 rows, else uint32) and
served by plain numpy, so the API's cold start never imports bm25s (which pulls in scipy wherever
scipy is installed) and the bundle holds half the bytes of bm25s's float32/int32 files.

Files: `data.npy`, `indices.npy`, `indptr.npy` (the CSC matrix), `vocab.json` (tokens in column
order), `ids.npy` (row → anime id) and `lexical.json` (format, field weights, BM25 parameters).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anime_recommender.catalogue import Anime
from anime_recommender.search.normalise import english_stem, token_words, tokens

FORMAT = "anime-lexical-csc"
FORMAT_VERSION = 2
IDS_FILE = "ids.npy"
META_FILE = "lexical.json"
VOCAB_FILE = "vocab.json"
DATA_FILE = "data.npy"
INDICES_FILE = "indices.npy"
INDPTR_FILE = "indptr.npy"
# Repetitions per field (BM25 term frequency saturates, so a title word counts more, not 3x).
FIELD_WEIGHTS: dict[str, int] = {"title": 3, "synonyms": 2, "tags": 2, "synopsis": 1}
# BM25 parameters (Lucene variant): documents are short, so length normalisation is kept mild.
K1 = 1.2
B = 0.5


def _plural_only(token: str) -> str:
    return token


#: How `normalise.tokens` tokens become index terms, by the name an index saves as "terms" in lexical.json.
#: Indexes saved before the key existed used "plural" (the tokens as they are).
TERM_RULES: dict[str, Callable[[str], str]] = {"plural": _plural_only, "snowball-english": english_stem}
#: The rule new indexes are built with: BM25 alone finds 36 of the 41 tune queries' anime in its top 10 on
#: the story-text catalogue, against 32 with plural stems.
TERM_RULE = "snowball-english"
# A document with no usable word (all-symbol titles) gets this token, so every row is indexed.
_EMPTY_DOC_TOKEN = "\x00"
# Per-(token, document) scores are stored in half precision (BM25 term scores are < ~30; 3 significant
# digits keep every query's top-10 of the 73-query set) and summed in float32.
SCORE_DTYPE = np.dtype(np.float16)

# bm25s logs at INFO on empty queries (build time only now, but quiet either way).
logging.getLogger("bm25s").setLevel(logging.WARNING)


class LexicalIndexError(ValueError):
    """A saved lexical index is missing, of another format, or does not match its catalogue."""


def index_terms(text: str, rule: str = TERM_RULE) -> list[str]:
    """The terms of a text as an index built with `rule` holds them (repeats kept, in order)."""
    convert = TERM_RULES[rule]
    return [convert(token) for token in tokens(text)]


def document_fields(
    anime: Anime, *, with_synopsis: bool = True, rule: str = TERM_RULE
) -> dict[str, list[str]]:
    """The terms of each indexed field of an anime (before field weighting); `with_synopsis` False
    leaves the synopsis field empty (the costly one to tokenise)."""
    synonym_tokens: list[str] = []
    seen: set[str] = set()
    names = (anime.title_english, *anime.synonyms) if anime.title_english else anime.synonyms
    for synonym in names:
        for token in index_terms(synonym, rule):
            # Many synonyms repeat the title's words; count each synonym word once.
            if token not in seen:
                seen.add(token)
                synonym_tokens.append(token)
    synopsis = anime.synopsis
    return {
        "title": index_terms(anime.title, rule),
        "synonyms": synonym_tokens,
        "tags": [t for tag in anime.tags for t in index_terms(tag, rule)],
        "synopsis": index_terms(synopsis, rule) if with_synopsis and isinstance(synopsis, str) else [],
    }


SNIPPET_MAX_CHARS = 200
_SENTENCES = re.compile(r"(?<=[.!?…])\s+")


def story_snippet(
    synopsis: str | None, terms: Sequence[str], rule: str = TERM_RULE, max_chars: int = SNIPPET_MAX_CHARS
) -> str | None:
    """The synopsis sentence holding most of the matched index `terms` (of an index built with `rule`),
    cut to `max_chars` around the first of them; None without a synopsis or a match. What a search
    result quotes as its reason."""
    if not synopsis or not terms:
        return None
    wanted = set(terms)
    # A stem and its words share all but the stem's last two letters at least ('comedi' / 'comedy',
    # 'hope' / 'hoping', 'die' / 'dying'): a substring test on these prefixes finds the candidate
    # sentences cheaply, and only a sentence that could beat the best one is tokenised.
    prefixes = {term[: max(1, len(term) - 2)] for term in wanted}
    best, best_count = "", 0
    for sentence in _SENTENCES.split(synopsis):
        lowered = sentence.lower()
        if sum(prefix in lowered for prefix in prefixes) <= best_count:
            continue
        count = len(wanted.intersection(index_terms(sentence, rule)))
        if count > best_count:
            best, best_count = sentence, count
    if not best_count:
        return None
    if len(best) <= max_chars:
        return best
    # Start a few words before the first matching word, so the quote shows why it matched.
    words = best.split()
    first = next((i for i, w in enumerate(words) if wanted.intersection(index_terms(w, rule))), 0)
    start = max(0, first - 4)
    text = " ".join(words[start:])
    cut = text[: max_chars - 1].rsplit(" ", 1)[0] if len(text) > max_chars else text
    return ("…" if start else "") + cut + ("…" if len(text) > max_chars else "")


def document_tokens(anime: Anime, rule: str = TERM_RULE) -> list[str]:
    """The weighted term list BM25 indexes for one anime."""
    out: list[str] = []
    for name, field_tokens in document_fields(anime, rule=rule).items():
        out.extend(field_tokens * FIELD_WEIGHTS[name])
    return out or [_EMPTY_DOC_TOKEN]


def row_dtype(rows: int) -> np.dtype:
    """The narrowest unsigned type holding every row number of a `rows`-document index."""
    return np.dtype(np.uint16) if rows - 1 <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def pointer_dtype(entries: int) -> np.dtype:
    """The narrowest signed type holding column offsets up to `entries` stored scores."""
    return np.dtype(np.int32) if entries <= np.iinfo(np.int32).max else np.dtype(np.int64)


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """One lexical result: the anime, its BM25 score and the query terms its document contains."""

    anime_id: int
    score: float
    terms: tuple[str, ...]


class LexicalIndex:
    """BM25 over catalogue rows (row order = the catalogue's, sorted by id).

    The scores are a CSC matrix: column `t` (token id `vocab[term]`) holds rows
    `indices[indptr[t]:indptr[t + 1]]` (ascending) with scores `data[...]` at the same positions.
    """

    def __init__(
        self,
        data: np.ndarray,
        indices: np.ndarray,
        indptr: np.ndarray,
        vocab: Sequence[str],
        ids: np.ndarray,
        rule: str = TERM_RULE,
    ) -> None:
        if rule not in TERM_RULES:
            raise LexicalIndexError(f"unknown term rule {rule!r} (known: {', '.join(TERM_RULES)})")
        self.rule = rule
        self._convert = TERM_RULES[rule]
        self.ids = np.asarray(ids, dtype=np.int64)
        # dict(zip(...)): 74k tokens at cold start, without a Python loop.
        self._vocab: dict[str, int] = dict(zip(vocab, range(len(vocab)), strict=True))
        self._data = np.asarray(data, dtype=SCORE_DTYPE)
        self._indices = np.asarray(indices, dtype=row_dtype(len(self.ids)))
        self._indptr = np.asarray(indptr, dtype=pointer_dtype(len(self._data)))
        if len(self._vocab) != len(vocab):
            raise LexicalIndexError("the vocabulary repeats a token")
        if len(self._indptr) != len(self._vocab) + 1 or len(self._indices) != len(self._data):
            raise LexicalIndexError(
                f"{len(self._indptr)} column pointers, {len(self._data)} scores and {len(self._indices)} "
                f"rows for {len(self._vocab)} tokens"
            )
        if len(self._indptr) and (self._indptr[0] != 0 or self._indptr[-1] != len(self._data)):
            raise LexicalIndexError("column pointers do not span the stored scores")
        if len(self._indices) and int(self._indices.max()) >= len(self.ids):
            raise LexicalIndexError(f"a stored row is beyond the {len(self.ids)} documents")

    def __len__(self) -> int:
        return len(self.ids)

    # -- build / save / load -------------------------------------------------------------------
    @classmethod
    def build(cls, animes: Sequence[Anime], rule: str = TERM_RULE) -> LexicalIndex:
        """Index a catalogue (rows in its order) with bm25s, its terms made by `rule` (`TERM_RULES`)."""
        # Only the build needs bm25s (and whatever it imports): serving reads the saved arrays.
        import bm25s

        retriever = bm25s.BM25(k1=K1, b=B, method="lucene", backend="numpy", csc_backend="numpy")
        # Token ids in first-seen order: bm25s numbers a token list's vocabulary through a set, whose
        # order depends on the process's string hash seed, so the same catalogue gave other files
        # (delta and rebuild bundles must be byte-reproducible).
        vocab: dict[str, int] = {}
        token_ids = [[vocab.setdefault(t, len(vocab)) for t in document_tokens(a, rule)] for a in animes]
        # bm25s adds a "" token to the dict it is given, so it gets a copy.
        retriever.index((token_ids, dict(vocab)), show_progress=False)
        scores = retriever.scores
        if int(scores["num_docs"]) != len(animes):
            raise LexicalIndexError(f"bm25s indexed {scores['num_docs']} documents for {len(animes)} anime")
        return cls(
            np.asarray(scores["data"]),
            np.asarray(scores["indices"]),
            _columns(np.asarray(scores["indptr"]), len(vocab)),
            list(vocab),  # dicts keep insertion order: token id i is the i-th key
            np.fromiter((a.id for a in animes), dtype=np.int64, count=len(animes)),
            rule,
        )

    def save(self, directory: Path) -> list[Path]:
        """Write the index into `directory`; returns the files written."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            DATA_FILE: self._data,
            INDICES_FILE: self._indices,
            INDPTR_FILE: self._indptr,
            IDS_FILE: self.ids,
        }
        for name, array in arrays.items():
            np.save(directory / name, array, allow_pickle=False)
        (directory / VOCAB_FILE).write_text(
            json.dumps(list(self._vocab), ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
        )
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "field_weights": FIELD_WEIGHTS,
            "k1": K1,
            "b": B,
            "documents": len(self.ids),
            "tokens": len(self._vocab),
            "terms": self.rule,
        }
        (directory / META_FILE).write_text(
            json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        return sorted(directory / name for name in [*arrays, VOCAB_FILE, META_FILE])

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Read an index `save` wrote; `LexicalIndexError` when absent, inconsistent or of another format
        (bm25s-format folders of bundles before format 2 included)."""
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LexicalIndexError(f"{meta_path}: {exc}") from exc
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise LexicalIndexError(f"{meta_path}: not a {FORMAT} v{FORMAT_VERSION} index")
        try:
            arrays = [
                np.load(directory / name, allow_pickle=False)
                for name in (DATA_FILE, INDICES_FILE, INDPTR_FILE)
            ]
            vocab = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
            ids = np.load(directory / IDS_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LexicalIndexError(f"{directory}: {exc}") from exc
        if not isinstance(vocab, list) or not set(map(type, vocab)) <= {str}:
            raise LexicalIndexError(f"{directory / VOCAB_FILE}: not a list of tokens")
        data, indices, indptr = arrays
        if data.dtype != SCORE_DTYPE or indices.dtype != row_dtype(len(ids)) or indptr.ndim != 1:
            raise LexicalIndexError(f"{directory}: arrays of {data.dtype}/{indices.dtype}, not this format's")
        return cls(data, indices, indptr, vocab, ids, meta.get("terms", "plural"))

    # -- query ---------------------------------------------------------------------------------
    def query_terms(self, text: str) -> list[str]:
        """The distinct query terms the index knows, in query order."""
        return list(self.query_words(text))

    def query_words(self, text: str) -> dict[str, str]:
        """The distinct query terms the index knows, in query order, each mapped to the (folded) query
        word it first came from: what an explanation shows ('masked', not the term 'mask')."""
        convert, vocab = self._convert, self._vocab
        found: dict[str, str] = {}
        for token, word in token_words(text):
            term = convert(token)
            if term in vocab:
                found.setdefault(term, word)
        return found

    def terms_of(self, words: Sequence[str]) -> list[str]:
        """This index's terms of query words (those `query_words` mapped terms to)."""
        return index_terms(" ".join(words), self.rule)

    def snippet(self, synopsis: str | None, words: Sequence[str]) -> str | None:
        """`story_snippet` of the query words a hit matched in its synopsis, with this index's terms."""
        return story_snippet(synopsis, self.terms_of(words), self.rule)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every row (float32 [n]) for already-tokenised `terms` (unknown ones ignored).

        The sum of the terms' columns, accumulated in float32 in term order (what bm25s's
        `get_scores_from_ids` computes).
        """
        out = np.zeros(len(self.ids), dtype=np.float32)
        for term in terms:
            token = self._vocab.get(term)
            if token is None:
                continue
            start, end = int(self._indptr[token]), int(self._indptr[token + 1])
            # A column holds each row at most once, so a fancy-indexed add is exact (no np.add.at).
            out[self._indices[start:end]] += self._data[start:end]
        return out

    def matched_terms(self, row: int, terms: Sequence[str]) -> tuple[str, ...]:
        """Which of `terms` row `row`'s document contains."""
        found: list[str] = []
        for term in terms:
            token = self._vocab.get(term)
            if token is None:
                continue
            column = self._indices[self._indptr[token] : self._indptr[token + 1]]
            # Each column's rows are in ascending order (bm25s writes them so).
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


def _columns(indptr: np.ndarray, tokens: int) -> np.ndarray:
    """bm25s's column pointers cut or padded to exactly `tokens` columns.

    bm25s sizes the matrix by the largest token id it saw plus its own "" token; columns past our
    vocabulary are empty, so dropping them (or adding empty ones) changes no score.
    """
    if len(indptr) - 1 >= tokens:
        if indptr[tokens] != indptr[-1]:
            raise LexicalIndexError("bm25s stored scores for a token outside the vocabulary")
        return indptr[: tokens + 1]
    return np.concatenate([indptr, np.full(tokens + 1 - len(indptr), indptr[-1], dtype=indptr.dtype)])


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
