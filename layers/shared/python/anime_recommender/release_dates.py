"""Release dates (MAL id → year and season) from npm `bangumi-data` (CC BY 4.0), and their bundle file.

The offline build reads bangumi-data's `data.json` (`load_bangumi_dates`) to fill the years and
seasons a catalogue lacks (`load_catalogue(release_dates=...)`), and ships the extracted dates in the
bundle as `release_dates.json` (`save_release_dates`), so a delta update validates new catalogues with
exactly the build's dates (`load_release_dates`) and without the npm package.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Final

from anime_recommender.source_format import MAX_MAL_ID, YEAR_RANGE, CatalogueFormatError

log = logging.getLogger(__name__)

SEASONS: Final = ("winter", "spring", "summer", "fall")
BANGUMI_LICENCE: Final = "CC-BY-4.0"
BANGUMI_ATTRIBUTION: Final = (
    "Release dates from bangumi-data (https://github.com/bangumi-data/bangumi-data), "
    "licensed CC BY 4.0 (http://creativecommons.org/licenses/by/4.0/)."
)
BANGUMI_ENV: Final = "ANIME_BANGUMI_DATA"
DEFAULT_BANGUMI_RELATIVE: Final = Path(".work/npm/node_modules/bangumi-data/dist/data.json")
RELEASE_DATES_FORMAT = 1

_JST = timezone(timedelta(hours=9))  # bangumi-data stores Japanese air times as UTC


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


def default_bangumi_path() -> Path:
    """$ANIME_BANGUMI_DATA, else `.work/npm/node_modules/bangumi-data/dist/data.json` under the cwd."""
    env = os.environ.get(BANGUMI_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_BANGUMI_RELATIVE


def local_release_dates() -> ReleaseDates | None:
    """The dates of the bangumi-data installed where this runs (`default_bangumi_path`); None when absent.

    Raises:
        CatalogueFormatError: the file is there but malformed.
    """
    candidate = default_bangumi_path()
    if candidate.is_file():
        return load_bangumi_dates(candidate)
    log.info(f"bangumi-data not found at {candidate}; years not enriched")
    return None


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


def save_release_dates(path: Path, release: ReleaseDates) -> None:
    """Write release dates as compact, deterministic JSON: ids grouped by "<year>-<season>", sorted.

    The source path is not written (it names the build machine's file): the same dates give the same
    bytes anywhere. Reading back (`load_release_dates`) gives `source` = the file read.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for anime_id, (year, season) in release.dates.items():
        groups.setdefault((year, SEASONS.index(season)), []).append(anime_id)
    doc = {
        "format": RELEASE_DATES_FORMAT,
        "package": "bangumi-data",
        "version": release.version,
        "licence": release.licence,
        "attribution": release.attribution,
        "count": len(release.dates),
        "by_season": {f"{y}-{SEASONS[s]}": sorted(groups[(y, s)]) for y, s in sorted(groups)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def load_release_dates(path: Path) -> ReleaseDates:
    """Read what `save_release_dates` wrote; ValueError naming the file when it is malformed."""

    def bad(reason: str) -> ValueError:
        return ValueError(f"{path}: not a valid release-dates file ({reason})")

    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(str(exc)) from exc
    if not isinstance(doc, dict) or doc.get("format") != RELEASE_DATES_FORMAT:
        raise bad(f"expected an object with format {RELEASE_DATES_FORMAT}")
    version, licence, attribution = doc.get("version"), doc.get("licence"), doc.get("attribution")
    if not (version is None or isinstance(version, str)):
        raise bad("version is not a string")
    if not isinstance(licence, str) or not isinstance(attribution, str):
        raise bad("licence and attribution must be strings")
    groups = doc.get("by_season")
    if not isinstance(groups, dict):
        raise bad("by_season is not an object")
    dates: dict[int, tuple[int, str]] = {}
    for key, ids in groups.items():
        year_text, _, season = key.partition("-")
        year = int(year_text) if year_text.isdigit() else 0
        if not (YEAR_RANGE[0] <= year <= YEAR_RANGE[1] and season in SEASONS):
            raise bad(f"{key!r} is not '<year>-<season>'")
        if not isinstance(ids, list):
            raise bad(f"{key}: expected a list of ids")
        for anime_id in ids:
            # bool is an int subclass: `true` is no id.
            if type(anime_id) is not int or not 1 <= anime_id <= MAX_MAL_ID:
                raise bad(f"{key}: {anime_id!r} is not a MyAnimeList id")
            if anime_id in dates:
                raise bad(f"id {anime_id} has two dates")
            dates[anime_id] = (year, season)
    if doc.get("count") != len(dates):
        raise bad(f"count {doc.get('count')!r} != {len(dates)} ids listed")
    return ReleaseDates(
        dates=dates, version=version, source=str(path), licence=licence, attribution=attribution
    )
