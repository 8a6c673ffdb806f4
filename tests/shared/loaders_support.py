"""Shared fixtures of the loader tests: manami records in every form, a fake bangumi-data install."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from anime_recommender.catalogue import AnimeType
from anime_recommender.loaders import SYNTHETIC_ID_BASE, LoadResult, assign_derived_ids, load_catalogue

# Written from the published anime-offline-database schema (2025 releases).
METADATA: dict[str, Any] = {
    "$schema": "https://raw.githubusercontent.com/manami-project/anime-offline-database/refs/tags/"
    "2025-01/schemas/anime-offline-database.schema.json",
    "license": {
        "name": "Open Data Commons Open Database License (ODbL) v1.0 + Database Contents License (DbCL) v1.0",
        "url": "https://github.com/manami-project/anime-offline-database/blob/2025-01/LICENSE",
    },
    "repository": "https://github.com/manami-project/anime-offline-database",
    "scoreRange": {"minInclusive": 1.0, "maxInclusive": 10.0},
    "lastUpdate": "2025-01-03",
}
BEBOP: dict[str, Any] = {
    "sources": [
        "https://anidb.net/anime/23",
        "https://anilist.co/anime/1",
        "https://kitsu.app/anime/1",
        "https://myanimelist.net/anime/1",
    ],
    "title": "Cowboy Bebop",
    "type": "TV",
    "episodes": 26,
    "status": "FINISHED",
    "animeSeason": {"season": "SPRING", "year": 1998},
    "picture": "https://cdn.myanimelist.net/images/anime/4/19644.jpg",
    "thumbnail": "https://cdn.myanimelist.net/images/anime/4/19644t.jpg",
    "duration": {"value": 1440, "unit": "SECONDS"},
    "score": {"arithmeticGeometricMean": 8.65, "arithmeticMean": 8.66, "median": 8.7},
    "synonyms": ["Kaubôi bibappu", "カウボーイビバップ", "星际牛仔"],
    "studios": ["sunrise"],
    "producers": ["bandai visual"],
    "relatedAnime": ["https://myanimelist.net/anime/5", "https://anilist.co/anime/5"],
    "tags": ["Action", "adventure", " Space ", "action", "sci-fi", "bounty hunters"],
}
MOVIE: dict[str, Any] = {
    "sources": ["https://anilist.co/anime/5", "https://myanimelist.net/anime/5"],
    "title": "Cowboy Bebop: Tengoku no Tobira",
    "type": "MOVIE",
    "episodes": 1,
    "status": "FINISHED",
    "animeSeason": {"season": "SUMMER", "year": 2001},
    "picture": "https://cdn.myanimelist.net/images/anime/1439/93480.jpg",
    "thumbnail": "https://cdn.myanimelist.net/images/anime/1439/93480t.jpg",
    "duration": {"value": 6900, "unit": "SECONDS"},
    "score": {"arithmeticGeometricMean": 8.3, "arithmeticMean": 8.3, "median": 8.3},
    "synonyms": ["Cowboy Bebop: The Movie"],
    "relatedAnime": ["https://myanimelist.net/anime/1"],
    "tags": ["action", "space", "drama"],
}
# No MAL source, no score, year unknown, season UNDEFINED: the derived-id path and the unknowns.
NO_MAL: dict[str, Any] = {
    "sources": ["https://kitsu.app/anime/99999", "https://anidb.net/anime/77777"],
    "title": "Obscure Short",
    "type": "SPECIAL",
    "episodes": 0,
    "status": "UNKNOWN",
    "animeSeason": {"season": "UNDEFINED", "year": None},
    "picture": "https://raw.githubusercontent.com/manami-project/anime-offline-database/master/pics/no_pic.png",
    "thumbnail": "https://raw.githubusercontent.com/manami-project/anime-offline-database/master/pics/no_pic_thumbnail.png",
    "synonyms": [],
    "relatedAnime": [],
    "tags": [],
}
RECORDS = [BEBOP, MOVIE, NO_MAL]


def release(records: list[Any]) -> dict[str, Any]:
    return {**METADATA, "data": records}


def pretty(records: list[Any]) -> bytes:
    # ASCII escapes here (raw UTF-8 in the other forms), so a lone surrogate can be written too.
    return json.dumps(release(records), indent=2).encode()


def minified(records: list[Any]) -> bytes:
    return json.dumps(release(records), ensure_ascii=False, separators=(",", ":")).encode()


def jsonl(records: list[Any], header: bool = True) -> bytes:
    lines = ([json.dumps(METADATA)] if header else []) + [json.dumps(r, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + "\n").encode()


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buffer.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda b: b,
    ".gz": gzip.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
}
FORMS: dict[str, tuple[str, Callable[[list[Any]], bytes], str]] = {
    "pretty": ("release.json", pretty, "manami-json"),
    "minified": ("release-minified.json", minified, "manami-json"),
    "jsonl-header": ("release.jsonl", jsonl, "manami-jsonl"),
    "jsonl-bare": ("release.jsonl", lambda r: jsonl(r, header=False), "manami-jsonl"),
}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load(path: Path) -> LoadResult:
    return load_catalogue(path)


def check_fixture(result: LoadResult) -> None:
    cat = result.catalogue
    assert len(cat) == 3
    bebop = cat.by_id(1)
    assert bebop.title == "Cowboy Bebop"
    assert bebop.type is AnimeType.TV
    assert (bebop.year, bebop.season, bebop.episodes, bebop.status) == (1998, "spring", 26, "FINISHED")
    assert bebop.score == pytest.approx(8.65)
    assert bebop.tags == ("action", "adventure", "space", "sci-fi", "bounty hunters")
    assert bebop.synonyms == ("Kaubôi bibappu", "カウボーイビバップ", "星际牛仔")
    assert bebop.duration_s == 1440 and bebop.thumbnail and bebop.thumbnail.endswith("19644t.jpg")
    assert bebop.members is None  # manami has no popularity
    assert bebop.related == ("https://myanimelist.net/anime/5", "https://anilist.co/anime/5")
    assert cat.by_id(5).type is AnimeType.MOVIE
    obscure = [a for a in cat if a.id >= SYNTHETIC_ID_BASE]
    assert len(obscure) == 1
    o = obscure[0]
    assert o.id == assign_derived_ids(["https://anidb.net/anime/77777"])["https://anidb.net/anime/77777"]
    assert (o.year, o.season, o.score, o.episodes, o.status, o.tags) == (None, None, None, None, None, ())
    assert result.report.derived_ids == 1
    assert result.report.skipped == []


def fake_bangumi(tmp_path: Path) -> Path:
    items = [
        # Stored as UTC: 1998-04-02T15:00Z is 1998-04-03 00:00 JST → spring.
        {
            "title": "カウボーイビバップ",
            "begin": "1998-04-02T15:00:00.000Z",
            "sites": [{"site": "mal", "id": "1"}],
        },
        # Same MAL id, later re-run: the earliest begin wins.
        {"title": "rerun", "begin": "1998-10-23T15:00:00.000Z", "sites": [{"site": "mal", "id": "1"}]},
        # JST crosses the year boundary: 2008-12-31T15:30Z is 2009-01-01 JST → 2009 winter.
        {"title": "FMA:B", "begin": "2008-12-31T15:30:00.000Z", "sites": [{"site": "mal", "id": "5114"}]},
        {"title": "no begin", "begin": "", "sites": [{"site": "mal", "id": "6"}]},
        {
            "title": "bangumi only",
            "begin": "2001-01-01T00:00:00.000Z",
            "sites": [{"site": "bangumi", "id": "5"}],
        },
    ]
    root = tmp_path / "node_modules" / "bangumi-data"
    (root / "dist").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "bangumi-data", "version": "0.3.999"}))
    path = root / "dist" / "data.json"
    path.write_text(json.dumps({"siteMeta": {}, "items": items}, ensure_ascii=False), encoding="utf-8")
    return path
