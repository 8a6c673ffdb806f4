"""Story text through a delta update: a manami source has no synopses, so the new version keeps the base
bundle's (unchanged anime stay unchanged, changed ones keep theirs), and a configured synopsis file is
merged through the ingest's loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from delta_support import run, weekly_change, without_file, write_manami

from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.artifacts import CONTENT_HASHES, ServingBundle, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.base import load_base_records
from anime_recommender.delta.settings import DeltaSettings
from anime_recommender.delta.source import CatalogueSourceError, fetch_input
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.loaders import merge_synopses, read_synopses
from anime_recommender.store import LocalArtifactStore
from anime_recommender.text import anime_text

DATA = Path(__file__).parent.parent / "data"
SPIRITED_AWAY, COWBOY_BEBOP, DEATH_NOTE = 199, 1, 1535


@pytest.fixture(scope="module")
def storied_catalogue(base_catalogue: Catalogue) -> Catalogue:
    """The delta tests' base catalogue with the fixture CSV's story text (28 of its 32 anime)."""
    found, report = read_synopses(DATA / "synopses.csv")
    return merge_synopses(base_catalogue, found, report)


@pytest.fixture(scope="module")
def storied_template(
    storied_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A complete bundle built (as `anime-build ingest --synopses` would feed it) with the story text."""
    return make_tiny_bundle(
        storied_catalogue, tmp_path_factory.mktemp("storied"), k=5, model_dir=tiny_model_dir
    )


@pytest.fixture
def storied_layer(storied_template: Path, tmp_path: Path) -> Path:
    """A writable copy of `storied_template`: the deployed layer a delta starts from."""
    return Path(shutil.copytree(storied_template, tmp_path / "storied-layer"))


def published(store: LocalArtifactStore, tmp_path: Path) -> ServingBundle:
    """The version the store's pointer names, loaded as the API would (every tier)."""
    pointer = store.read_pointer()
    assert pointer is not None
    return load_bundle(store.fetch(pointer, tmp_path / "fetched"), all_tiers=True)


def test_weekly_delta_keeps_the_base_synopses(
    base_catalogue: Catalogue,
    storied_catalogue: Catalogue,
    storied_layer: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a base bundle with story text, and this week's manami release (which has none)
    store = LocalArtifactStore(tmp_path / "store")
    week = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))

    # When the delta runs
    summary = run(store, storied_layer, week, tmp_path)

    # Then only the source's real changes count (not every anime with a synopsis) ...
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    assert summary.story_text_carried == 28
    bundle = published(store, tmp_path)
    base = load_bundle(storied_layer, all_tiers=True)
    # ... every synopsis of an anime still listed survives, the new anime have none
    for anime in bundle.catalogue:
        old = storied_catalogue.get(anime.id)
        assert anime.synopsis == (None if old is None else old.synopsis)
    # ... unchanged anime were not re-embedded: their vectors are the base's, bit for bit
    for space, index in bundle.indexes.items():
        np.testing.assert_array_equal(index.vector(SPIRITED_AWAY), base.indexes[space].vector(SPIRITED_AWAY))
    # ... the changed anime (re-scored, re-tagged) was embedded from a text that still tells its story
    bebop = bundle.catalogue.by_id(COWBOY_BEBOP)
    assert bebop.synopsis == storied_catalogue.by_id(COWBOY_BEBOP).synopsis and "jazz" in bebop.tags
    assert "bounty hunters" in anime_text(bebop)
    fresh = OnnxEncoder.load(tiny_model_dir, threads=1).encode([anime_text(bebop)])
    for space, index in bundle.indexes.items():
        np.testing.assert_allclose(index.vector(COWBOY_BEBOP), fresh[space][0], atol=1e-5)
    # ... and /search still finds anime by words only their story has
    assert bundle.lexical is not None
    assert bundle.lexical.search("bathhouse", 1)[0].anime_id == SPIRITED_AWAY
    assert bundle.lexical.search("corgi", 1)[0].anime_id == COWBOY_BEBOP


def test_same_release_on_a_base_with_synopses_publishes_nothing(
    base_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    # Given the base's own anime as a manami release (no story text in it)
    store = LocalArtifactStore(tmp_path / "store")
    same = write_manami(tmp_path / "same.jsonl", list(base_catalogue))
    # When the delta runs, then nothing changed: the synopses did not vanish from every content hash
    summary = run(store, storied_layer, same, tmp_path)
    assert summary.status == "unchanged" and store.read_pointer() is None


def test_synopsis_file_is_merged_and_wins_over_the_base(
    base_catalogue: Catalogue, storied_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    # Given an unchanged release and a synopsis file with new text for three anime (and bad rows)
    store = LocalArtifactStore(tmp_path / "store")
    same = write_manami(tmp_path / "same.jsonl", list(base_catalogue))
    file_text, _ = read_synopses(DATA / "synopses.jsonl")
    assert sorted(file_text) == [6, DEATH_NOTE, 9253]

    # When the delta runs with it
    summary = run(store, storied_layer, same, tmp_path, storytext_path=DATA / "synopses.jsonl")

    # Then exactly those three changed (re-embedded with their new story), the rest kept the base's
    assert summary.status == "published"
    assert summary.counts["changed"] == 3 and summary.counts["added"] == summary.counts["removed"] == 0
    bundle = published(store, tmp_path)
    for anime in bundle.catalogue:
        expected = file_text.get(anime.id, storied_catalogue.by_id(anime.id).synopsis)
        assert anime.synopsis == expected
    assert bundle.lexical is not None
    assert bundle.lexical.search("microwave", 1)[0].anime_id == 9253


@pytest.mark.parametrize("content", [b"name,title\n1,Cowboy Bebop\n", b"\xff\xfe not text"])
def test_malformed_synopsis_file_refuses_the_delta(
    content: bytes, base_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    bad = tmp_path / "synopses.csv"
    bad.write_bytes(content)
    week = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))
    summary = run(store, storied_layer, week, tmp_path, storytext_path=bad)
    assert summary.status == "refused" and summary.refusal_code == "invalid_storytext"
    assert summary.refusal_reason and "story-text file" in summary.refusal_reason
    assert store.read_pointer() is None and not (tmp_path / "store" / "versions").exists()


def test_base_records_hold_the_base_synopses(
    storied_catalogue: Catalogue, storied_layer: Path, layer: Path
) -> None:
    expected = {a.id: {"synopsis": a.synopsis} for a in storied_catalogue if a.synopsis is not None}
    assert len(expected) == 28
    assert load_base_records(storied_layer).story == expected
    assert load_base_records(layer).story == {}  # a bundle built without a synopsis file
    # A bundle from before content hashes were stored: its catalogue is parsed, the text is the same
    without_file(storied_layer, CONTENT_HASHES)
    assert load_base_records(storied_layer).story == expected


def test_the_synopsis_location_is_configured_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNOPSES_SOURCE_URL", " ")  # SAM passes an unset parameter as empty
    assert DeltaSettings.from_env().synopses_source_url is None
    monkeypatch.setenv("SYNOPSES_SOURCE_URL", str(DATA / "synopses.csv"))
    location = DeltaSettings.from_env().synopses_source_url
    assert location is not None
    assert fetch_input(location, tmp_path, what="synopsis file") == DATA / "synopses.csv"
    with pytest.raises(CatalogueSourceError, match="synopsis file .*missing.csv does not exist"):
        fetch_input(str(tmp_path / "missing.csv"), tmp_path, what="synopsis file")
    with pytest.raises(CatalogueSourceError, match="unsupported synopsis location"):
        fetch_input("ftp://host/s.csv", tmp_path, what="synopsis file")
