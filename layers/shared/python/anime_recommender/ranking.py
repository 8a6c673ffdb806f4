"""The final ranking of similar-anime lists: V4 similarity plus a few documented signals.

Candidates: the hnswlib search over V4 vectors, over-fetched (200), joined by the V3 search's
top 100 and the query's V2 teacher list (100), minus the query's franchise siblings
(`FranchiseIndex.siblings`) — the evaluation measures exactly that pool. This module re-ranks them with

* ``w_v4 · cos_v4`` — the fine-tuned embedding (the main signal);
* ``w_v3 · cos_v3`` — the frozen encoder, which keeps title/franchise closeness that fine-tuning
  on the teacher's genre-style pairs tends to wash out;
* ``w_tags · jaccard(tags)`` — exact genre/tag overlap, which the embeddings only approximate;
* ``w_popularity · pop`` — a prior on ``log10(members)`` scaled to [0, 1]: real viewers'
  recommendations lean toward well-known titles;
* ``w_quality · quality`` — a prior on the MyAnimeList score, ``(score − 5) / 4`` clipped to
  [0, 1] (0 when unknown): they lean toward well-rated ones too;
* ``w_year · exp(-|Δyear| / year_scale)`` — release-year proximity (0 when a year is unknown).

Franchise siblings never take a slot: they are shown apart (`franchise_entries`: ordered by
release, each with a relation guess), as MyAnimeList shows "Related anime" beside
"Recommendations". The ranked list also shows one entry per other franchise before any second
entry of it (`spread_franchises`): real viewers recommend a work, not its every season.

Everything is numpy and stdlib: it runs inside the API Lambda. The franchise heuristic
(`franchise_key`, `same_franchise`, `FranchiseIndex`) is shared with the offline evaluation.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anime_recommender.batch_text import map_joined
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.id_lists import KeyedIdLists

# ---------------------------------------------------------------------------------------------
# Franchise heuristic
# ---------------------------------------------------------------------------------------------

# Trailing words that mark an instalment rather than a different work.
_MARKER_WORDS = frozenset(
    {
        "season", "seasons", "part", "parts", "cour", "movie", "movies", "film", "the", "ova", "ovas",
        "oav", "ona", "special", "specials", "sp", "tv", "recap", "final", "finale", "series", "new",
        "shin", "zoku", "kan", "ki", "hen", "arc", "episode", "episodes", "edition", "version",
        "gekijouban", "gekijou", "ban", "eiga", "picture", "drama", "cd", "pv", "cm", "ii", "iii",
        "iv", "v", "vi", "vii", "viii", "ix", "x", "2nd", "3rd", "first", "second", "third", "fourth",
        "fifth", "sixth", "last", "stage", "and",
    }
)  # fmt: skip
# Leading words that mark a spin-off format of the same work ("Gekijouban X", "Eiga X").
_LEADING_MARKERS = frozenset({"gekijouban", "gekijou", "ban", "eiga", "the", "movie", "shin", "zoku"})
_ORDINAL = re.compile(r"^(\d+(st|nd|rd|th)?|[a-z]\d+|\d+[a-z]?|s|r)$")
_PAREN = re.compile(r"[\(\[][^\)\]]*[\)\]]")
# A subtitle starts at ": " (not "Re:Zero"), " - ", "~" or "/" (Fate/Zero).
_SUBTITLE = re.compile(r": |\s[-–—]\s|~|/")
_NON_WORD = re.compile(r"[^a-z0-9]+")
# A word prefix of another title's key links the two only if it is specific enough:
# "naruto" → "naruto shippuuden" yes, "love" → "love live" no.
MIN_PREFIX_CHARS = 6
MIN_PREFIX_WORDS = 2
MIN_PREFIX_TAG_JACCARD = 0.25
# Two long titles opening with the same three words are one work's entries
# ('Seishun Buta Yarou wa …', 'Kono Subarashii Sekai ni …'); two words are not ('Kimi no …').
SHARED_OPENING_WORDS = 3


def _fold(text: str) -> str:
    """Lower-case ASCII folding: 'Pokémon' → 'pokemon', '☆' and other symbols → space."""
    if text.isascii():
        # NFKD and combining marks are no-ops on ASCII: nearly every title, keyed at cold start.
        return text.lower()
    norm = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in norm if not unicodedata.combining(ch)).lower()


@lru_cache(maxsize=65536)  # the API re-ranks the same popular titles over and over
def title_key(title: str) -> str:
    """Normalised base title: no subtitle, bracketed year/format, numerals or season/sequel markers.

    'Code Geass: Hangyaku no Lelouch R2' → 'code geass'; 'K-On!!' → 'k on';
    'Shingeki no Kyojin Season 3 Part 2' → 'shingeki no kyojin'; 'Hunter x Hunter (2011)' →
    'hunter x hunter'. Falls back to the whole folded title when stripping leaves nothing.
    """
    folded = _fold(title)
    no_paren = _PAREN.sub(" ", folded)
    base = _SUBTITLE.split(no_paren, maxsplit=1)[0]
    words = [w for w in _NON_WORD.split(base) if w]
    while words and (words[-1] in _MARKER_WORDS or _ORDINAL.match(words[-1])):
        words.pop()
    while len(words) > 1 and words[0] in _LEADING_MARKERS:
        words.pop(0)
    if not words:
        words = [w for w in _NON_WORD.split(no_paren) if w]
    return " ".join(words)


# The same patterns over titles joined by "\n" (`title_keys`): no match may cross a line.
_PAREN_LINE = re.compile(r"[\(\[][^\)\]\n]*[\)\]]")
_SUBTITLE_TO_EOL = re.compile(r"(?:: |[^\S\n][-–—][^\S\n]|~|/)[^\n]*")
# Bytes translation table: every ASCII byte but [a-z0-9\n] → space (`_NON_WORD` for ASCII text,
# many times faster than a regex substitution over the joined titles).
_NON_WORD_TO_SPACE = bytes(
    c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789\n" else 32 for c in range(256)
)


def title_keys(titles: Sequence[str]) -> list[str]:
    """`title_key` of each title; ASCII titles (nearly all) take one regex pass over their join.

    Built for the cold start: the regex work for 17.5k titles runs once instead of per title.
    """
    return map_joined(titles, title_key, _title_keys_of_lines)


def _title_keys_of_lines(joined: str) -> list[str | None]:
    """`title_key` of each line of ASCII titles joined by '\n' (None: nothing left, see `title_key`)."""
    bases = _SUBTITLE_TO_EOL.sub("", _PAREN_LINE.sub(" ", joined.lower()))
    lines = bases.encode("ascii").translate(_NON_WORD_TO_SPACE).decode("ascii").split("\n")
    trailing: dict[str, bool] = {}  # word → whether it is a trailing marker (few distinct words end titles)
    out: list[str | None] = []
    for line in lines:
        words = line.split()
        while words:
            last = words[-1]
            marker = trailing.get(last)
            if marker is None:
                marker = trailing[last] = last in _MARKER_WORDS or _ORDINAL.match(last) is not None
            if not marker:
                break
            words.pop()
        while len(words) > 1 and words[0] in _LEADING_MARKERS:
            words.pop(0)
        # Nothing left: `title_key` falls back to the whole title (rare; no batch form needed).
        out.append(" ".join(words) if words else None)
    return out


def franchise_key(anime: Anime) -> str:
    """The franchise key of an anime: the normalised base of its title (see `title_key`)."""
    return title_key(anime.title)


# Title keys that name no work: a format, a number ("2" is a synonym of hundreds of sequels).
_GENERIC_KEYS = frozenset({"ova", "ona", "oad", "tv", "movie", "special", "specials", "pv", "cm", "music"})
#: A key more anime share than this is a label, not a franchise: story-text synonyms tag ~1,000 NHK
#: music clips "Minna no Uta". The largest real franchises by key have ~80 entries (Anpanman, Pokémon).
MAX_KEY_SHARE = 150


def _usable_key(key: str) -> bool:
    return len(key) >= 2 and key not in _GENERIC_KEYS and any(ch.isalpha() for ch in key)


def _all_keys(anime: Anime, labels: AbstractSet[str] = frozenset()) -> set[str]:
    keys = {title_key(anime.title)}
    keys.update(title_key(s) for s in anime.synonyms if s)
    return {key for key in keys if _usable_key(key) and key not in labels}


def _specific_prefix(prefix: str) -> bool:
    return len(prefix) >= MIN_PREFIX_CHARS or prefix.count(" ") + 1 >= MIN_PREFIX_WORDS


def _prefix_related(short: str, long: str) -> bool:
    return long.startswith(short + " ") and _specific_prefix(short)


def _opening(key: str) -> str | None:
    words = key.split(" ")
    return " ".join(words[:SHARED_OPENING_WORDS]) if len(words) > SHARED_OPENING_WORDS else None


def _shared_opening(x: str, y: str) -> bool:
    opening = _opening(x)
    return opening is not None and opening == _opening(y)


def _related_link(a: Anime, b: Anime) -> bool:
    # `related` holds source URLs of related entries (manami); any shared URL links the pair.
    return bool(a.related and b.sources and set(a.related) & set(b.sources)) or bool(
        b.related and a.sources and set(b.related) & set(a.sources)
    )


def same_franchise(a: Anime, b: Anime, labels: AbstractSet[str] = frozenset()) -> bool:
    """Whether two anime look like the same franchise (sequel, movie, OVA, season of one work).

    True when their title/synonym keys are equal; or when one key is a specific word prefix of the
    other ('naruto' / 'naruto shippuuden') or both open with the same three words of longer titles,
    and their tags overlap (Jaccard ≥ 0.25, or unknown); or when one lists the other as related.
    An anime is not its own sibling. Keys that name no work (a format, a bare number) never link, nor
    do `labels` (keys a catalogue shares more than `MAX_KEY_SHARE` times: `FranchiseIndex`).
    """
    if a.id == b.id:
        return False
    if _related_link(a, b):
        return True
    keys_a, keys_b = _all_keys(a, labels), _all_keys(b, labels)
    if keys_a & keys_b:
        return True
    prefixed = any(
        _prefix_related(x, y) or _prefix_related(y, x) or _shared_opening(x, y)
        for x in keys_a
        for y in keys_b
    )
    return prefixed and _tags_agree(a, b)


def _tags_agree(a: Anime, b: Anime) -> bool:
    # A title prefix alone is weak evidence ('Seishun' / 'Seishun Buta Yarou…'); a sequel also
    # shares a good part of its genres. Unknown tags do not veto.
    if not a.tags or not b.tags:
        return True
    ta, tb = set(a.tags), set(b.tags)
    return len(ta & tb) / len(ta | tb) >= MIN_PREFIX_TAG_JACCARD


class FranchiseIndex:
    """Key → ids lookup over a catalogue, so siblings can be found by title without a scan.

    The API uses it to add same-franchise candidates that the vector search missed;
    the evaluation uses it to enumerate franchise siblings.
    """

    def __init__(self, animes: Iterable[Anime]) -> None:
        self._anime: dict[int, Anime] = {}
        by_key: dict[str, set[int]] = defaultdict(set)
        self._by_source: dict[str, int] = {}
        listing: dict[str, set[int]] = defaultdict(set)
        self._first_word: dict[str, list[str]] | None = None
        by_opening: dict[str, set[int]] = defaultdict(set)
        listed = list(animes)
        # Every title and synonym keyed in one batch (`title_keys`), sliced back per anime below.
        names: list[str] = []
        ends: list[int] = []
        for anime in listed:
            names.append(anime.title)
            if anime.synonyms:
                names.extend(s for s in anime.synonyms if s)
            ends.append(len(names))
        flat_keys = title_keys(names)
        start = 0
        keys_of: list[set[str]] = []
        for anime, end in zip(listed, ends, strict=True):
            # Built as `_all_keys` builds it, so the set (and the key order below) is the same.
            keys = {flat_keys[start]}
            if end > start + 1:
                keys.update(flat_keys[start + 1 : end])
            keys = {key for key in keys if _usable_key(key)}
            keys_of.append(keys)
            start = end
            self._anime[anime.id] = anime
            for key in keys:
                by_key[key].add(anime.id)
            for url in anime.sources:
                self._by_source[url] = anime.id
            for url in anime.related:
                listing[url].add(anime.id)
        self._labels = {key for key, ids in by_key.items() if len(ids) > MAX_KEY_SHARE}
        for key in self._labels:
            del by_key[key]
        for anime, keys in zip(listed, keys_of, strict=True):
            for key in keys - self._labels:
                # `_opening` is None below SHARED_OPENING_WORDS + 1 words: skip its split for those.
                if key.count(" ") >= SHARED_OPENING_WORDS:
                    opening = _opening(key)
                    if opening is not None:
                        by_opening[opening].add(anime.id)
        # Packed as the saved tables restore them, so a built and a loaded index are the same.
        self._by_key = KeyedIdLists.pack(by_key)
        self._listing = KeyedIdLists.pack(listing)
        self._by_opening = KeyedIdLists.pack(by_opening)

    def state(self) -> dict[str, Any]:
        """What was built from the titles: the key → ids tables packed (`KeyedIdLists`), the rest as
        plain dicts and sets (saved by `catalogue_tables`)."""
        return {
            "by_key": self._by_key.state(),
            "by_source": self._by_source,
            "listing": self._listing.state(),
            "by_opening": self._by_opening.state(),
            "labels": self._labels,
        }

    @classmethod
    def from_state(cls, animes: Iterable[Anime], state: Mapping[str, Any]) -> FranchiseIndex:
        """The index `state()` was taken from, over the same anime, without keying their titles again."""
        index = cls.__new__(cls)
        index._anime = {anime.id: anime for anime in animes}
        # Read-only mappings: after __init__ the tables are only read, with .get() or with keys they hold.
        index._by_key = KeyedIdLists.from_state(state["by_key"])
        index._by_source = state["by_source"]
        index._listing = KeyedIdLists.from_state(state["listing"])
        index._first_word = None
        index._by_opening = KeyedIdLists.from_state(state["by_opening"])
        index._labels = set(state.get("labels", ()))
        return index

    def _candidate_ids(self, anime: Anime) -> set[int]:
        found: set[int] = set()
        for key in _all_keys(anime, self._labels):
            found.update(self._by_key.get(key, ()))
            words = key.split(" ")
            # Shorter keys that are a specific word prefix of this one ('naruto' for 'naruto shippuuden').
            for n in range(1, len(words)):
                prefix = " ".join(words[:n])
                if _specific_prefix(prefix):
                    found.update(self._by_key.get(prefix, ()))
            # Longer keys that start with this one: scan only keys sharing the first word.
            if _specific_prefix(key):
                found |= self._by_prefix(key)
            opening = _opening(key)
            if opening is not None:
                found.update(self._by_opening.get(opening, ()))
        for url in anime.related:
            if url in self._by_source:
                found.add(self._by_source[url])
        for url in anime.sources:
            found.update(self._listing.get(url, ()))
        return found

    def _by_prefix(self, key: str) -> set[int]:
        if self._first_word is None:
            first: dict[str, list[str]] = defaultdict(list)
            for k in self._by_key:
                first[k.split(" ", 1)[0]].append(k)
            self._first_word = first
        out: set[int] = set()
        for k in self._first_word.get(key.split(" ", 1)[0], []):
            if k.startswith(key + " "):
                out.update(self._by_key[k])
        return out

    def siblings(self, anime: Anime) -> list[int]:
        """Ids of catalogue anime in the same franchise as `anime` (by `same_franchise`), sorted."""
        ids = self._candidate_ids(anime)
        labels = self._labels
        return sorted(i for i in ids if i != anime.id and same_franchise(anime, self._anime[i], labels))


# ---------------------------------------------------------------------------------------------
# The franchise list and one entry per franchise
# ---------------------------------------------------------------------------------------------

Relation = Literal["prequel", "sequel", "parent story", "movie", "side story", "same franchise"]
# A long franchise (Doraemon, Pokémon: 90+ entries) is cut to its best-known entries.
FRANCHISE_LIMIT = 25
_SEASON_ORDER = {"winter": 0, "spring": 1, "summer": 2, "fall": 3, "autumn": 3}
_SERIES = frozenset({AnimeType.TV, AnimeType.ONA})
_SIDE_FORMATS = frozenset({AnimeType.OVA, AnimeType.SPECIAL, AnimeType.MUSIC})


@dataclass(frozen=True, slots=True)
class FranchiseEntry:
    """A franchise sibling shown apart from the recommendations, with its relation to the query."""

    anime: Anime
    relation: Relation


def release_key(anime: Anime) -> tuple[bool, int, int, int]:
    """Sort key by release: year (unknown last), then season (unknown after known ones), then id."""
    season = _SEASON_ORDER.get((anime.season or "").lower(), len(_SEASON_ORDER))
    return (anime.year is None, anime.year or 0, season, anime.id)


def relation_guess(query: Anime, sibling: Anime) -> Relation:
    """How `sibling` relates to `query`, guessed from their formats and release order.

    A movie of a series is "movie"; an OVA/special/music video of another format "side story";
    the series of a movie/OVA "parent story"; otherwise the earlier one is the "prequel" and the
    later one the "sequel", and "same franchise" when the years are unknown or equal. (manami's
    `related` links name no relation type, so formats and dates are all there is.)
    """
    if sibling.type is AnimeType.MOVIE and query.type is not AnimeType.MOVIE:
        return "movie"
    if sibling.type in _SIDE_FORMATS and sibling.type is not query.type:
        return "side story"
    if sibling.type in _SERIES and query.type not in _SERIES and query.type is not AnimeType.UNKNOWN:
        return "parent story"
    if query.year is None or sibling.year is None:
        return "same franchise"
    mine, theirs = release_key(query)[1:3], release_key(sibling)[1:3]
    if theirs == mine or (sibling.year == query.year and len(_SEASON_ORDER) in (mine[1], theirs[1])):
        return "same franchise"
    return "prequel" if theirs < mine else "sequel"


def franchise_entries(
    query: Anime, siblings: Iterable[Anime], limit: int = FRANCHISE_LIMIT
) -> tuple[list[FranchiseEntry], int]:
    """The query's franchise list: siblings ordered by release, each with `relation_guess`.

    Beyond `limit` siblings, the `limit` with the most members are kept (still in release order).
    Returns the entries and the total number of siblings.
    """
    found = [s for s in siblings if s.id != query.id]
    kept = found
    if len(found) > limit:
        kept = sorted(found, key=lambda a: (-(a.members or 0), a.id))[: max(limit, 0)]
    entries = [FranchiseEntry(a, relation_guess(query, a)) for a in sorted(kept, key=release_key)]
    return entries, len(found)


def spread_franchises(
    ranked: Sequence[int], siblings_of: Callable[[int], AbstractSet[int]], limit: int
) -> list[int]:
    """The first `limit` of the ranked ids with one entry per franchise before any repeat.

    Walks the ranking and sets aside an id whose franchise (`siblings_of`, e.g.
    `RerankFeatures.siblings_of`) is already in the list; set-aside ids fill the end of the list,
    in ranked order, only when there are not `limit` distinct franchises. Deterministic, so pages
    cut from longer lists never overlap.
    """
    picked: list[int] = []
    repeats: list[int] = []
    for anime_id in ranked:
        if len(picked) >= limit:
            break
        if any(anime_id in siblings_of(p) for p in picked):
            repeats.append(anime_id)
        else:
            picked.append(anime_id)
    return picked + repeats[: max(limit - len(picked), 0)]


# ---------------------------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------------------------

# log10(members) of 10M: no anime has more, so the prior stays in [0, 1].
_POP_LOG_MAX = 7.0
COMPONENTS: tuple[str, ...] = ("v4", "v3", "tags", "popularity", "quality", "year", "story")


class RankingConfig(BaseModel):
    """Knobs of the final ranking. Defaults were tuned on the development recommendations.

    Tuning (`anime-build evaluate --tune`): grid over `w_v3`, `w_tags`, `w_popularity`,
    `w_quality` and `w_year` on the dev set's source anime, checked on a 2-fold split of them;
    objective = cross-franchise recall@10 (≥ 2 votes) of the sibling-free, one-per-franchise list.
    Defaults: the full-dev-set tuning (162 configs) with the shipped int8 V4/V3 on the default
    catalogue: 13.3 % recall@10 (9.9 % before, when siblings took ~5 of the 10 slots); the 2-fold
    check (tune on one half, score the other) gave 12.6 % / 12.4 %. Re-run it when V4 changes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    w_v4: float = Field(1.0, ge=0.0, description="Weight of the fine-tuned (V4) cosine similarity.")
    w_v3: float = Field(1.0, ge=0.0, description="Weight of the frozen-encoder (V3) cosine similarity.")
    w_tags: float = Field(1.5, ge=0.0, description="Weight of the Jaccard overlap of the two tag sets.")
    w_popularity: float = Field(
        4.0, ge=0.0, description="Weight of the popularity prior log10(members)/7 in [0, 1]."
    )
    w_quality: float = Field(0.25, ge=0.0, description="Weight of the score prior (score-5)/4 in [0, 1].")
    w_year: float = Field(1.0, ge=0.0, description="Weight of year proximity exp(-|Δyear|/year_scale).")
    year_scale: float = Field(8.0, gt=0.0, description="Years over which year proximity decays by 1/e.")
    w_story: float = Field(
        0.0,
        ge=0.0,
        description="Weight of the story cosine: the two synopses' story-index vectors (0 when either "
        "anime has none; the story index's nearest neighbours also join the candidates).",
    )
    # Free-text search has no query anime, so only the two cosines and the popularity prior apply.
    # The fine-tuned head learned genres from the teacher and loses some literal word matching,
    # which the frozen V3 output keeps; a small popularity prior breaks near-ties towards titles
    # people know. Chosen by inspecting example queries (no free-text ground truth exists here).
    text_w_v3: float = Field(1.0, ge=0.0, description="Free-text search: weight of the V3 cosine.")
    text_w_popularity: float = Field(
        0.3, ge=0.0, description="Free-text search: weight of the popularity prior."
    )


#: The ranking of a catalogue with story text (fine tags, synopses and their story index): tuned on
#: the development recommendations with the story-text build's int8 vectors (`anime-build evaluate
#: --tune`, 1,152 configurations): fine tags and the story cosine earn weight that coarse genres did
#: not, and V3's title closeness less.
STORY_TEXT_RANKING = RankingConfig(w_v3=0.5, w_tags=3.0, w_year=0.5, w_story=2.0)


def ranking_for(catalogue: Catalogue) -> RankingConfig:
    """The ranking a catalogue is served with: `STORY_TEXT_RANKING` when it has story text, else the
    defaults (each tuned on its own build)."""
    return STORY_TEXT_RANKING if catalogue.has_story_text else RankingConfig()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate from the vector search: the anime and its similarities to the query."""

    anime: Anime
    v4: float
    v3: float


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One ranked result: id, final score and the weighted components that sum to it."""

    id: int
    score: float
    components: dict[str, float]


def popularity(members: np.ndarray) -> np.ndarray:
    """The popularity prior in [0, 1]: log10(members + 1) / 7; NaN (unknown) → 0."""
    m = np.nan_to_num(np.asarray(members, dtype=np.float64), nan=0.0)
    return np.clip(np.log10(np.maximum(m, 0.0) + 1.0) / _POP_LOG_MAX, 0.0, 1.0)


#: Anime with no member count or no score (those only a story-text file knows, or not yet aired when
#: the base catalogue was taken) get this quantile of the known anime's prior: below most, so they do
#: not flood lists, but not the bottom, so a strong story match is not buried.
UNKNOWN_PRIOR_QUANTILE = 0.25


def _impute_unknown(prior: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    if unknown.any() and not unknown.all():
        prior[unknown] = float(np.quantile(prior[~unknown], UNKNOWN_PRIOR_QUANTILE))
    return prior


def catalogue_popularity(catalogue: Catalogue) -> np.ndarray:
    """`popularity` of every anime in row order, unknown member counts imputed
    (`UNKNOWN_PRIOR_QUANTILE` of the known ones; 0 when none is known)."""
    members = catalogue.numbers("members")
    return _impute_unknown(popularity(members), np.isnan(members))


def catalogue_quality(catalogue: Catalogue) -> np.ndarray:
    """`quality` of every anime in row order, unknown scores imputed (`UNKNOWN_PRIOR_QUANTILE` of the
    known ones; 0 when none is known): an anime nobody has scored yet is not the worst one. The search
    ranker's prior, where an unscored new title competes with the whole catalogue."""
    scores = catalogue.numbers("score")
    return _impute_unknown(quality(scores), np.isnan(scores))


def quality(scores: np.ndarray) -> np.ndarray:
    """The quality prior in [0, 1]: (score - 5) / 4 clipped; NaN (unknown) → 0."""
    s = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(s), 0.0, np.clip((np.nan_to_num(s, nan=5.0) - 5.0) / 4.0, 0.0, 1.0))


def tag_jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|a ∩ b| / |a ∪ b| of two tag lists; 0 when both are empty."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def year_proximity(query_year: np.ndarray, years: np.ndarray, scale: float) -> np.ndarray:
    """exp(-|Δyear| / scale), 0 where either year is unknown (NaN)."""
    delta = np.abs(np.asarray(years, dtype=np.float64) - np.asarray(query_year, dtype=np.float64))
    return np.where(np.isnan(delta), 0.0, np.exp(-np.nan_to_num(delta, nan=0.0) / scale))


@dataclass(frozen=True, slots=True)
class CandidateColumns:
    """The re-ranking's inputs for candidate arrays shaped [..., C] (one row per query); None = 0.

    `valid` False marks padding and franchise siblings (their score is -inf).
    """

    v4: np.ndarray
    v3: np.ndarray
    pop: np.ndarray
    year_prox: np.ndarray
    qual: np.ndarray | None = None
    tags: np.ndarray | None = None
    story: np.ndarray | None = None
    valid: np.ndarray | None = None


def score_arrays(
    config: RankingConfig, columns: CandidateColumns
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vectorised scores of the candidates in `columns`.

    Returns the final score (-inf where not `valid`) and the weighted components, which sum to it.
    """
    v4 = np.asarray(columns.v4, dtype=np.float64)

    def column(values: np.ndarray | None) -> np.ndarray:
        return np.broadcast_to(0.0 if values is None else values, v4.shape)

    comps = {
        "v4": config.w_v4 * v4,
        "v3": config.w_v3 * np.asarray(columns.v3, dtype=np.float64),
        "tags": config.w_tags * column(columns.tags),
        "popularity": config.w_popularity * column(columns.pop),
        "quality": config.w_quality * column(columns.qual),
        "year": config.w_year * column(columns.year_prox),
        "story": config.w_story * column(columns.story),
    }
    base = sum((comps[name] for name in COMPONENTS), np.zeros(v4.shape))
    valid = columns.valid
    ok = np.ones(v4.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    return np.where(ok, base, -np.inf), comps


def rank_candidates(
    query: Anime,
    candidates: Sequence[Candidate],
    config: RankingConfig | None = None,
    k: int = 10,
) -> list[RankedItem]:
    """Re-rank vector-search candidates for `query`: the reference for the API's vectorised path.

    The query itself and its franchise siblings (`same_franchise`) never appear; the list has one
    entry per franchise before any repeat (`spread_franchises`).

    Args:
        query: the anime whose similar list is wanted.
        candidates: over-fetched neighbours (ideally 100–200) with V4 and V3 cosine similarities.
        config: ranking knobs (defaults: tuned values).
        k: how many results to return.
    Returns:
        Up to k `RankedItem`s, best first; each item's components sum to its score.
    """
    cfg = config or RankingConfig()
    seen: set[int] = set()
    uniq: list[Candidate] = []
    for cand in candidates:
        if cand.anime.id not in seen and cand.anime.id != query.id and not same_franchise(query, cand.anime):
            seen.add(cand.anime.id)
            uniq.append(cand)
    if not uniq or k <= 0:
        return []
    members = np.array([np.nan if c.anime.members is None else c.anime.members for c in uniq], dtype=float)
    years = np.array([np.nan if c.anime.year is None else c.anime.year for c in uniq], dtype=float)
    scores = np.array([np.nan if c.anime.score is None else c.anime.score for c in uniq], dtype=float)
    qyear = np.nan if query.year is None else float(query.year)
    score, comps = score_arrays(
        cfg,
        CandidateColumns(
            v4=np.array([c.v4 for c in uniq]),
            v3=np.array([c.v3 for c in uniq]),
            pop=popularity(members),
            year_prox=year_proximity(np.array(qyear), years, cfg.year_scale),
            qual=quality(scores),
            tags=np.array([tag_jaccard(query.tags, c.anime.tags) for c in uniq]),
        ),
    )
    # Stable sort on -score, ties broken by V4 similarity then id, so results are deterministic.
    order = sorted(range(len(uniq)), key=lambda i: (-score[i], -uniq[i].v4, uniq[i].anime.id))
    position = {uniq[i].anime.id: i for i in order}
    by_id = {c.anime.id: c.anime for c in uniq}

    def siblings_of(anime_id: int) -> set[int]:
        return {i for i, other in by_id.items() if same_franchise(by_id[anime_id], other)}

    spread = spread_franchises([uniq[i].anime.id for i in order], siblings_of, k)
    return [
        RankedItem(
            id=anime_id,
            score=float(score[position[anime_id]]),
            components={name: float(comps[name][position[anime_id]]) for name in COMPONENTS},
        )
        for anime_id in spread
        if math.isfinite(score[position[anime_id]])
    ]


class RerankFeatures:
    """Per-catalogue-row inputs of the re-ranking, computed once per bundle (not per request).

    Columns in row order: the popularity and quality priors, years (NaN = unknown) and the tag
    sets as CSR arrays of tag numbers, so one request's candidate features are a few gathers
    and its tag Jaccards one vectorised pass. Franchise siblings come from `FranchiseIndex`
    (exactly the anime `same_franchise` accepts) and are memoised per query anime.
    """

    def __init__(self, catalogue: Catalogue, franchise: FranchiseIndex | None = None) -> None:
        self.ids = np.fromiter((a.id for a in catalogue), dtype=np.int64, count=len(catalogue))
        self.pop = catalogue_popularity(catalogue)
        # Unknown scores count as 0 here, as in `rank_candidates` (the reference, which sees only the
        # candidates) and in the dev-set tuning of `w_quality`; search imputes them (`catalogue_quality`).
        self.qual = quality(catalogue.numbers("score"))
        self.years = catalogue.numbers("year")
        tags = catalogue.tag_table()
        # Tag sets as CSR arrays of tag numbers (a repeated tag counts once, as `tag_jaccard` does).
        self.tag_count = tags.count
        self.tag_start = tags.start
        self.tag_ids = tags.codes
        self.n_tags = len(tags.names)
        self.franchise = franchise if franchise is not None else FranchiseIndex(catalogue)
        self._catalogue = catalogue
        self._siblings: dict[int, frozenset[int]] = {}

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Catalogue rows of anime ids that are in the catalogue (row order = sorted ids)."""
        return np.searchsorted(self.ids, ids)

    def siblings(self, anime: Anime) -> frozenset[int]:
        """Ids of the anime's franchise siblings (memoised; the catalogue is immutable)."""
        found = self._siblings.get(anime.id)
        if found is None:
            found = frozenset(self.franchise.siblings(anime))
            self._siblings[anime.id] = found
        return found

    def siblings_of(self, anime_id: int) -> frozenset[int]:
        """`siblings` by id: what `spread_franchises` asks of each listed anime."""
        found = self._siblings.get(anime_id)
        return found if found is not None else self.siblings(self._catalogue.by_id(anime_id))

    def tag_jaccard(self, query_row: int, rows: np.ndarray) -> np.ndarray:
        """|A ∩ B| / |A ∪ B| of the query's tag set with each row's; 0 when both are empty."""
        in_query = np.zeros(self.n_tags, dtype=bool)
        start, count = self.tag_start[query_row], self.tag_count[query_row]
        in_query[self.tag_ids[start : start + count]] = True
        lengths = self.tag_count[rows]
        total = int(lengths.sum())
        # Flat positions of every candidate's tags: each row's start, then 0..length-1.
        offsets = np.repeat(self.tag_start[rows] - np.cumsum(lengths) + lengths, lengths)
        hits = in_query[self.tag_ids[offsets + np.arange(total)]]
        owner = np.repeat(np.arange(len(rows)), lengths)
        inter = np.bincount(owner, weights=hits, minlength=len(rows))
        union = count + lengths - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)
