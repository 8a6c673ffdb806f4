"""Anime ids: the MyAnimeList id from a record's sources, derived ids, and one record per id.

The MyAnimeList id comes from a `https://myanimelist.net/anime/<id>` source. An entry without a MAL
source gets a *derived* id: blake2b of its preferred other source URL (anilist, then anidb, kitsu,
...; see `_PROVIDER_PREFERENCE`) mapped into [1_000_000_000, 2_000_000_000). That range is far
above any MAL id (validated below 1e9) and inside int32, which the neighbour and triplet arrays use.
Two different URLs hashing to the same id are resolved by probing upwards, the URLs taken in sorted
order, so the result does not depend on record order (an id only moves if a new colliding URL that
sorts first appears, which is rare: ~n²/2e9). Duplicate ids keep the record with most information
(tie → first) and are listed in the report.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final, TypeAlias

from anime_recommender.catalogue import Anime, AnimeType, with_fields
from anime_recommender.loaders.report import DuplicateRecord, LoadReport
from anime_recommender.source_format import MAX_MAL_ID, SYNTHETIC_ID_BASE, SYNTHETIC_ID_SPAN

#: What a record parser hands on: (position, anime, derived-id key when it has no MAL id).
ParsedRecord: TypeAlias = tuple[str, Anime, str | None]

_MAL_RE = re.compile(r"^https?://(?:www\.)?myanimelist\.net/anime/([^/?#]*)", re.IGNORECASE)
_PROVIDER_PREFERENCE: Final = (
    "anilist.co",
    "anidb.net",
    "kitsu.app",
    "kitsu.io",
    "anime-planet.com",
    "animenewsnetwork.com",
    "livechart.me",
    "anisearch.com",
    "notify.moe",
    "simkl.com",
    "animecountdown.com",
)


def mal_id_from_sources(sources: Iterable[str]) -> int | None:
    """The MyAnimeList id among source URLs (smallest, if several); None when there is none.

    Raises `ValueError` for a MAL URL whose id is not an integer in 1..999,999,999.
    """
    found: list[int] = []
    for url in sources:
        match = _MAL_RE.match(url)
        if match is None:
            continue
        raw = match.group(1)
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_MAL_ID:
            raise ValueError(f"bad MyAnimeList id in {url[:100]!r}")
        found.append(int(raw))
    return min(found) if found else None


def _provider_rank(url: str) -> tuple[int, str]:
    host = url.split("://", 1)[-1].split("/", 1)[0].lower().removeprefix("www.")
    try:
        return _PROVIDER_PREFERENCE.index(host), url
    except ValueError:
        return len(_PROVIDER_PREFERENCE), url


def derived_id_key(sources: Iterable[str]) -> str | None:
    """The source URL a derived id is hashed from: the most preferred provider's, normalised."""
    urls = [u.strip().rstrip("/") for u in sources if u.strip()]
    if not urls:
        return None
    return min(urls, key=_provider_rank)


def derived_id(key: str) -> int:
    """Deterministic id in [1e9, 2e9) for an anime without a MAL source (before collision probing)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return SYNTHETIC_ID_BASE + int.from_bytes(digest, "big") % SYNTHETIC_ID_SPAN


def assign_derived_ids(keys: Iterable[str]) -> dict[str, int]:
    """Collision-free derived ids for distinct keys; probing in sorted key order, so order-independent."""
    taken: dict[int, str] = {}
    out: dict[str, int] = {}
    for key in sorted(set(keys)):
        candidate = derived_id(key)
        while candidate in taken:
            candidate = SYNTHETIC_ID_BASE + (candidate - SYNTHETIC_ID_BASE + 1) % SYNTHETIC_ID_SPAN
        taken[candidate] = key
        out[key] = candidate
    return out


def _info(anime: Anime) -> tuple[int, int]:
    """How much a record knows: filled fields, then list lengths (for duplicate resolution)."""
    filled = sum(
        v is not None
        for v in (anime.episodes, anime.status, anime.year, anime.season, anime.score, anime.members)
    )
    filled += sum(bool(v) for v in (anime.picture, anime.thumbnail, anime.duration_s))
    filled += anime.type is not AnimeType.UNKNOWN
    return filled, len(anime.tags) + len(anime.synonyms) + len(anime.sources) + len(anime.related)


def resolve_ids(parsed: list[ParsedRecord], report: LoadReport) -> list[Anime]:
    """Assign derived ids, then keep one record per id (most information; tie → first). O(n)."""
    keys = {key for _, _, key in parsed if key is not None}
    assigned = assign_derived_ids(keys)
    report.derived_ids = sum(1 for _, _, key in parsed if key is not None)
    report.derived_id_collisions = sum(1 for key, value in assigned.items() if value != derived_id(key))
    best: dict[int, tuple[str, Anime]] = {}
    for position, anime, key in parsed:
        if key is not None:
            anime = with_fields(anime, id=assigned[key])
        current = best.get(anime.id)
        if current is None:
            best[anime.id] = (position, anime)
            continue
        # Information is only measured on a clash, so the common path stays one dict lookup.
        info, current_info = _info(anime), _info(current[1])
        if info > current_info:
            report.duplicates.append(
                DuplicateRecord(anime.id, position, current[0], f"more information ({info} > {current_info})")
            )
            best[anime.id] = (position, anime)
        else:
            why = "equal information, first kept" if info == current_info else f"less information ({info})"
            report.duplicates.append(DuplicateRecord(anime.id, current[0], position, why))
    return [anime for _, anime in best.values()]
