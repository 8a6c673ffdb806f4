"""Story text keyed by MyAnimeList id (an optional ingest input) → the catalogue's `synopsis` field.

Accepted files (optionally gzip/zstd/zip-compressed, detected by magic bytes as for catalogues):

* CSV with a header naming an id column and a synopsis column, as the widely used MyAnimeList
  exports have: `MAL_ID`, `anime_id`, `uid`, `mal_id` or `id`; `synopsis`, `Synopsis` or `sypnopsis`
  (sic: a well-known Kaggle export spells it so). Other columns are ignored; a tab-separated header
  is read as TSV.
* JSON lines (or one JSON array) of objects with `id`/`mal_id` (also `anime_id`, `uid`) and
  `synopsis`.

A malformed *file* (not UTF-8, no recognisable header, broken CSV quoting, no parseable line) raises
`CatalogueFormatError` naming the file and the line. A bad *row* is skipped and counted in the
`SynopsisReport` by reason: a non-numeric or out-of-range id, an id the catalogue does not have, a
duplicate id (the first row wins), empty or placeholder text ("No synopsis information has been
added..."), or text over `HARD_STRING_CHARS`. Text is cleaned: HTML tags and entities, MAL's
attributions ("[Written by MAL Rewrite]", a trailing "(Source: ANN)"), control and invisible
characters, whitespace; then capped at `MAX_SYNOPSIS_CHARS` at a sentence or word boundary.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from anime_recommender.catalogue import Catalogue, with_fields
from anime_recommender.loaders.formats import CatalogueText, first_nonspace, json_objects, read_catalogue_file
from anime_recommender.loaders.report import SkipTally
from anime_recommender.loaders.sanitise import HARD_STRING_CHARS, is_clean, short, slow_clean
from anime_recommender.source_format import MAX_MAL_ID, CatalogueFormatError

MAX_SYNOPSIS_CHARS: Final = 2_000
# Header names (compared case-insensitively), in order of preference when a file has several.
ID_COLUMNS: Final = ("mal_id", "anime_id", "uid", "malid", "id")
SYNOPSIS_COLUMNS: Final = ("synopsis", "sypnopsis")

_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]{0,200}>")
_BREAK_TAG = re.compile(r"<\s*(?:br|/p|p)\s*/?\s*>", re.IGNORECASE)
_WRITTEN_BY = re.compile(r"\[\s*Written by [^\]]{0,100}\]", re.IGNORECASE)
_SOURCE_NOTE = re.compile(r"[(\[]\s*(?:Source|From|Via)\s*:[^)\]]{0,120}[)\]]\s*$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^no (?:synopsis|summary)\b.{0,40}\b(?:added|available|yet)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*(?=\s)")


@dataclass(slots=True, kw_only=True)
class SynopsisReport(SkipTally):
    """What reading a synopsis file and merging it did: counts by outcome, and skipped rows."""

    source: str
    format: str = "unknown"
    compression: str | None = None
    rows_read: int = 0
    merged: int = 0
    cleaned: int = 0  # texts that needed HTML, boilerplate or whitespace cleaning
    truncated: int = 0  # texts cut to MAX_SYNOPSIS_CHARS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: counts first, then the itemised skips."""
        return {
            "source": self.source,
            "format": self.format,
            "compression": self.compression,
            "rows_read": self.rows_read,
            "merged": self.merged,
            "cleaned": self.cleaned,
            "truncated": self.truncated,
            **self.skips_dict(),
        }

    def summary(self) -> str:
        """One line for humans."""
        reasons = ", ".join(f"{k} {v}" for k, v in self.skipped_by_reason.most_common())
        return (
            f"{self.merged} synopses merged from {self.source} ({self.rows_read} rows; "
            f"skipped {self.skipped_count}{f' ({reasons})' if reasons else ''}; "
            f"{self.cleaned} cleaned, {self.truncated} truncated)"
        )


def clean_synopsis(raw: str) -> tuple[str, bool]:
    """(clean text, whether it was cut): entities, tags, MAL attributions and invisible characters
    removed, whitespace collapsed, capped at `MAX_SYNOPSIS_CHARS`. Empty for a placeholder."""
    text = html.unescape(_BREAK_TAG.sub(" ", raw)) if ("<" in raw or "&" in raw) else raw
    text = _TAG.sub(" ", text) if "<" in text else text
    text = _WRITTEN_BY.sub(" ", text)
    text = text if is_clean(text) else slow_clean(text)
    text = _SOURCE_NOTE.sub("", text).rstrip()
    if _PLACEHOLDER.match(text):
        return "", False
    if len(text) <= MAX_SYNOPSIS_CHARS:
        return text, False
    return _cap(text, MAX_SYNOPSIS_CHARS), True


def _cap(text: str, cap: int) -> str:
    """`text` cut to at most `cap` characters: after the last sentence that fits when that keeps at
    least half, else at the last word boundary with "..."."""
    head = text[: cap + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= cap]
    if ends and ends[-1] >= cap // 2:
        return head[: ends[-1]]
    cut = head[: cap - 3].rsplit(" ", 1)[0].rstrip(",;:-–—")
    return cut + "..."


def read_synopses(path: Path) -> tuple[dict[int, str], SynopsisReport]:
    """MAL id → clean synopsis from a CSV or JSONL file, and the report of what was skipped.

    Raises:
        CatalogueFormatError: the file as a whole is malformed (named with its line).
        OSError: the file cannot be read.
    """
    return synopses_from(read_catalogue_file(path))


def synopses_from(content: CatalogueText) -> tuple[dict[int, str], SynopsisReport]:
    """`read_synopses` of a file already read (`formats.read_catalogue_file`)."""
    path = content.path
    report = SynopsisReport(source=str(path), compression=content.compression)
    text = content.text
    start = first_nonspace(text)
    if text[start : start + 1] in ("{", "["):
        report.format = "jsonl"
        rows = _json_rows(text, path, report)
    else:
        report.format = "csv"
        rows = _csv_rows(text, path, report)
    found: dict[int, str] = {}
    first_line: dict[int, str] = {}
    for position, raw_id, raw_text in rows:
        report.rows_read += 1
        anime_id = mal_id_of(raw_id)
        if isinstance(anime_id, str):
            report.skip(position, anime_id)
            continue
        if anime_id in first_line:
            report.skip(
                position, f"duplicate id: {first_line[anime_id]} has it too (the first is kept)", anime_id
            )
            continue
        if raw_text is None:
            report.skip(position, "no synopsis: the record has none", anime_id)
            continue
        if not isinstance(raw_text, str):
            report.skip(position, f"no synopsis: expected text, got {short(raw_text)}", anime_id)
            continue
        if len(raw_text) > HARD_STRING_CHARS:
            report.skip(
                position,
                f"synopsis too long: {len(raw_text)} characters exceeds {HARD_STRING_CHARS}",
                anime_id,
            )
            continue
        clean, truncated = clean_synopsis(raw_text)
        if not clean:
            blank = not raw_text.strip()
            reason = "empty synopsis: blank" if blank else "empty synopsis: placeholder or markup only"
            report.skip(position, reason, anime_id)
            continue
        first_line[anime_id] = position
        if truncated:
            report.truncated += 1
        elif clean != raw_text:
            report.cleaned += 1
        found[anime_id] = clean
    if (
        report.rows_read
        and not found
        and report.skipped_by_reason.get("not a JSON object") == report.rows_read
    ):
        raise CatalogueFormatError(
            path, "whole file", f"none of its {report.rows_read} lines is a JSON object"
        )
    return found, report


def merge_synopses(
    catalogue: Catalogue, synopses: Mapping[int, str], report: SynopsisReport, *, keep_existing: bool = False
) -> Catalogue:
    """`catalogue` with each anime's `synopsis` set from `synopses` (keyed by MAL id = catalogue id).

    Ids the catalogue lacks are skipped and counted in `report` ("unknown id").

    Args:
        keep_existing: an anime that has a synopsis already keeps it (a delta update: text the
            catalogue source carries itself wins over the file's); `report.merged` counts only
            the texts set.
    """
    if keep_existing:
        merged_catalogue, merged = fill_synopses(catalogue, synopses)
    else:
        merged = 0
        items = []
        for anime in catalogue:
            text = synopses.get(anime.id)
            if text is not None:
                anime = with_fields(anime, synopsis=text)
                merged += 1
            items.append(anime)
        merged_catalogue = Catalogue(items)
    for anime_id in sorted(set(synopses).difference(catalogue.ids)):
        report.skip(
            f"id {anime_id}", "unknown id: no anime with this MyAnimeList id in the catalogue", anime_id
        )
    report.merged = merged
    return merged_catalogue


def fill_synopses(catalogue: Catalogue, synopses: Mapping[int, str]) -> tuple[Catalogue, int]:
    """`catalogue` with a synopsis from `synopses` for each anime that has none, and how many were set.

    Anime with story text of their own keep it; ids the catalogue lacks are ignored. `catalogue`
    itself is returned when nothing is set (a delta compares it line by line with its base).
    """
    filled = 0
    items = []
    for anime in catalogue:
        if anime.synopsis is None:
            text = synopses.get(anime.id)
            if text is not None:
                anime = with_fields(anime, synopsis=text)
                filled += 1
        items.append(anime)
    return (Catalogue(items), filled) if filled else (catalogue, 0)


def mal_id_of(raw: object) -> int | str:
    """The MAL id of a cell (an int, or a string of digits; "12.0" too), or the reason it is not one."""
    value: object = raw
    if isinstance(raw, str):
        cell = raw.strip()
        if cell.endswith(".0"):
            cell = cell[:-2]
        if not cell.isdecimal() or len(cell) > 12:
            return f"bad id: not a number ({short(raw)})"
        value = int(cell)
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    if isinstance(value, bool) or not isinstance(value, int):
        return f"bad id: not a number ({short(raw)})"
    if not 1 <= value <= MAX_MAL_ID:
        return f"bad id: {value} outside 1..{MAX_MAL_ID}"
    return value


def _pick(names: list[str], wanted: tuple[str, ...]) -> int | None:
    lowered = [name.strip().lower() for name in names]
    for candidate in wanted:
        if candidate in lowered:
            return lowered.index(candidate)
    return None


def _csv_rows(text: str, path: Path, report: SynopsisReport) -> Iterator[tuple[str, object, object]]:
    """(position, id cell, synopsis cell) per CSV record; header and quoting errors are file errors,
    a record too short for both columns is skipped into `report`."""
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    # strict: an unterminated quote is an error at its line, not a record that swallows the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise CatalogueFormatError(path, "line 1", "empty file: expected a CSV header")
        id_col, text_col = _pick(header, ID_COLUMNS), _pick(header, SYNOPSIS_COLUMNS)
        if id_col is None or text_col is None:
            raise CatalogueFormatError(
                path,
                "line 1",
                f"header {short(header)} needs an id column ({', '.join(ID_COLUMNS)}) and a synopsis "
                f"column ({', '.join(SYNOPSIS_COLUMNS)}), compared case-insensitively",
            )
        needed = max(id_col, text_col) + 1
        for row in reader:
            position = f"line {reader.line_num}"
            if not row or row == [""]:
                continue
            if len(row) < needed:
                report.rows_read += 1
                report.skip(position, f"short row: {len(row)} fields, the header needs at least {needed}")
                continue
            yield position, row[id_col], row[text_col]
    except csv.Error as exc:
        raise CatalogueFormatError(path, f"line {reader.line_num}", f"malformed CSV: {exc}") from exc


def _json_rows(text: str, path: Path, report: SynopsisReport) -> Iterator[tuple[str, object, object]]:
    """(position, id, synopsis) per JSON object: JSON lines, or one JSON array of objects."""
    for position, item in json_objects(text, path):
        yield from _json_item(position, item, report)


def _json_item(position: str, item: object, report: SynopsisReport) -> Iterator[tuple[str, object, object]]:
    if not isinstance(item, dict):
        what = f"unparseable ({item})" if isinstance(item, Exception) else short(item)
        report.rows_read += 1
        report.skip(position, f"not a JSON object: {what}")
        return
    keys = {str(key).lower(): key for key in item}
    id_key = next((keys[k] for k in ID_COLUMNS if k in keys), None)
    text_key = next((keys[k] for k in SYNOPSIS_COLUMNS if k in keys), None)
    if id_key is None:
        report.rows_read += 1
        report.skip(position, f"bad id: none of {', '.join(ID_COLUMNS)} among its keys {short(sorted(keys))}")
        return
    yield position, item[id_key], None if text_key is None else item[text_key]
