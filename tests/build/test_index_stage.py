"""The index stage ships the ingest's bangumi-data release dates in the bundle (delta updates use them),
and the story index of a catalogue with synopses."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from anime_pipeline.index_stage import IndexStageConfig, build_index_bundle
from anime_pipeline.ingest import IngestConfig, default_bangumi, ingest, release_dates_from_report
from anime_pipeline.paths import BuildPaths
from anime_pipeline.synthetic import write_manami
from anime_pipeline.tiny_model import make_tiny_model
from anime_recommender.artifacts import RELEASE_DATES, Manifest, load_bundle, verify
from anime_recommender.catalogue import Catalogue
from anime_recommender.index import FLAT_KIND
from anime_recommender.loaders import merge_synopses, read_synopses
from anime_recommender.release_dates import load_bangumi_dates, load_release_dates
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text, story_passage


def fake_bangumi(path: Path, begins: dict[int, str], version: str = "0.3.1") -> Path:
    """A bangumi-data install: `dist/data.json` with these MAL id → begin instants, and its version."""
    items = [{"begin": b, "sites": [{"site": "mal", "id": str(i)}]} for i, b in begins.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    (path.parent.parent / "package.json").write_text(json.dumps({"version": version}), encoding="utf-8")
    return path


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuildPaths:
    monkeypatch.setenv("ANIME_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("ANIME_ARTIFACTS_LAYER_DIR", str(tmp_path / "layer"))
    monkeypatch.delenv("ANIME_BANGUMI", raising=False)  # its fake bangumi-data goes under tmp_path
    return BuildPaths.from_env()


@pytest.fixture
def source(tiny_catalogue: Catalogue, tmp_path: Path) -> Path:
    """The tiny catalogue as a manami file, Cowboy Bebop (1) and Trigun (6) without a year."""
    items = [replace(a, year=None, season=None) if a.id in (1, 6) else a for a in tiny_catalogue]
    return write_manami(Catalogue(items), tmp_path / "source.json", form="json", pretty=False)


def config(paths: BuildPaths, tiny_model_dir: Path, catalogue: Catalogue) -> IndexStageConfig:
    neighbours = paths.work / "teacher" / "neighbours_v2.npz"
    neighbours.parent.mkdir(parents=True, exist_ok=True)
    top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=5).save(neighbours)
    return IndexStageConfig(
        catalogue=paths.catalogue,
        neighbours=neighbours,
        model_dir=tiny_model_dir,
        out_dir=paths.artifacts_dir,
        ingest_report=paths.ingest_report,
        eval_queries=20,
        threads=1,
    )


def test_index_stage_ships_the_dates_the_ingest_used(
    paths: BuildPaths, source: Path, tiny_model_dir: Path
) -> None:
    # Given an ingest that filled Cowboy Bebop's year from bangumi-data
    begins = {1: "1998-04-02T15:00:00.000Z", 99999: "2001-01-01T00:00Z"}
    bangumi = fake_bangumi(default_bangumi(paths), begins)
    result = ingest(IngestConfig(paths=paths, source=source, bangumi=bangumi, show_progress=False))
    assert Catalogue.load(paths.catalogue).by_id(1).year == 1998

    # When the index stage writes the bundle
    built = build_index_bundle(config(paths, tiny_model_dir, Catalogue.load(result.catalogue_path)))

    # Then the bundle carries exactly those dates, listed and verified
    shipped = load_release_dates(paths.artifacts_dir / RELEASE_DATES)
    assert shipped.dates == load_bangumi_dates(bangumi).dates
    assert shipped.dates == {1: (1998, "spring"), 99999: (2001, "winter")}
    assert shipped.version == "0.3.1" and "bangumi-data 0.3.1" in built.release_dates
    assert RELEASE_DATES in Manifest.read(paths.artifacts_dir).files and not verify(paths.artifacts_dir)


def test_index_stage_without_enrichment_ships_no_dates(
    paths: BuildPaths, source: Path, tiny_model_dir: Path
) -> None:
    ingest(IngestConfig(paths=paths, source=source, bangumi=None, show_progress=False))
    built = build_index_bundle(config(paths, tiny_model_dir, Catalogue.load(paths.catalogue)))
    assert not (paths.artifacts_dir / RELEASE_DATES).exists()
    assert RELEASE_DATES not in Manifest.read(paths.artifacts_dir).files
    assert built.release_dates == "none: the ingest did not enrich years"


def test_report_names_why_no_dates_are_shipped(paths: BuildPaths, source: Path, tmp_path: Path) -> None:
    # No report at all, or one for another catalogue: nothing to ship.
    assert release_dates_from_report(paths.ingest_report, paths.catalogue)[0] is None
    bangumi = fake_bangumi(default_bangumi(paths), {1: "1998-04-02T15:00:00.000Z"})
    ingest(IngestConfig(paths=paths, source=source, bangumi=bangumi, show_progress=False))
    dates, note = release_dates_from_report(paths.ingest_report, tmp_path / "other.jsonl.gz")
    assert dates is None and "not" in note
    # The bangumi-data file was updated since the ingest: shipping it would mismatch the catalogue.
    fake_bangumi(bangumi, {1: "1998-04-02T15:00:00.000Z"}, version="0.3.2")
    with pytest.raises(ValueError, match="re-run `anime-build ingest`"):
        release_dates_from_report(paths.ingest_report, paths.catalogue)
    # The file is gone: the stage still works, without dates.
    bangumi.unlink()
    dates, note = release_dates_from_report(paths.ingest_report, paths.catalogue)
    assert dates is None and "gone" in note


# ---------------------------------------------------------------------------------------------
# the story index (v3 vectors of the synopses' story passages)
# ---------------------------------------------------------------------------------------------


def storied_config(paths: BuildPaths, catalogue: Catalogue, model_dir: Path) -> IndexStageConfig:
    """The stage's inputs for `catalogue` saved as the ingest would (no ingest report: no dates)."""
    catalogue.save(paths.catalogue)
    return config(paths, model_dir, catalogue)


def test_index_stage_builds_the_story_index_of_anime_with_a_synopsis(
    paths: BuildPaths, tiny_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given a catalogue where 28 of 32 anime have a synopsis, and a model that knows their words
    found, report = read_synopses(Path(__file__).parent.parent / "data" / "synopses.csv")
    storied = merge_synopses(tiny_catalogue, found, report)
    told = sorted(a.id for a in storied if story_passage(a))
    texts = [anime_text(a) for a in storied] + [a.synopsis for a in storied if a.synopsis]
    model_dir = make_tiny_model(tmp_path / "model", texts)

    # When the index stage runs (gated at 0.95: 16-dim toy vectors quantise coarser than 384-d ones)
    built = build_index_bundle(replace(storied_config(paths, storied, model_dir), target_recall=0.95))

    # Then it reports the story index (rows, timings, recall past the gate) beside the spaces ...
    assert built.story is not None and built.story.rows == len(told) == 28
    assert built.story.recall_at_10 >= 0.95 and built.story.build_seconds >= 0
    assert asdict(built)["story"]["rows"] == 28 and set(built.spaces) == {"v4", "v3"}
    # ... ships it in the verified bundle, listed in the manifest with its recall ...
    manifest = Manifest.read(paths.artifacts_dir)
    assert manifest.indexes["story"].count == 28 and manifest.indexes["story"].kind == FLAT_KIND
    assert manifest.indexes["story"].recall_at_10 == built.story.recall_at_10
    assert not verify(paths.artifacts_dir)
    # ... and each anime's story passage, embedded as a query, finds that anime first
    bundle = load_bundle(paths.artifacts_dir)
    assert bundle.story is not None and bundle.encoder is not None
    assert bundle.story.ids.tolist() == told
    for anime_id in told:
        passage = story_passage(storied.by_id(anime_id))
        assert passage is not None
        assert bundle.story.search(bundle.encoder.encode_one(passage)["v3"], 1)[0][0] == anime_id


def test_index_stage_without_synopses_writes_no_story_index(
    paths: BuildPaths, tiny_catalogue: Catalogue, tiny_model_dir: Path
) -> None:
    # Given the default catalogue (no synopses), when the index stage runs
    built = build_index_bundle(storied_config(paths, tiny_catalogue, tiny_model_dir))
    # Then the bundle is what it always was: no story index, no manifest entry, nothing reported
    assert built.story is None
    assert set(Manifest.read(paths.artifacts_dir).indexes) == {"v4", "v3"}
    assert not (paths.artifacts_dir / "index_story").exists()
    assert load_bundle(paths.artifacts_dir).story is None
