"""A viewer's own anime list, as MyAnimeList's XML export writes it, and the taste it implies. No HTTP.

Every anime site and tracker (MyAnimeList, AniList, Kitsu, Anime-Planet) exports and imports this
file: `<myanimelist><anime><series_animedb_id>…<my_status>…<my_score>…</anime>…</myanimelist>`,
plain or gzip-compressed. `read_mal_export` reads it safely: the decompressed size capped (a gzip
bomb stops at the cap), the root element and the entry count checked on the bytes, then a streaming
parse with defusedxml (no DTD, no entities, no external references, so no entity-expansion bomb)
that empties each `<anime>` element once read. Malformed entries are skipped and counted,
duplicates merged and counted.

`taste_of` turns the list into a `similarity.Taste` (`ListWeights`), and `next_in_franchises` finds
the unwatched next entries of the franchises the viewer completed or is watching.
"""

from __future__ import annotations

import io
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as safe_xml

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.ranking import release_key
from anime_recommender.similarity import Taste

GZIP_MAGIC = b"\x1f\x8b"
# A 10,000-entry export is ~7 MB (about 700 bytes an entry): twice that, decompressed.
MAX_EXPANDED_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 10_000
_INFLATE_STEP = 1024 * 1024


class ListStatus(StrEnum):
    """MyAnimeList's five list statuses."""

    WATCHING = "watching"
    COMPLETED = "completed"
    ON_HOLD = "on_hold"
    DROPPED = "dropped"
    PLAN_TO_WATCH = "plan_to_watch"


# The export writes names ("Completed", "On-Hold", "Plan to Watch"); older exports and some
# trackers write MyAnimeList's numeric codes.
_STATUS_NAMES: dict[str, ListStatus] = {
    "watching": ListStatus.WATCHING,
    "1": ListStatus.WATCHING,
    "completed": ListStatus.COMPLETED,
    "2": ListStatus.COMPLETED,
    "on-hold": ListStatus.ON_HOLD,
    "on hold": ListStatus.ON_HOLD,
    "onhold": ListStatus.ON_HOLD,
    "3": ListStatus.ON_HOLD,
    "dropped": ListStatus.DROPPED,
    "4": ListStatus.DROPPED,
    "plan to watch": ListStatus.PLAN_TO_WATCH,
    "plantowatch": ListStatus.PLAN_TO_WATCH,
    "6": ListStatus.PLAN_TO_WATCH,
}

Reason = Literal["too_large", "too_many_entries", "damaged_gzip", "not_xml", "forbidden_markup", "wrong_root"]


class ViewerListError(ValueError):
    """The file cannot be read as a list; `reason` says why, the message says it to the viewer."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One anime on the list: its status and the viewer's score (0 = not scored)."""

    anime_id: int
    status: ListStatus
    score: int = 0


@dataclass
class ViewerList:
    """The entries read (one per anime id) and what was skipped or merged on the way."""

    entries: dict[int, ListEntry] = field(default_factory=dict)
    skipped: int = 0
    duplicates: int = 0

    def by_status(self) -> dict[str, int]:
        """Entries per status, every status present (0 when none)."""
        counts = Counter(entry.status for entry in self.entries.values())
        return {status.value: counts.get(status, 0) for status in ListStatus}


def is_gzip(data: bytes) -> bool:
    """Whether `data` starts with gzip's magic bytes."""
    return data[:2] == GZIP_MAGIC


def read_mal_export(
    data: bytes, *, max_expanded_bytes: int = MAX_EXPANDED_BYTES, max_entries: int = MAX_ENTRIES
) -> ViewerList:
    """Read a MyAnimeList XML export (plain or gzip-compressed, recognised by its magic bytes).

    Raises `ViewerListError` for a file that is not such a list; entries with a missing or malformed
    id (text, zero, negative) or an unknown status are skipped and counted, and an anime listed twice
    keeps its most informative entry (`_better`). The size, root element and entry count are checked
    on the bytes before the parse, so an oversized list is refused without parsing 10,000 entries.
    """
    plain = _decompressed(data, max_expanded_bytes) if is_gzip(data) else data
    if len(plain) > max_expanded_bytes:
        raise ViewerListError("too_large", f"The list is larger than {max_expanded_bytes // 2**20} MB.")
    root = _root_name(plain)
    if root is not None and root != b"myanimelist":
        raise ViewerListError(
            "wrong_root",
            f"The root element is <{root[:40].decode('utf-8', 'replace')}>, not <myanimelist>: "
            "this is not a MyAnimeList list export.",
        )
    # Counted on the bytes first (no parse of a 20,000-entry list), and again while parsing
    # (an element written `<anime >` escapes the byte count).
    if plain.count(b"<anime>") > max_entries:
        raise _too_many(max_entries)
    viewer = ViewerList()
    try:
        for element in _anime_elements(io.BytesIO(plain)):
            if len(viewer.entries) + viewer.skipped + viewer.duplicates >= max_entries:
                raise _too_many(max_entries)
            entry = _entry(element)
            if entry is None:
                viewer.skipped += 1
            elif (kept := viewer.entries.get(entry.anime_id)) is not None:
                viewer.duplicates += 1
                viewer.entries[entry.anime_id] = _better(kept, entry)
            else:
                viewer.entries[entry.anime_id] = entry
    except (
        defusedxml.DTDForbidden,
        defusedxml.EntitiesForbidden,
        defusedxml.ExternalReferenceForbidden,
    ) as exc:
        raise ViewerListError(
            "forbidden_markup",
            "The file declares a DTD or entities; a MyAnimeList export has neither, and they are not read.",
        ) from exc
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise ViewerListError(
            "not_xml", f"The file is not well-formed XML (line {line}, column {column})."
        ) from exc
    return viewer


def _too_many(max_entries: int) -> ViewerListError:
    return ViewerListError(
        "too_many_entries", f"The list has more than {max_entries:,} entries; lists up to that size are read."
    )


def _decompressed(data: bytes, cap: int) -> bytes:
    """gzip `data` inflated, 1 MB at a time so that a gzip bomb stops just past `cap` (a larger result
    means too large) and memory stays near the result's own size."""
    inflater = zlib.decompressobj(wbits=31)
    parts: list[bytes] = []
    size = 0
    pending = data
    try:
        while pending and not inflater.eof and size <= cap:
            part = inflater.decompress(pending, _INFLATE_STEP)
            parts.append(part)
            size += len(part)
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise ViewerListError("damaged_gzip", "The gzip-compressed file is damaged.") from exc
    if size > cap:
        raise ViewerListError("too_large", f"The list is larger than {cap // 2**20} MB once decompressed.")
    if not inflater.eof:
        raise ViewerListError("damaged_gzip", "The gzip-compressed file is cut short.")
    return b"".join(parts)


# The first element's name after the XML declaration, comments and whitespace (a DOCTYPE stops the
# match: the parser then refuses it).
_ROOT = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->)*<([^\s/>!?]+)", re.DOTALL)


def _root_name(data: bytes) -> bytes | None:
    match = _ROOT.match(data, 0, 65_536)
    return match.group(1) if match else None


def _anime_elements(source: io.BytesIO) -> Iterator[Element]:
    """Each complete `<anime>` element, emptied once read. Only end events are asked for: half the
    events of start + end, and the events are the parse's cost (the root was checked on the bytes)."""
    for _, element in safe_xml.iterparse(source, events=("end",), forbid_dtd=True):
        if element.tag == "anime":
            yield element
            element.clear()


def _entry(element: Element) -> ListEntry | None:
    raw_id = (element.findtext("series_animedb_id") or "").strip()
    status = _STATUS_NAMES.get(" ".join((element.findtext("my_status") or "").split()).lower())
    if not raw_id.isascii() or not raw_id.isdigit() or status is None:
        return None
    anime_id = int(raw_id)
    if not 1 <= anime_id < 2**31:
        return None
    raw_score = (element.findtext("my_score") or "").strip()
    score = int(raw_score) if raw_score.isascii() and raw_score.isdigit() else 0
    return ListEntry(anime_id, status, score if 0 <= score <= 10 else 0)


def _better(a: ListEntry, b: ListEntry) -> ListEntry:
    """Of two entries for one anime: the one with a watched status, then with a score, then the later."""

    def rank(entry: ListEntry) -> tuple[bool, int]:
        return entry.status is not ListStatus.PLAN_TO_WATCH, entry.score

    return b if rank(b) >= rank(a) else a


# ---- taste ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListWeights:
    """How statuses and scores become a taste (`taste_of`).

    Completed, Watching and On-Hold entries scored `strong_from` or more are strong likes (weight
    `strong`); those scored `like_from` or more, or not scored, mild likes (`mild`); lower scores are
    dislikes. Dropped is a dislike unless scored `dropped_like_from` or more (then a like by its
    score). Plan to Watch is not taste. Defaults: see the README's "Import your list" section for how
    they were chosen on the development set.
    """

    strong: float = 1.0
    mild: float = 0.75
    strong_from: int = 8
    like_from: int = 6
    dropped_like_from: int = 7

    def weight(self, entry: ListEntry) -> float | None:
        """The entry's like weight, 0.0 for a dislike, None when it is not taste (Plan to Watch)."""
        if entry.status is ListStatus.PLAN_TO_WATCH:
            return None
        if entry.status is ListStatus.DROPPED and entry.score < self.dropped_like_from:
            return 0.0
        if entry.score >= self.strong_from:
            return self.strong
        if entry.score >= self.like_from or entry.score == 0:
            return self.mild
        return 0.0


DEFAULT_WEIGHTS = ListWeights()


def taste_of(entries: Iterable[ListEntry], weights: ListWeights = DEFAULT_WEIGHTS) -> Taste:
    """The `Taste` a list implies (`ListWeights`)."""
    liked: dict[int, float] = {}
    disliked: list[int] = []
    for entry in entries:
        weight = weights.weight(entry)
        if weight is None:
            continue
        if weight > 0:
            liked[entry.anime_id] = weight
        else:
            disliked.append(entry.anime_id)
    return Taste(liked, tuple(disliked))


# ---- continue watching ------------------------------------------------------------------------

# A franchise's next entries, in the order they are offered: its series (TV seasons, web series), then
# its movies, then its side entries, each in release order. Series first: a long show's movies come
# out between its seasons (Naruto's three before Shippuuden), and the next season is what a viewer
# who finished one is after.
CONTINUE_ORDER: tuple[frozenset[AnimeType], ...] = (
    frozenset({AnimeType.TV, AnimeType.ONA}),
    frozenset({AnimeType.MOVIE}),
    frozenset({AnimeType.OVA, AnimeType.SPECIAL}),
)
_STARTED = (ListStatus.WATCHING, ListStatus.COMPLETED)


def _of_types(animes: Iterable[Anime], kinds: AbstractSet[AnimeType]) -> list[Anime]:
    return [a for a in animes if a.type in kinds]


@dataclass(frozen=True, slots=True)
class NextEntry:
    """An unwatched entry of a franchise the viewer started, and the latest entry they watched of it."""

    anime: Anime
    after: Anime


def next_in_franchises(
    viewer: ViewerList,
    catalogue: Catalogue,
    siblings_of: Callable[[int], AbstractSet[int]],
    hidden: AbstractSet[int] = frozenset(),
    *,
    per_franchise: int = 3,
    limit: int = 30,
) -> list[NextEntry]:
    """The next unwatched entries of each franchise the viewer completed or is watching.

    Franchises in the viewer's order: watching first, then completed by score (best first). Within one,
    up to `per_franchise` entries not on the list as watched (Plan to Watch counts as unwatched): TV
    seasons and web series, then movies, then OVAs and specials, each in release order
    (`CONTINUE_ORDER`); never a `hidden` anime (`Catalogue.unlisted_ids`).
    """
    entries = viewer.entries
    started = sorted(
        (e for e in entries.values() if e.status in _STARTED and e.anime_id in catalogue),
        key=lambda e: (e.status is not ListStatus.WATCHING, -e.score, e.anime_id),
    )
    done: set[int] = set()
    found: list[NextEntry] = []
    for entry in started:
        if entry.anime_id in done:
            continue
        family = siblings_of(entry.anime_id) | {entry.anime_id}
        done |= family
        watched = [
            catalogue.by_id(a)
            for a in family
            if a in entries and entries[a].status is not ListStatus.PLAN_TO_WATCH and a in catalogue
        ]
        after = max(watched, key=release_key)
        unwatched = [catalogue.by_id(a) for a in family - {w.id for w in watched} - hidden if a in catalogue]
        offer = [a for kinds in CONTINUE_ORDER for a in sorted(_of_types(unwatched, kinds), key=release_key)]
        found += [NextEntry(anime, after) for anime in offer[:per_franchise]]
        if len(found) >= limit:
            break
    return found[:limit]
