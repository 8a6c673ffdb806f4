"""Story text keyed by MyAnimeList id (an optional ingest input) → the catalogue's story fields.

One enrichment step between the catalogue loaders and every later stage: what a production deployment
knows about each anime beside its catalogue (plot summary, fine tags, other titles, relations, studios,
content rating) is merged onto the `Anime` records, and the teacher, the encoder text, the search
indexes and the franchise lists read it from there.

Accepted files (optionally gzip/zstd/zip-compressed, detected by magic bytes as for catalogues):

* JSON lines (or one JSON array) of objects with `mal_id` (also `id`, `anime_id`, `uid`) and any of
  `title, synopsis, tags, synonyms, title_english, studios, source, rating, related_mal_ids, type,
  year, season, episodes, status` — the README's "Story text: bring your own" documents the shape;
* the MyAnimeList-export synopsis CSV (an id and a synopsis column), read by `loaders.synopses`.

Merging rules (`merge_storytext`):

* tags: the base's genres and the file's tags, normalised to one spelling per label (case,
  whitespace, `TAG_ALIASES` such as Science Fiction → sci-fi, School Life → school), base first;
* synonyms: union (the file's English title is kept apart in `title_english`);
* synopsis: cleaned (`clean_synopsis`: markup, "[Written by MAL Rewrite]", placeholders);
* content rating: MyAnimeList's label as a code (`CONTENT_RATINGS`); relations: `related_mal_ids`
  become MyAnimeList URLs in `related`, beside manami's own links (one field for both);
* type, year, season, episodes: the base wins where it has a value, the file fills gaps (`TV Special`
  → special, `TV_SHORT` → TV, `CM`/`PV` → promotional, which default lists leave out);
* with `adds`, anime only the file has join the catalogue (without score or members); records with
  no title are then skipped and counted.

A malformed *file* raises `CatalogueFormatError` naming the file and the line; a bad *record* or
*field* is skipped and counted in the `StoryTextReport`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from anime_recommender.catalogue import Anime, AnimeType, Catalogue, with_fields
from anime_recommender.loaders.formats import first_nonspace, json_objects, read_catalogue_file
from anime_recommender.loaders.report import MAX_LISTED_SKIPS, SkipTally
from anime_recommender.loaders.sanitise import (
    HARD_STRING_CHARS,
    MAX_EPISODES,
    MAX_TAG_CHARS,
    MAX_TITLE_CHARS,
    RecordError,
    int_field,
    is_clean,
    short,
    slow_clean,
)
from anime_recommender.loaders.synopses import ID_COLUMNS, clean_synopsis, mal_id_of, synopses_from
from anime_recommender.source_format import YEAR_RANGE, CatalogueFormatError

# More than this many entries in one list field is not story text (a hostile or corrupt record).
MAX_ITEMS_PER_FIELD: Final = 200
MAX_SYNONYMS_KEPT: Final = 30
MAL_URL: Final = "https://myanimelist.net/anime/{}"

#: Near-duplicate labels (lower case) → the one spelling kept: the base catalogue's where it has one.
TAG_ALIASES: Final[Mapping[str, str]] = {
    "science fiction": "sci-fi",
    "sci fi": "sci-fi",
    "scifi": "sci-fi",
    "school life": "school",
    "demon": "demons",
    "zombie": "zombies",
    "mahou shoujo": "magical girl",
    "girls love": "shoujo ai",
    "boys love": "shounen ai",
    "avant garde": "dementia",
    "food": "gourmet",
    "political": "politics",
    "law": "law and order",
    "workplace": "working life",
    "super powers": "super power",
    "superpower": "super power",
}

# MyAnimeList's rating labels ("PG-13 - Teens 13 or older", or the short "PG-13") → `CONTENT_RATINGS`.
_RATING_CODES: Final[Mapping[str, str]] = {
    "g": "g",
    "pg": "pg",
    "pg-13": "pg13",
    "pg13": "pg13",
    "r": "r",
    "r+": "r_plus",
    "r_plus": "r_plus",
    "rx": "rx",
}
# Story-text type labels beyond `AnimeType.parse`'s own.
_TYPE_ALIASES: Final[Mapping[str, AnimeType]] = {
    "TV_SHORT": AnimeType.TV,
    "TV SHORT": AnimeType.TV,
    "TV SPECIAL": AnimeType.SPECIAL,
    "TV_SPECIAL": AnimeType.SPECIAL,
}
_SEASONS: Final = frozenset({"winter", "spring", "summer", "fall"})

#: Fields a story-text record can carry (the report counts each).
STORY_INPUT_FIELDS: Final = (
    "synopsis",
    "tags",
    "synonyms",
    "title_english",
    "studios",
    "content_rating",
    "related",
    "type",
    "year",
    "season",
    "episodes",
)


@dataclass(frozen=True, slots=True)
class StoryText:
    """What a story-text file says about one anime (already cleaned); None/empty where it says nothing."""

    title: str | None = None
    synopsis: str | None = None
    tags: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    title_english: str | None = None
    studios: tuple[str, ...] = ()
    content_rating: str | None = None
    related_ids: tuple[int, ...] = ()
    type: AnimeType = AnimeType.UNKNOWN
    year: int | None = None
    season: str | None = None
    episodes: int | None = None
    status: str | None = None


@dataclass(slots=True, kw_only=True)
class StoryTextReport(SkipTally):
    """What reading a story-text file and merging it did: counts per field and outcome, skipped rows."""

    source: str
    format: str = "unknown"
    compression: str | None = None
    rows_read: int = 0
    records: int = 0  # distinct ids read
    matched: int = 0  # records merged onto a catalogue anime
    added: int = 0  # anime only the file has, added (`adds`)
    not_added: int = 0  # anime only the file has, left out (no `adds`)
    synopses_cleaned: int = 0
    synopses_truncated: int = 0
    fields_in_file: Counter[str] = field(default_factory=Counter)
    fields_merged: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: counts first, then the itemised skips."""
        return {
            "source": self.source,
            "format": self.format,
            "compression": self.compression,
            "rows_read": self.rows_read,
            "records": self.records,
            "matched": self.matched,
            "added": self.added,
            "not_added": self.not_added,
            "synopses_cleaned": self.synopses_cleaned,
            "synopses_truncated": self.synopses_truncated,
            "fields_in_file": {k: self.fields_in_file[k] for k in STORY_INPUT_FIELDS},
            "fields_merged": {k: self.fields_merged[k] for k in STORY_INPUT_FIELDS},
            **self.skips_dict(),
        }

    def summary(self) -> str:
        """One line for humans."""
        merged = ", ".join(
            f"{k} {self.fields_merged[k]}" for k in STORY_INPUT_FIELDS if self.fields_merged[k]
        )
        reasons = ", ".join(f"{k} {v}" for k, v in self.skipped_by_reason.most_common())
        return (
            f"story text from {self.source}: {self.records} records, {self.matched} matched, "
            f"{self.added} added, {self.not_added} not in the catalogue; fields set: {merged or 'none'}; "
            f"skipped {self.skipped_count}{f' ({reasons})' if reasons else ''}"
        )


# --------------------------------------------------------------------------- normalisation


def tag_key(tag: str) -> str:
    """One spelling per label: lower case, single spaces, `TAG_ALIASES` applied ('' for no label)."""
    text = tag if is_clean(tag) else slow_clean(tag)
    key = " ".join(text.lower().split())
    return TAG_ALIASES.get(key, key)


def merge_tags(*groups: Iterable[str]) -> tuple[str, ...]:
    """The tags of every group normalised by `tag_key`, de-duplicated in first-seen order."""
    seen: dict[str, None] = {}
    for group in groups:
        for tag in group:
            key = tag_key(tag)
            if key and len(key) <= MAX_TAG_CHARS:
                seen.setdefault(key, None)
    return tuple(seen)


def rating_code(label: object) -> str | None:
    """MyAnimeList's content rating label ('PG-13 - Teens 13 or older', 'Rx - Hentai', 'R') → its code."""
    if not isinstance(label, str):
        return None
    head = label.strip().split(" - ", 1)[0].strip().lower()
    return _RATING_CODES.get(head)


def story_type(label: object) -> AnimeType:
    """A story-text type label → `AnimeType` (TV_SHORT → TV, TV Special → special, CM/PV → promotional)."""
    if not isinstance(label, str) or not label.strip():
        return AnimeType.UNKNOWN
    alias = _TYPE_ALIASES.get(label.strip().upper())
    return alias if alias is not None else AnimeType.parse(label)


# --------------------------------------------------------------------------- reading


def read_storytext(path: Path) -> tuple[dict[int, StoryText], StoryTextReport]:
    """MAL id → `StoryText` from a JSONL/JSON file of the fixture's shape or a synopsis CSV.

    Raises:
        CatalogueFormatError: the file as a whole is malformed (named with its line).
        OSError: the file cannot be read.
    """
    content = read_catalogue_file(path)
    text = content.text
    start = first_nonspace(text)
    if text[start : start + 1] not in ("{", "["):
        # The CSV case is the synopsis export: one reader for it, in `loaders.synopses`.
        synopses, synopsis_report = synopses_from(content)
        report = StoryTextReport(source=str(path), format="csv", compression=content.compression)
        report.rows_read = synopsis_report.rows_read
        report.synopses_cleaned = synopsis_report.cleaned
        report.synopses_truncated = synopsis_report.truncated
        report.skipped_by_reason.update(synopsis_report.skipped_by_reason)
        report.skipped.extend(synopsis_report.skipped[:MAX_LISTED_SKIPS])
        report.records = len(synopses)
        report.fields_in_file["synopsis"] = len(synopses)
        return {i: StoryText(synopsis=s) for i, s in synopses.items()}, report
    report = StoryTextReport(source=str(path), format="jsonl", compression=content.compression)
    found: dict[int, StoryText] = {}
    first_seen: dict[int, str] = {}
    for position, item in json_objects(text, path):
        report.rows_read += 1
        if not isinstance(item, dict):
            what = f"unparseable ({item})" if isinstance(item, Exception) else short(item)
            report.skip(position, f"not a JSON object: {what}")
            continue
        anime_id = _record_id(item)
        if isinstance(anime_id, str):
            report.skip(position, anime_id)
            continue
        if anime_id in first_seen:
            report.skip(
                position, f"duplicate id: {first_seen[anime_id]} has it too (the first is kept)", anime_id
            )
            continue
        first_seen[anime_id] = position
        story = _story_of(item, anime_id, position, report)
        found[anime_id] = story
        for name in STORY_INPUT_FIELDS:
            if _has(story, name):
                report.fields_in_file[name] += 1
    if (
        report.rows_read
        and not found
        and report.skipped_by_reason.get("not a JSON object") == report.rows_read
    ):
        raise CatalogueFormatError(
            path, "whole file", f"none of its {report.rows_read} lines is a JSON object"
        )
    report.records = len(found)
    return found, report


def _record_id(item: Mapping[str, Any]) -> int | str:
    keys = {str(key).lower(): key for key in item}
    id_key = next((keys[k] for k in ID_COLUMNS if k in keys), None)
    if id_key is None:
        return f"bad id: none of {', '.join(ID_COLUMNS)} among its keys {short(sorted(keys))}"
    return mal_id_of(item[id_key])


def _text(value: object, cap: int) -> str | None:
    if not isinstance(value, str) or len(value) > HARD_STRING_CHARS:
        return None
    clean = value if is_clean(value) else slow_clean(value)
    clean = clean.strip()
    return clean[:cap] if clean else None


def _texts(value: object, cap: int, limit: int = MAX_ITEMS_PER_FIELD) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    seen: dict[str, None] = {}
    for item in value[:limit]:
        clean = _text(item, cap)
        if clean:
            seen.setdefault(clean, None)
    return tuple(seen)


def _int(
    item: Mapping[str, Any],
    name: str,
    bounds: tuple[int, int],
    where: tuple[str, int],
    report: StoryTextReport,
) -> int | None:
    """`sanitise.int_field` of one field; a bad value is dropped and counted (the record is kept)."""
    try:
        return int_field(item.get(name), name, *bounds)
    except RecordError as exc:
        report.skip(where[0], f"bad field: {exc}", where[1])
        return None


def _story_of(item: Mapping[str, Any], anime_id: int, position: str, report: StoryTextReport) -> StoryText:
    """One record's usable fields; a field of the wrong shape is dropped and counted, the rest kept."""
    synopsis = None
    raw_synopsis = item.get("synopsis")
    if isinstance(raw_synopsis, str) and len(raw_synopsis) <= HARD_STRING_CHARS:
        clean, truncated = clean_synopsis(raw_synopsis)
        if clean:
            synopsis = clean
            report.synopses_truncated += truncated
            report.synopses_cleaned += (not truncated) and clean != raw_synopsis.strip()
    elif raw_synopsis is not None:
        report.skip(position, f"bad field: synopsis {short(raw_synopsis)}", anime_id)
    related = item.get("related_mal_ids")
    related_ids: tuple[int, ...] = ()
    if isinstance(related, list):
        valid = (mal_id_of(r) for r in related[:MAX_ITEMS_PER_FIELD])
        related_ids = tuple(dict.fromkeys(r for r in valid if isinstance(r, int) and r != anime_id))
    year = _int(item, "year", YEAR_RANGE, (position, anime_id), report)
    episodes = _int(item, "episodes", (0, MAX_EPISODES), (position, anime_id), report)
    season = item.get("season")
    title = _text(item.get("title"), MAX_TITLE_CHARS)
    title_english = _text(item.get("title_english"), MAX_TITLE_CHARS)
    return StoryText(
        title=title,
        synopsis=synopsis,
        tags=merge_tags(_texts(item.get("tags"), MAX_TAG_CHARS)),
        synonyms=_texts(item.get("synonyms"), MAX_TITLE_CHARS)[:MAX_SYNONYMS_KEPT],
        title_english=title_english,
        studios=_texts(item.get("studios"), MAX_TITLE_CHARS, limit=20),
        content_rating=rating_code(item.get("rating")),
        related_ids=related_ids,
        type=story_type(item.get("type")),
        year=year,
        season=season.strip().lower()
        if isinstance(season, str) and season.strip().lower() in _SEASONS
        else None,
        episodes=episodes or None,
        status=_text(item.get("status"), 32),
    )


def _has(story: StoryText, name: str) -> bool:
    if name == "related":
        return bool(story.related_ids)
    if name == "type":
        return story.type is not AnimeType.UNKNOWN
    return bool(getattr(story, name))


# --------------------------------------------------------------------------- merging


def merge_storytext(
    catalogue: Catalogue,
    stories: Mapping[int, StoryText],
    report: StoryTextReport,
    *,
    adds: bool = False,
    keep_existing: bool = False,
) -> Catalogue:
    """`catalogue` with each anime's story fields merged from `stories` (keyed by MAL id = catalogue id).

    Args:
        adds: anime that only `stories` has join the catalogue (a title is required; no score/members).
        keep_existing: story fields the catalogue's records carry already win over the file's (a delta
            update whose source carries its own text); by default the file's text replaces them.
    """
    items: list[Anime] = []
    for anime in catalogue:
        story = stories.get(anime.id)
        if story is None:
            items.append(anime)
            continue
        report.matched += 1
        items.append(_merged(anime, story, report, keep_existing=keep_existing))
    for anime_id in sorted(set(stories).difference(catalogue.ids)):
        story = stories[anime_id]
        if not adds:
            report.not_added += 1
            continue
        if story.title is None:
            report.skip(
                f"id {anime_id}", "no title: an anime the catalogue lacks needs one to be added", anime_id
            )
            continue
        items.append(_added(anime_id, story, report))
        report.added += 1
    return Catalogue(items)


def _merged(anime: Anime, story: StoryText, report: StoryTextReport, *, keep_existing: bool) -> Anime:
    changes: dict[str, Any] = {}
    counts = report.fields_merged

    def fill(name: str, value: object, *, replace: bool) -> None:
        if value is None or value == () or value == getattr(anime, name):
            return
        if getattr(anime, name) in (None, ()) or replace:
            changes[name] = value
            counts[name] += 1

    replace_story = not keep_existing
    fill("synopsis", story.synopsis, replace=replace_story)
    fill("title_english", story.title_english, replace=replace_story)
    fill("content_rating", story.content_rating, replace=replace_story)
    fill("studios", story.studios, replace=replace_story)
    if story.tags:
        tags = merge_tags(anime.tags, story.tags)
        if tags != anime.tags:
            changes["tags"] = tags
            counts["tags"] += 1
    if story.synonyms:
        known = {s.casefold() for s in anime.synonyms} | {anime.title.casefold()}
        extra = tuple(s for s in story.synonyms if s.casefold() not in known)
        if extra:
            changes["synonyms"] = anime.synonyms + extra
            counts["synonyms"] += 1
    if story.related_ids:
        links = tuple(MAL_URL.format(i) for i in story.related_ids)
        extra = tuple(url for url in links if url not in anime.related)
        if extra:
            changes["related"] = anime.related + extra
            counts["related"] += 1
    if anime.type is AnimeType.UNKNOWN and story.type is not AnimeType.UNKNOWN:
        changes["type"] = story.type
        counts["type"] += 1
    fill("year", story.year, replace=False)
    fill("season", story.season, replace=False)
    fill("episodes", story.episodes, replace=False)
    return with_fields(anime, **changes) if changes else anime


def _added(anime_id: int, story: StoryText, report: StoryTextReport) -> Anime:
    counts = report.fields_merged
    for name in STORY_INPUT_FIELDS:
        if _has(story, name):
            counts[name] += 1
    assert story.title is not None
    synonyms = tuple(s for s in story.synonyms if s.casefold() != story.title.casefold())
    return Anime(
        id=anime_id,
        title=story.title,
        type=story.type,
        synonyms=synonyms,
        episodes=story.episodes,
        status=story.status,
        year=story.year,
        season=story.season if story.year is not None else None,
        tags=story.tags,
        sources=(MAL_URL.format(anime_id),),
        related=tuple(MAL_URL.format(i) for i in story.related_ids),
        synopsis=story.synopsis,
        title_english=story.title_english,
        content_rating=story.content_rating,
        studios=story.studios,
    )
