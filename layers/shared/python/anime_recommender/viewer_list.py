"""A viewer's own anime list, as MyAnimeList's XML export writes it, and the taste it implies. No HTTP.

Every anime site and tracker (MyAnimeList, AniList, Kitsu, Anime-Planet) exports and imports this
file: `<myanimelist><anime><series_animedb_id>…<my_status>…<my_score>…</anime>…</myanimelist>`,
plain or gzip-compressed. `read_mal_export` reads it safely: a streaming parse with defusedxml (no
DTD, no entities, no external references, so no entity-expansion bomb), the decompressed size and
the number of entries capped (a gzip bomb stops at the cap), one `<anime>` element in memory at a
time. Malformed entries are skipped and counted, duplicates merged and counted.

`taste_of` turns the list into a `similarity.Taste` (`ListWeights`), and `next_in_franchises` finds
the unwatched next entries of the franchises the viewer completed or is watching.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
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
MAX_EXPANDED_BYTES = 32 * 1024 * 1024
MAX_ENTRIES = 10_000
_READ_CHUNK = 64 * 1024


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
    keeps its most informative entry (`_better`).
    """
    source: io.BufferedIOBase = io.BytesIO(data)
    if is_gzip(data):
        source = gzip.GzipFile(fileobj=source, mode="rb")
    capped = _CappedReader(source, max_expanded_bytes)
    viewer = ViewerList()
    try:
        for element in _anime_elements(capped):
            if len(viewer.entries) + viewer.skipped + viewer.duplicates >= max_entries:
                raise ViewerListError(
                    "too_many_entries",
                    f"The list has more than {max_entries:,} entries; lists up to that size are read.",
                )
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
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ViewerListError("damaged_gzip", "The gzip-compressed file is damaged or cut short.") from exc
    return viewer


def _anime_elements(source: io.RawIOBase) -> Iterator[Element]:
    """Each complete `<anime>` child of the `<myanimelist>` root, cleared once read (bounded memory)."""
    depth = 0
    root: Element | None = None
    for event, element in safe_xml.iterparse(source, events=("start", "end"), forbid_dtd=True):
        if event == "start":
            depth += 1
            if depth == 1:
                if element.tag != "myanimelist":
                    raise ViewerListError(
                        "wrong_root",
                        f"The root element is <{str(element.tag)[:40]}>, not <myanimelist>: "
                        "this is not a MyAnimeList list export.",
                    )
                root = element
            continue
        depth -= 1
        if depth == 1 and element.tag == "anime":
            yield element
        if depth == 1 and root is not None:
            root.clear()


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


class _CappedReader(io.RawIOBase):
    """A read-only stream over `source` that fails once more than `cap` bytes have come out of it."""

    def __init__(self, source: io.BufferedIOBase, cap: int) -> None:
        self._source = source
        self._cap = cap
        self._read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(_READ_CHUNK if size is None or size < 0 else min(size, _READ_CHUNK))
        self._read += len(chunk)
        if self._read > self._cap:
            raise ViewerListError(
                "too_large", f"The list is larger than {self._cap // (1024 * 1024)} MB once decompressed."
            )
        return chunk


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


def taste_of(entries: Iterator[ListEntry] | list[ListEntry], weights: ListWeights = DEFAULT_WEIGHTS) -> Taste:
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

# TV seasons, movies and web series come before the side entries of a franchise.
MAIN_TYPES = frozenset({AnimeType.TV, AnimeType.MOVIE, AnimeType.ONA})
SIDE_TYPES = frozenset({AnimeType.OVA, AnimeType.SPECIAL})
_STARTED = (ListStatus.WATCHING, ListStatus.COMPLETED)


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
    seasons, movies and web series in release order, then OVAs and specials in release order; never a
    `hidden` anime (`Catalogue.unlisted_ids`).
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
        main = sorted((a for a in unwatched if a.type in MAIN_TYPES), key=release_key)
        side = sorted((a for a in unwatched if a.type in SIDE_TYPES), key=release_key)
        found += [NextEntry(anime, after) for anime in (main + side)[:per_franchise]]
        if len(found) >= limit:
            break
    return found[:limit]
