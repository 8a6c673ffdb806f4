"""Title autocomplete: a small search structure precomputed once per catalogue.

Matching is case- and accent-insensitive (Unicode NFKD, combining marks dropped, casefolded,
punctuation as spaces) over titles and synonyms. Ranking, best first:

0. exact name, 1. name prefix, 2. every query word is a prefix of a word of one name,
3. fuzzy: each query word close to a name word (bigram candidates, confirmed by difflib ratio).

Within a stage, more popular anime (members) come first, then shorter titles.
"""

from __future__ import annotations

import bisect
import difflib
import heapq
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from anime_recommender.batch_text import map_joined
from anime_recommender.catalogue import Anime
from anime_recommender.id_lists import IdLists

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
# How close a misspelt word must be to a title word (difflib ratio) to count as a fuzzy match.
FUZZY_MIN_RATIO = 0.72
FUZZY_CANDIDATES_PER_WORD = 40


def normalise(text: str) -> str:
    """Fold case and accents, turn punctuation into single spaces: 'Pokémon: XY!' → 'pokemon xy'."""
    if text.isascii():
        # NFKD and combining marks are no-ops on ASCII, and casefold is lower: the common case, fast.
        stripped = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return _NON_ALNUM.sub(" ", stripped).strip()


_NON_ALNUM_OR_NEWLINE = re.compile(r"[^0-9a-z\n]+")


def normalise_many(texts: list[str]) -> list[str]:
    """`normalise` of each text; ASCII texts (nearly all titles) in one regex pass over their join."""
    return map_joined(texts, normalise, _normalise_lines)


def _normalise_lines(joined: str) -> list[str | None]:
    return [part.strip() for part in _NON_ALNUM_OR_NEWLINE.sub(" ", joined.lower()).split("\n")]


def _bigrams(word: str) -> set[str]:
    padded = f" {word} "
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


@dataclass(frozen=True, slots=True)
class TitleMatch:
    """One autocomplete hit: the anime, how it matched, and the name that matched."""

    anime_id: int
    stage: int
    matched: str
    similarity: float


class TitleIndex:
    """Precomputed name/word structures over a catalogue's titles and synonyms."""

    STAGES = ("exact", "prefix", "word_prefix", "fuzzy")

    def __init__(self, animes: Iterable[Anime]) -> None:
        # Built at cold start when a bundle has no saved tables, so kept to plain lists and dicts (the
        # whole build measured 1.7x faster than with a set per name and per word); the id lists are
        # then packed into flat arrays, which the saved tables restore without an object per id.
        self._popularity: dict[int, tuple[int, int]] = {}
        names: dict[str, list[int]] = {}
        original: dict[tuple[str, int], str] = {}
        owners: list[int] = []
        raws: list[str] = []
        for anime in animes:
            self._popularity[anime.id] = (-(anime.members or 0), len(anime.title))
            for raw in (anime.title, *anime.synonyms):
                owners.append(anime.id)
                raws.append(raw)
        for anime_id, raw, norm in zip(owners, raws, normalise_many(raws), strict=True):
            if not norm:
                continue
            ids = names.get(norm)
            if ids is None:
                names[norm] = [anime_id]
            elif anime_id not in ids:
                ids.append(anime_id)
            original.setdefault((norm, anime_id), raw)
        self._names = sorted(names)
        name_ids = [names[n] for n in self._names]
        self._name_lists = IdLists.pack(name_ids)
        # The name as the catalogue spells it, per (name, anime) pair in `_name_lists`' order.
        pairs = zip(self._names, name_ids, strict=True)
        self._name_raw = [original[name, anime_id] for name, ids in pairs for anime_id in ids]
        words: dict[str, list[int]] = {}
        for name, ids in zip(self._names, name_ids, strict=True):
            for word in name.split(" "):
                listed = words.get(word)
                if listed is None:
                    words[word] = list(ids)
                else:
                    listed.extend(ids)
        self._words = sorted(words)
        self._word_lists = IdLists.pack(words[w] for w in self._words)
        self._bigram_words: dict[str, list[int]] | None = None

    def state(self) -> dict[str, Any]:
        """What was built from the names: lists of str and packed id lists (saved by `catalogue_tables`)."""
        return {
            # Three int columns (id, -members, title length) in one pack: no tuple object per anime.
            "popularity": IdLists.pack(
                [
                    list(self._popularity),
                    [members for members, _ in self._popularity.values()],
                    [length for _, length in self._popularity.values()],
                ]
            ).state(),
            "names": self._names,
            "name_ids": self._name_lists.state(),
            "name_raw": self._name_raw,
            "words": self._words,
            "word_ids": self._word_lists.state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TitleIndex:
        """The index `state()` was taken from, without normalising and sorting every name again.

        ValueError when its parts do not match (or were saved in the other byte order).
        """
        index = cls.__new__(cls)
        ids, members, lengths = IdLists.from_state(state["popularity"])
        index._popularity = dict(zip(ids, zip(members, lengths, strict=True), strict=True))
        index._names = state["names"]
        index._name_lists = IdLists.from_state(state["name_ids"])
        index._name_raw = state["name_raw"]
        index._words = state["words"]
        index._word_lists = IdLists.from_state(state["word_ids"])
        if len(index._name_lists) != len(index._names) or len(index._word_lists) != len(index._words):
            raise ValueError("title index id lists do not match its names and words")
        index._bigram_words = None
        return index

    def __len__(self) -> int:
        return len(self._names)

    def search(self, query: str, limit: int, hidden: AbstractSet[int] = frozenset()) -> list[TitleMatch]:
        """Up to `limit` anime matching `query`, never one in `hidden`, best first (see the module
        docstring)."""
        norm = normalise(query)
        if not norm or limit <= 0:
            return []
        best: dict[int, TitleMatch] = {}

        def offer(anime_id: int, stage: int, matched: str, similarity: float) -> None:
            if anime_id in hidden:
                return
            current = best.get(anime_id)
            if current is None or (stage, -similarity) < (current.stage, -current.similarity):
                best[anime_id] = TitleMatch(anime_id, stage, matched, similarity)

        lo = bisect.bisect_left(self._names, norm)
        hi = bisect.bisect_left(self._names, norm + "\uffff")
        for row in range(lo, hi):
            name = self._names[row]
            for anime_id in self._name_lists[row]:
                offer(anime_id, 0 if name == norm else 1, name, 1.0)

        query_words = norm.split(" ")
        if len(best) < limit or len(query_words) > 1:
            for anime_id in self._word_prefix_ids(query_words):
                offer(anime_id, 2, norm, 1.0)
        if len(best) < limit:
            for anime_id, similarity in self._fuzzy_ids(query_words).items():
                offer(anime_id, 3, norm, similarity)

        ranked = heapq.nsmallest(
            limit,
            best.values(),
            key=lambda m: (m.stage, -m.similarity, self._popularity[m.anime_id], m.anime_id),
        )
        return [TitleMatch(m.anime_id, m.stage, self._display(m), m.similarity) for m in ranked]

    def _display(self, match: TitleMatch) -> str:
        """The matched name as the catalogue spells it (the normalised query for word matches)."""
        row = bisect.bisect_left(self._names, match.matched)
        if row < len(self._names) and self._names[row] == match.matched:
            ids = self._name_lists[row]
            if match.anime_id in ids:
                return self._name_raw[self._name_lists.start(row) + ids.index(match.anime_id)]
        return match.matched

    def _word_prefix_ids(self, query_words: list[str]) -> set[int]:
        result: set[int] | None = None
        # Most selective (longest) words first, so the intersection shrinks fast.
        for word in sorted(query_words, key=len, reverse=True):
            lo = bisect.bisect_left(self._words, word)
            hi = bisect.bisect_left(self._words, word + "\uffff")
            ids: set[int] = set()
            for row in range(lo, hi):
                ids.update(self._word_lists[row])
            result = ids if result is None else result & ids
            if not result:
                return set()
        return result or set()

    def _fuzzy_ids(self, query_words: list[str]) -> dict[int, float]:
        """anime id → mean best word similarity, for anime where every query word has a close word."""
        scores: dict[int, float] | None = None
        for word in query_words:
            if len(word) < 3:
                # Too short to spell wrong meaningfully; require it as a word prefix instead.
                ids = self._word_prefix_ids([word])
                word_scores = dict.fromkeys(ids, 1.0)
            else:
                word_scores = self._close_word_ids(word)
            if scores is None:
                scores = word_scores
            else:
                scores = {a: scores[a] + s for a, s in word_scores.items() if a in scores}
            if not scores:
                return {}
        return {a: s / len(query_words) for a, s in (scores or {}).items()}

    def _bigram_table(self) -> dict[str, list[int]]:
        """bigram → word rows; built on the first fuzzy lookup, not at cold start (most never need it)."""
        if self._bigram_words is None:
            table: dict[str, list[int]] = defaultdict(list)
            for row, word in enumerate(self._words):
                for gram in _bigrams(word):
                    table[gram].append(row)
            # One assignment: a concurrent first lookup at worst builds the same table twice.
            self._bigram_words = dict(table)
        return self._bigram_words

    def _close_word_ids(self, word: str) -> dict[int, float]:
        counts: Counter[int] = Counter()
        bigram_words = self._bigram_table()
        for gram in _bigrams(word):
            counts.update(bigram_words.get(gram, ()))
        result: dict[int, float] = {}
        matcher = difflib.SequenceMatcher(a=word, autojunk=False)
        for row, _ in counts.most_common(FUZZY_CANDIDATES_PER_WORD):
            candidate = self._words[row]
            matcher.set_seq2(candidate)
            # Compare with the candidate's head too, so a misspelt prefix ("narut", "kimi no n") matches.
            ratio = max(matcher.ratio(), difflib.SequenceMatcher(a=word, b=candidate[: len(word)]).ratio())
            if ratio >= FUZZY_MIN_RATIO:
                for anime_id in self._word_lists[row]:
                    if ratio > result.get(anime_id, 0.0):
                        result[anime_id] = ratio
        return result
