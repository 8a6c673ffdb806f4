"""Query understanding: what a viewer's free text asks for, as filters, boosts and anchors.

`QueryParser` is built once per catalogue (its tag vocabulary and a title resolver) and turns
"90s space bounty hunters with a jazz soundtrack, not a movie" into a `ParsedQuery`:

* genres/themes named in the viewer's words ("jazz" → music, "robots" → mecha; `lexicon`) and
  genre labels themselves → soft tag boosts;
* type ("movie", "OVA", "series"), era ("90s", "from the 2010s", "before 2000", "2005", "recent"),
  length ("short", "under 13 episodes", "long-running") → hard filters; vague era words ("old",
  "classic", "modern") → a soft era preference;
* a title compared with ("like Cowboy Bebop but funnier") → an anchor id; a multi-word title
  named without a cue ("the Death Note movie") → a mentioned title;
* negations ("no romance", "without mecha", "not a movie") → hard exclusions;
* the words left over → `residual`, the text for the lexical and dense searches.

Every part found is listed in `understood` (kind, the words it came from, the value), which the
API returns as `query.understood`. The parser never raises on any string: over-long input is
truncated, and a query with nothing left (only stop words, only a negation) still parses; the
ranking then answers "popular within the filters".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import numpy as np

from anime_recommender.batch_text import map_joined
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.search.lexicon import (
    CHARACTER_LABELS,
    GENRE_PHRASES,
    NEGATION_CUES,
    PAST_SETTING_TAGS,
    POSSESSIVES,
    ROLE_WORDS,
    TITLE_CUES,
    TYPE_PHRASES,
)
from anime_recommender.search.normalise import STOPWORDS, fold, stem, words

# Queries are parsed up to this many characters (a 10 kB paste is cut at a word boundary).
MAX_QUERY_CHARS = 500
# Longest phrase looked up in the lexicon / the longest title span tried, in words.
MAX_PHRASE_WORDS = 4
MAX_TITLE_WORDS = 8
# "short" and "under N episodes" bounds; "long-running" lower bound.
SHORT_MAX_EPISODES = 13
LONG_MIN_EPISODES = 50
# "recent" = released in the last few years of the catalogue.
RECENT_YEARS = 4
OLD_MAX_YEAR = 1999
# Years and decades before this describe a setting ("gangsters in 1930s America"), not a release era.
MIN_RELEASE_YEAR = 1960
MODERN_MIN_YEAR = 2010

_V = TypeVar("_V")

Kind = Literal[
    "genre", "exclude_genre", "type", "exclude_type", "era", "era_preference", "length", "title", "like_title"
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Understood:
    """One part of the query that was understood: what kind, the words it came from, the value.

    `value` is human-readable ("music", "MOVIE", "1990–1999", "≤ 12 episodes", "Cowboy Bebop");
    `anime_id` is set for titles; `hard` says whether it filters (True) or only boosts.
    """

    kind: Kind
    text: str
    value: str
    hard: bool
    anime_id: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A parsed free-text query (see the module docstring). Empty tuples / None mean "no constraint"."""

    text: str
    residual: str
    boost_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    types: tuple[AnimeType, ...] = ()
    exclude_types: tuple[AnimeType, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    prefer_year_min: int | None = None
    prefer_year_max: int | None = None
    episodes_min: int | None = None
    episodes_max: int | None = None
    anchor_ids: tuple[int, ...] = ()
    title_ids: tuple[int, ...] = ()
    understood: tuple[Understood, ...] = ()
    truncated: bool = False

    @property
    def has_filters(self) -> bool:
        """Whether any hard filter applies."""
        return bool(
            self.exclude_tags
            or self.types
            or self.exclude_types
            or self.year_min is not None
            or self.year_max is not None
            or self.episodes_min is not None
            or self.episodes_max is not None
        )

    @property
    def has_signal(self) -> bool:
        """Whether anything besides filters can rank results (text, boosts, titles)."""
        return bool(self.residual.strip() or self.boost_tags or self.anchor_ids or self.title_ids)

    def accepts(self, anime: Anime) -> bool:
        """Whether an anime passes the hard filters; unknown year/episodes fail a bound on them."""
        if self.types and anime.type not in self.types:
            return False
        if anime.type in self.exclude_types:
            return False
        if self.exclude_tags and not set(self.exclude_tags).isdisjoint(anime.tags):
            return False
        if self.year_min is not None or self.year_max is not None:
            if anime.year is None:
                return False
            if self.year_min is not None and anime.year < self.year_min:
                return False
            if self.year_max is not None and anime.year > self.year_max:
                return False
        if self.episodes_min is not None or self.episodes_max is not None:
            # Airing long-runners often have no episode count yet: unknown passes a lower bound only.
            if anime.episodes is None:
                return self.episodes_max is None
            if self.episodes_min is not None and anime.episodes < self.episodes_min:
                return False
            if self.episodes_max is not None and anime.episodes > self.episodes_max:
                return False
        return True


class TitleResolver(Protocol):
    """Span of query text → the anime it names, or None.

    `cued` is True right after a comparison cue ("like …"), where a looser match is acceptable;
    without a cue only an exact title is safe (common words are titles too: "Monster", "Another").
    """

    def __call__(self, span: str, cued: bool) -> int | None: ...


class TitleMatchLike(Protocol):
    """What `search.titles.TitleMatch` offers (kept structural: the parser needs only this much)."""

    @property
    def anime_id(self) -> int: ...

    @property
    def stage(self) -> int: ...

    @property
    def similarity(self) -> float: ...


class TitleMatcher(Protocol):
    """What `search.titles.TitleIndex` offers: ranked title matches (stage 0 exact … 3 fuzzy)."""

    def search(self, query: str, limit: int) -> Sequence[TitleMatchLike]: ...


_ASCII_WORD = re.compile(r"\w+")


def title_key(text: str) -> str:
    """Exact-match key of a title or span: folded words joined by single spaces."""
    if text.isascii() and "_" not in text:
        # Nearly every title (keyed for the whole catalogue at cold start): `fold` is `lower` there and
        # `words` one regex scan, so the per-word offsets are skipped (parser build 51 → 43 ms at 17.5k).
        return " ".join(_ASCII_WORD.findall(text.lower()))
    return " ".join(w for w, _, _ in words(text))


# Every ASCII byte but [a-z0-9_\n] → space: `\w` of lower-cased ASCII text, as a bytes table.
_NON_WORD_TO_SPACE = bytes(
    c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789_\n" else 32 for c in range(256)
)


def title_keys(texts: Sequence[str]) -> list[str]:
    """`title_key` of each text; ASCII texts (nearly every title) in one pass over their join."""
    return map_joined(texts, title_key, _title_keys_of_lines, batchable=_batchable_title)


def _batchable_title(text: str) -> bool:
    return text.isascii() and "_" not in text  # `words` drops "_", the batch form would not


def _title_keys_of_lines(joined: str) -> list[str | None]:
    lines = joined.lower().encode("ascii").translate(_NON_WORD_TO_SPACE).decode("ascii").split("\n")
    return [" ".join(line.split()) for line in lines]


# A fuzzy title match after a cue must be at least this close (difflib ratio, `TitleIndex`).
CUED_FUZZY_MIN_SIMILARITY = 0.9


class CatalogueTitles:
    """`TitleResolver` over a catalogue: exact titles/synonyms (the most popular anime per name).

    With a `matcher` (the API passes its `TitleIndex`), a span after a cue of two or more words may
    also match as a prefix of a name or fuzzily (similarity ≥ `CUED_FUZZY_MIN_SIMILARITY`); "every
    word is a prefix of some title word" is too loose for ordinary English and is not accepted.
    """

    def __init__(
        self,
        animes: Iterable[Anime],
        matcher: TitleMatcher | None = None,
        *,
        exact: Mapping[str, int] | None = None,
    ) -> None:
        self._matcher = matcher
        if exact is not None:
            # `exact_titles` of the same anime, saved with the bundle (`catalogue_tables`).
            self._exact = dict(exact)
            return
        names: list[str] = []
        owners: list[tuple[int, int]] = []
        for anime in animes:
            owner = (anime.id, anime.members or 0)
            names.append(anime.title)
            owners.append(owner)
            if anime.synonyms:
                names.extend(anime.synonyms)
                owners.extend([owner] * len(anime.synonyms))
        best: dict[str, tuple[int, int]] = {}
        for key, owner in zip(title_keys(names), owners, strict=True):
            if key and (key not in best or owner[1] > best[key][1]):
                best[key] = owner
        self._exact = {key: anime_id for key, (anime_id, _) in best.items()}

    @property
    def exact_titles(self) -> dict[str, int]:
        """Title key → anime id (the most popular anime per key), what `exact=` takes back."""
        return self._exact

    def __call__(self, span: str, cued: bool) -> int | None:
        key = title_key(span)
        found = self._exact.get(key)
        if found is not None or not cued or self._matcher is None or " " not in key:
            return found
        for match in self._matcher.search(span, 1):
            if match.stage <= 1 or (match.stage == 3 and match.similarity >= CUED_FUZZY_MIN_SIMILARITY):
                return match.anime_id
        return None


@dataclass(slots=True)
class _Word:
    text: str  # folded
    stem: str
    start: int
    end: int
    used: bool = False  # claimed by a part already (titles first, then negations, ...)
    keep: bool = True  # stays in the residual text


@dataclass(slots=True)
class _State:
    words: list[_Word]
    folded: str
    boosts: dict[str, None] = field(default_factory=dict)
    exclude_tags: dict[str, None] = field(default_factory=dict)
    types: dict[AnimeType, None] = field(default_factory=dict)
    exclude_types: dict[AnimeType, None] = field(default_factory=dict)
    year: tuple[int | None, int | None] = (None, None)
    prefer_year: tuple[int | None, int | None] = (None, None)
    episodes: tuple[int | None, int | None] = (None, None)
    anchors: dict[int, None] = field(default_factory=dict)
    titles: dict[int, None] = field(default_factory=dict)
    understood: list[tuple[int, Understood]] = field(default_factory=list)

    def claim(self, start: int, end: int, *, keep: bool) -> str:
        for w in self.words[start:end]:
            w.used = True
            w.keep = w.keep and keep
        return " ".join(w.text for w in self.words[start:end])

    def note(self, position: int, item: Understood) -> None:
        self.understood.append((position, item))


_DECADE = re.compile(r"^(\d{2}|\d{4})s$")
_YEAR = re.compile(r"^(19[3-9]\d|20[0-4]\d)$")
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fifteen": 15, "twenty": 20, "thirty": 30,
    "fifty": 50, "hundred": 100,
}  # fmt: skip
_DECADE_WORDS = {
    "fifties": 1950, "sixties": 1960, "seventies": 1970, "eighties": 1980, "nineties": 1990,
    "noughties": 2000, "aughts": 2000,
}  # fmt: skip
_EPISODE_WORDS = frozenset({"episode", "ep", "eps", "episodes"})
_SPAN_STOPS = frozenset({"but", "except", "only", "without", "no", "not", "and", "or", "with"})
_TITLE_ARTICLES = frozenset({"the", "a", "an"})
# Fillers between a negation cue and what it negates ("no more romance", "not a movie").
_NEGATION_FILLERS = frozenset(
    {"a", "an", "the", "any", "more", "too", "much", "of", "so", "many", "lot", "lots"}
)
# Bound phrase → offset to the number ("under 13" is at most 12, "at most 12" is 12).
_LENGTH_MAX = {
    "under": -1, "less than": -1, "fewer than": -1, "below": -1, "shorter than": -1,
    "at most": 0, "up to": 0, "no more than": 0, "max": 0, "maximum": 0, "not more than": 0,
}  # fmt: skip
_LENGTH_MIN = {"over": 1, "more than": 1, "above": 1, "longer than": 1, "at least": 0, "minimum": 0}
_LONG_PHRASES = ("long running", "long series", "lengthy", "hundreds of episodes", "very long", "long")
_SHORT_PHRASES = ("short", "one cour", "single cour", "quick watch", "bite sized")
_OLD_WORDS = ("old", "older", "classic", "retro", "vintage", "old school")
_MODERN_WORDS = ("modern", "newer", "new school")
_RECENT_WORDS = ("recent", "latest", "newest", "recently", "new release", "brand new")
_BEFORE = ("before", "pre", "until", "prior to", "older than", "up to")
_AFTER = ("after", "since", "post", "newer than", "from", "between")


_ROLE_STEMS = frozenset(stem(w) for w in ROLE_WORDS)


def _stems(phrase: str) -> tuple[str, ...]:
    return tuple(stem(w) for w, _, _ in words(phrase))


def _phrase_table(phrases: Iterable[str]) -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for phrase in phrases:
        key = tuple(stem(w) for w, _, _ in words(phrase))
        if key:
            table.setdefault(key, phrase)
    return table


def _truncate(text: str) -> tuple[str, bool]:
    if len(text) <= MAX_QUERY_CHARS:
        return text, False
    cut = text[:MAX_QUERY_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space > MAX_QUERY_CHARS // 2 else cut), True


class QueryParser:
    """Parses free-text queries against one catalogue's tag vocabulary and titles.

    Args:
        vocabulary: the catalogue's tags (any spelling; matched on folded, stemmed words).
        resolve_title: span → anime id (`CatalogueTitles`, or a wrapper around the API's title index).
        reference_year: the newest year in the catalogue ("recent" counts back from it).
    """

    def __init__(
        self,
        vocabulary: Iterable[str],
        resolve_title: TitleResolver | Callable[[str, bool], int | None] | None = None,
        reference_year: int = 2024,
    ) -> None:
        vocab: dict[tuple[str, ...], str] = {}
        for tag in vocabulary:
            key = tuple(stem(w) for w, _, _ in words(tag))
            if key:
                vocab.setdefault(key, tag)
        self._genres: dict[tuple[str, ...], tuple[str, ...]] = {}
        for phrase, candidates in GENRE_PHRASES.items():
            tags = tuple(
                dict.fromkeys(
                    vocab[key] for c in candidates if (key := tuple(stem(w) for w, _, _ in words(c))) in vocab
                )
            )
            phrase_key = tuple(stem(w) for w, _, _ in words(phrase))
            if tags and phrase_key:
                self._genres[phrase_key] = tags
        # A tag named by its own label is understood too (manami: 'time travel', 'bounty hunters'),
        # unless the label is only function words or names characters ("kids").
        labels = {_stems(label) for label in CHARACTER_LABELS}
        for key, tag in vocab.items():
            if not all(part in STOPWORDS for part in key) and key not in labels:
                self._genres.setdefault(key, (tag,))
        self._past_tags = tuple(vocab[key] for key in map(_stems, PAST_SETTING_TAGS) if key in vocab)
        self._types = {
            tuple(stem(w) for w, _, _ in words(phrase)): kinds for phrase, kinds in TYPE_PHRASES.items()
        }
        self._title_cues = _phrase_table(TITLE_CUES)
        self._negations = _phrase_table(NEGATION_CUES)
        self._resolve = resolve_title
        self._reference_year = reference_year
        self._concept_words = {part for key in self._genres for part in key} | {
            part for key in self._types for part in key
        }

    @classmethod
    def for_catalogue(
        cls,
        catalogue: Catalogue,
        matcher: TitleMatcher | None = None,
        exact_titles: Mapping[str, int] | None = None,
    ) -> QueryParser:
        """A parser over a catalogue's tags and titles (`matcher`: the API's title index, optional;
        `exact_titles`: `CatalogueTitles.exact_titles` of these anime, when already at hand)."""
        years = catalogue.numbers("year")
        known = years[~np.isnan(years)]
        return cls(
            set(catalogue.tag_table().names),
            CatalogueTitles(catalogue, matcher, exact=exact_titles),
            reference_year=int(known.max()) if len(known) else 2024,
        )

    # -- entry point ---------------------------------------------------------------------------
    def parse(self, text: str) -> ParsedQuery:
        """Parse a query; never raises (see the module docstring)."""
        raw = text if isinstance(text, str) else str(text)
        raw = "".join(ch if ch.isprintable() else " " for ch in raw)
        raw, truncated = _truncate(raw)
        folded = fold(raw)
        state = _State([_Word(w, stem(w), s, e) for w, s, e in words(raw)], folded)
        self._titles(state)
        self._negation(state)
        self._era(state)
        self._length(state)
        self._type(state)
        self._genre(state)
        residual = " ".join(w.text for w in state.words if w.keep and not _only_digits_or_marks(w.text))
        understood = tuple(item for _, item in sorted(state.understood, key=lambda pair: pair[0]))
        return ParsedQuery(
            text=raw,
            residual=residual,
            boost_tags=tuple(t for t in state.boosts if t not in state.exclude_tags),
            exclude_tags=tuple(state.exclude_tags),
            types=tuple(t for t in state.types if t not in state.exclude_types),
            exclude_types=tuple(state.exclude_types),
            year_min=state.year[0],
            year_max=state.year[1],
            prefer_year_min=state.prefer_year[0],
            prefer_year_max=state.prefer_year[1],
            episodes_min=state.episodes[0],
            episodes_max=state.episodes[1],
            anchor_ids=tuple(state.anchors),
            title_ids=tuple(a for a in state.titles if a not in state.anchors),
            understood=understood,
            truncated=truncated,
        )

    # -- matching helpers ----------------------------------------------------------------------
    @staticmethod
    def _match(
        state: _State, i: int, table: dict[tuple[str, ...], _V], max_words: int = MAX_PHRASE_WORDS
    ) -> tuple[int, _V] | None:
        """Longest phrase of `table` starting at word i over unclaimed words: (length, value)."""
        ws = state.words
        for n in range(min(max_words, len(ws) - i), 0, -1):
            span = ws[i : i + n]
            if any(w.used for w in span):
                continue
            value = table.get(tuple(w.stem for w in span))
            if value is not None:
                return n, value
        return None

    def _punctuated(self, state: _State, i: int) -> bool:
        """Whether punctuation separates word i from word i+1 (a title span stops there).

        Punctuation inside a name, with no space ("Steins;Gate", "Re:Zero"), does not separate.
        """
        ws = state.words
        between = state.folded[ws[i].end : ws[i + 1].start]
        return any(ch in ',;.!?()[]"' for ch in between) and any(ch.isspace() for ch in between)

    # -- passes --------------------------------------------------------------------------------
    def _titles(self, state: _State) -> None:
        if self._resolve is None:
            return
        ws = state.words
        for i in range(len(ws)):
            cue = self._match(state, i, self._title_cues)
            if cue is not None:
                self._cued_title(state, i, cue[0])
        # Titles named without a cue: exact names of two or more words, not made only of concept
        # or stop words ("love story" is a genre phrase, not the anime called "Love Story").
        i = 0
        while i < len(ws):
            found = False
            for n in range(min(MAX_TITLE_WORDS, len(ws) - i), 1, -1):
                span = ws[i : i + n]
                if any(w.used for w in span) or any(self._punctuated(state, j) for j in range(i, i + n - 1)):
                    continue
                if all(w.text in STOPWORDS or w.stem in self._concept_words for w in span):
                    continue
                anime_id = self._safe_resolve(" ".join(w.text for w in span), cued=False)
                if anime_id is not None:
                    text = state.claim(i, i + n, keep=True)
                    state.titles[anime_id] = None
                    state.note(i, Understood("title", text, text, False, anime_id))
                    i += n
                    found = True
                    break
            if not found:
                i += 1

    def _cued_title(self, state: _State, i: int, cue_len: int) -> bool:
        ws = state.words
        start = i + cue_len
        while start < len(ws) and ws[start].text in _TITLE_ARTICLES:
            start += 1
        end = start
        while end < len(ws) and end - start < MAX_TITLE_WORDS and not ws[end].used:
            if end > start and ws[end].text in _SPAN_STOPS:
                break
            end += 1
            if end < len(ws) and self._punctuated(state, end - 1):
                break
        for stop in range(end, start, -1):
            span = ws[start:stop]
            if all(w.text in STOPWORDS or w.stem in self._concept_words for w in span) or (
                stop - start == 1 and len(span[0].text) < 3
            ):
                continue
            anime_id = self._safe_resolve(" ".join(w.text for w in span), cued=True)
            if anime_id is None and start > i + cue_len:
                # "like the Cowboy Bebop": also try with the article ("The Promised Neverland").
                anime_id = self._safe_resolve(" ".join(w.text for w in ws[i + cue_len : stop]), cued=True)
            if anime_id is not None:
                state.claim(i, start, keep=False)
                text = state.claim(start, stop, keep=False)
                state.anchors[anime_id] = None
                state.note(i, Understood("like_title", text, text, False, anime_id))
                return True
        return False

    def _safe_resolve(self, span: str, cued: bool) -> int | None:
        assert self._resolve is not None
        found = self._resolve(span, cued)
        return None if found is None else int(found)

    def _concept(
        self, state: _State, i: int
    ) -> tuple[int, str, tuple[str, ...] | tuple[AnimeType, ...]] | None:
        """A genre or type phrase at word i: (length, "genre" | "type", values)."""
        genre = self._match(state, i, self._genres)
        kind = self._match(state, i, self._types)
        if kind is not None and (genre is None or kind[0] >= genre[0]):
            return kind[0], "type", kind[1]
        if genre is not None:
            return genre[0], "genre", genre[1]
        return None

    def _negation(self, state: _State) -> None:
        ws = state.words
        i = 0
        while i < len(ws):
            cue = self._match(state, i, self._negations)
            if cue is None:
                i += 1
                continue
            j = i + cue[0]
            while j < len(ws) and ws[j].text in _NEGATION_FILLERS and not ws[j].used:
                j += 1
            negated = False
            while j < len(ws):
                concept = self._concept(state, j)
                if concept is None:
                    break
                length, kind, values = concept
                text = " ".join(w.text for w in ws[j : j + length])
                for value in values:
                    if kind == "type":
                        assert isinstance(value, AnimeType)
                        state.exclude_types[value] = None
                        state.note(j, Understood("exclude_type", text, value.value, True))
                    else:
                        assert isinstance(value, str)
                        state.exclude_tags[value] = None
                        state.note(j, Understood("exclude_genre", text, value, True))
                state.claim(i, j + length, keep=False)
                negated = True
                j += length
                # "no romance or harem", "no romance, ecchi or horror"
                if j < len(ws) and ws[j].text in {"or", "and", "nor"} and not ws[j].used:
                    state.claim(j, j + 1, keep=False)
                    j += 1
                    continue
                break
            i = j if negated else i + 1

    def _year_at(self, state: _State, i: int) -> tuple[int, int, int] | None:
        """A year or decade at word i: (first year, last year, words used)."""
        ws = state.words
        if i >= len(ws) or ws[i].used:
            return None
        text = ws[i].text
        modifier = None
        if text in {"early", "mid", "late"} and i + 1 < len(ws):
            modifier, i, text = text, i + 1, ws[i + 1].text
        decade: int | None = None
        match = _DECADE.match(text)
        if match:
            digits = match.group(1)
            value = int(digits)
            decade = value if len(digits) == 4 else (1900 + value if value >= 30 else 2000 + value)
            if decade % 10:
                return None
        elif text in _DECADE_WORDS:
            decade = _DECADE_WORDS[text]
        elif _YEAR.match(text):
            next_word = ws[i + 1].text if i + 1 < len(ws) else ""
            if next_word in _EPISODE_WORDS:
                return None
            year = int(text)
            if year < MIN_RELEASE_YEAR:
                return None
            return year, year, 1 + (modifier is not None)
        if decade is None or decade < MIN_RELEASE_YEAR:
            return None
        first, last = decade, decade + 9
        if modifier == "early":
            last = decade + 3
        elif modifier == "mid":
            first, last = decade + 3, decade + 6
        elif modifier == "late":
            first = decade + 6
        return first, last, 1 + (modifier is not None)

    def _phrase_at(self, state: _State, i: int, phrases: Iterable[str]) -> int:
        """Length in words of the first of `phrases` found at word i (0 when none)."""
        ws = state.words
        for phrase in phrases:
            parts = [w for w, _, _ in words(phrase)]
            span = ws[i : i + len(parts)]
            if len(span) == len(parts) and all(
                not w.used and w.text == p for w, p in zip(span, parts, strict=True)
            ):
                return len(parts)
        return 0

    @staticmethod
    def _scan(state: _State, part_at: Callable[[_State, int], int]) -> None:
        """Walk the unclaimed words left to right; `part_at` claims a part at word i and returns
        how many words it spans (0: nothing there), and the walk resumes after them."""
        i = 0
        while i < len(state.words):
            i += max(0 if state.words[i].used else part_at(state, i), 1)

    def _era(self, state: _State) -> None:
        self._scan(state, self._era_at)

    def _era_at(self, state: _State, i: int) -> int:
        """An era at word i ("recent", "old", "before 2000", "in the 90s"): words spanned, 0 if none."""
        ws = state.words
        if (n := self._phrase_at(state, i, _RECENT_WORDS)) > 0:
            first = self._reference_year - RECENT_YEARS
            text = state.claim(i, i + n, keep=False)
            state.year = (first, None)
            state.note(i, Understood("era", text, f"{first}–", True))
            return n
        soft = self._soft_era(state, i)
        if soft:
            return soft
        bound = self._phrase_at(state, i, _BEFORE)
        after = 0 if bound else self._phrase_at(state, i, _AFTER)
        at = i + bound + after
        if (bound or after) and at < len(ws) and ws[at].text == "the":
            at += 1
        span = self._year_at(state, at)
        if span is None:
            return self._past_setting_at(state, i)
        first, last, used = span
        end = at + used
        if bound:
            low, high = None, first - 1
        elif after and state.words[i].text in {"from", "between"} and (to := self._range_end(state, end)):
            high, extra = to
            low, end = first, end + extra
        elif after and state.words[i].text == "from":
            # "from the 90s", "from 2005": the year/decade itself.
            low, high = first, last
        elif after:
            low, high = (last + 1 if state.words[i].text in {"after", "post"} else first), None
        else:
            low, high = first, last
            if (to := self._range_end(state, end)) is not None:
                high, extra = to
                end += extra
        # "in the 90s", "from the 2010s": the preposition and article go with the era.
        begin = i
        while begin > 0 and not ws[begin - 1].used and ws[begin - 1].text in {"in", "the", "from"}:
            begin -= 1
        text = state.claim(begin, end, keep=False)
        state.year = (low, high)
        state.note(i, Understood("era", text, _range_text(low, high), True))
        return end - i

    def _past_setting_at(self, state: _State, i: int) -> int:
        """A decade before the release eras ("1930s America", "the 1800s") boosts the historical tags."""
        match = _DECADE.match(state.words[i].text)
        if not self._past_tags or match is None or len(match.group(1)) != 4:
            return 0
        if int(match.group(1)) >= MIN_RELEASE_YEAR:
            return 0
        # Kept in the residual: the decade is also a word the lexical search may match.
        text = state.claim(i, i + 1, keep=True)
        for tag in self._past_tags:
            if tag not in state.boosts:
                state.boosts[tag] = None
                state.note(i, Understood("genre", text, tag, False))
        return 1

    def _range_end(self, state: _State, i: int) -> tuple[int, int] | None:
        """ "… to 2005" / "… and 2005" / "… - 2005" after a year: (last year, words used)."""
        ws = state.words
        if i < len(ws) and ws[i].text in {"to", "and", "until", "through", "thru"}:
            span = self._year_at(state, i + 1)
            if span is not None:
                return span[1], 1 + span[2]
        span = self._year_at(state, i)
        if span is not None and "-" in state.folded[ws[i - 1].end : ws[i].start]:
            return span[1], span[2]
        return None

    def _soft_era(self, state: _State, i: int) -> int:
        for phrases, bounds in ((_OLD_WORDS, (None, OLD_MAX_YEAR)), (_MODERN_WORDS, (MODERN_MIN_YEAR, None))):
            n = self._phrase_at(state, i, phrases)
            # "an eight-year-old professor", "ten years old": an age, not an era.
            if n and not _is_age(state, i):
                text = state.claim(i, i + n, keep=False)
                state.prefer_year = bounds
                state.note(i, Understood("era_preference", text, _range_text(*bounds), False))
                return n
        return 0

    def _number_at(self, state: _State, i: int) -> int | None:
        if i >= len(state.words) or state.words[i].used:
            return None
        text = state.words[i].text
        if text.isdigit() and len(text) <= 4:
            return int(text)
        return _NUMBER_WORDS.get(text)

    def _length(self, state: _State) -> None:
        self._scan(state, self._length_at)

    def _length_at(self, state: _State, i: int) -> int:
        """A length at word i ("under 13 episodes", "26 episodes", "long-running", "short"): words spanned."""
        ws = state.words
        for table, is_max in ((_LENGTH_MAX, True), (_LENGTH_MIN, False)):
            n = self._phrase_at(state, i, table)
            number = self._number_at(state, i + n) if n else None
            has_unit = i + n + 1 < len(ws) and ws[i + n + 1].text in _EPISODE_WORDS
            if n and number is not None and has_unit:
                phrase = " ".join(w.text for w in ws[i : i + n])
                bound = max(0, number + table[phrase])
                text = state.claim(i, i + n + 2, keep=False)
                low, high = state.episodes
                state.episodes = (low, bound) if is_max else (bound, high)
                value = f"≤ {bound} episodes" if is_max else f"≥ {bound} episodes"
                state.note(i, Understood("length", text, value, True))
                return n + 2
        number = self._number_at(state, i)
        if number is not None and i + 1 < len(ws) and ws[i + 1].text in _EPISODE_WORDS:
            text = state.claim(i, i + 2, keep=False)
            state.episodes = (number, number)
            state.note(i, Understood("length", text, f"{number} episodes", True))
            return 2
        if n := self._phrase_at(state, i, _LONG_PHRASES):
            following = ws[i + n].text if i + n < len(ws) else ""
            if n > 1 or following in {"series", "show", "anime", "running", ""}:
                text = state.claim(i, i + n, keep=False)
                state.episodes = (LONG_MIN_EPISODES, None)
                state.note(i, Understood("length", text, f"≥ {LONG_MIN_EPISODES} episodes", True))
                return n
        if n := self._phrase_at(state, i, _SHORT_PHRASES):
            text = state.claim(i, i + n, keep=False)
            state.episodes = (None, SHORT_MAX_EPISODES)
            state.note(i, Understood("length", text, f"≤ {SHORT_MAX_EPISODES} episodes", True))
            return n
        return 0

    def _type(self, state: _State) -> None:
        for i in range(len(state.words)):
            found = self._match(state, i, self._types)
            if found is None:
                continue
            length, kinds = found
            if _inside_prepositional_phrase(state, i):
                continue  # "the ghost from a horror film": part of the story, not what to list
            text = state.claim(i, i + length, keep=False)
            for kind in kinds:
                state.types[kind] = None
                state.note(i, Understood("type", text, kind.value, True))

    def _genre(self, state: _State) -> None:
        i = 0
        while i < len(state.words):
            found = self._match(state, i, self._genres)
            if found is None:
                i += 1
                continue
            length, tags = found
            if length == 1 and _role_after_possessive(state, i):
                i += 1  # "coached by his idol": a role model, not the idol genre
                continue
            # Genre words stay in the residual: the dense and lexical searches use them too.
            text = state.claim(i, i + length, keep=True)
            for tag in tags:
                if tag not in state.boosts:
                    state.boosts[tag] = None
                    state.note(i, Understood("genre", text, tag, False))
            i += length


def _is_age(state: _State, i: int) -> bool:
    """Whether word i ('old') ends an age: 'eight year old', 'ten years old'."""
    return i > 0 and state.words[i].text == "old" and state.words[i - 1].text in {"year", "years"}


# A type word governed by one of these, at most three words back ("the ghost from a horror film", "set
# in a movie theatre"), names something in the story, not the kind of anime to list.
_STORY_PREPOSITIONS = frozenset({"from", "in", "inside", "into", "of", "within"})


def _inside_prepositional_phrase(state: _State, i: int) -> bool:
    """Whether the word at i is the object of a story preposition (no clause break in between)."""
    for back in range(1, 4):
        j = i - back
        if j < 0:
            return False
        text = state.words[j].text
        if text in _STORY_PREPOSITIONS:
            return back > 1 or text != "of"  # "a kind of movie" stays a type; "of a film" does not
        if text in _SPAN_STOPS:
            return False
    return False


def _role_after_possessive(state: _State, i: int) -> bool:
    return i > 0 and state.words[i].stem in _ROLE_STEMS and state.words[i - 1].text in POSSESSIVES


def _only_digits_or_marks(text: str) -> bool:
    return not any(ch.isalpha() for ch in text)


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return str(low) if low == high else f"{low}–{high}"
    if low is not None:
        return f"{low}–"
    return f"–{high}"


def parse_query(
    text: str,
    vocabulary: Iterable[str],
    resolve_title: TitleResolver | Callable[[str, bool], int | None] | None = None,
    reference_year: int = 2024,
) -> ParsedQuery:
    """One-off parse (builds a `QueryParser`; build one per catalogue to parse many queries)."""
    return QueryParser(vocabulary, resolve_title, reference_year).parse(text)
