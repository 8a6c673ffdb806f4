"""The story index in the bundle (`index_story/`): written and listed by `write_bundle`, loaded and verified
by `load_bundle` beside the tier's index, and a broken one costs only the story features, never the tier."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from story_support import story_ids, story_model, with_synopses

from anime_pipeline.tiny_model import V3_DIM, V4_DIM, CorruptMode, corrupt_file
from anime_recommender.artifacts import (
    STORY,
    Manifest,
    load_bundle,
    verify,
    write_bundle,
)
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.index import FLAT_KIND, FlatIndex, VectorIndex
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text, story_passage

SPIRITED_AWAY = 199


def story_index(catalogue: Catalogue, encoder: OnnxEncoder, dim_of: str = "v3") -> FlatIndex:
    """The story index of `catalogue`: the encoder's `dim_of` vectors of each story passage."""
    told = [(a.id, text) for a in catalogue if (text := story_passage(a))]
    vectors = encoder.encode([text for _, text in told], batch_size=1)[dim_of]
    return FlatIndex.build([anime_id for anime_id, _ in told], vectors)


def write_storied_bundle(catalogue: Catalogue, model_dir: Path, directory: Path) -> Path:
    """A bundle of `catalogue` with V4 hnswlib, V3 flat and the story index."""
    encoder = OnnxEncoder.load(model_dir, threads=1)
    vectors = encoder.encode([anime_text(a) for a in catalogue], batch_size=1)
    write_bundle(
        directory,
        catalogue=catalogue,
        neighbours=top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=5),
        model_dir=model_dir,
        indexes={
            "v4": VectorIndex.build(catalogue.ids, vectors["v4"], M=8, ef_construction=50, ef=20),
            "v3": FlatIndex.build(catalogue.ids, vectors["v3"]),
            STORY: story_index(catalogue, encoder),
        },
        recall_at_10={STORY: 1.0},
    )
    return directory


@pytest.fixture(scope="module")
def storied(tiny_catalogue: Catalogue) -> Catalogue:
    """The tiny catalogue with synopses for 28 of its 32 anime."""
    return with_synopses(tiny_catalogue)


@pytest.fixture(scope="module")
def model_dir(storied: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return story_model(tmp_path_factory.mktemp("story-model"), storied)


@pytest.fixture(scope="module")
def storied_template(storied: Catalogue, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_storied_bundle(storied, model_dir, tmp_path_factory.mktemp("storied") / "anime-artifacts")


@pytest.fixture
def storied_bundle(storied_template: Path, tmp_path: Path) -> Path:
    """A writable copy of the storied bundle (tests corrupt it)."""
    return Path(shutil.copytree(storied_template, tmp_path / "anime-artifacts"))


def test_story_index_round_trips_through_the_bundle(
    storied: Catalogue, model_dir: Path, storied_bundle: Path
) -> None:
    # Given a bundle written with a story index of the 28 anime that have a synopsis
    told = story_ids(storied)
    assert len(told) == 28

    # Then the manifest lists it as a flat index of the model's v3 dim, with its files and recall
    manifest = Manifest.read(storied_bundle)
    info = manifest.indexes[STORY]
    assert (info.kind, info.dim, info.count, info.recall_at_10) == (FLAT_KIND, V3_DIM, 28, 1.0)
    assert manifest.dims == {"v4": V4_DIM, "v3": V3_DIM}  # no model output named "story"
    listed = sorted(rel for rel in manifest.files if rel.startswith("index_story/"))
    assert "index_story/vectors.npy" in listed and "index_story/ids.npy" in listed
    assert verify(storied_bundle) == []

    # When the API loads it (cold path: the fallback V3 index is not loaded)
    bundle = load_bundle(storied_bundle)

    # Then it serves tier v4 with the story index beside it, holding exactly the told anime
    assert bundle.tier == "v4" and bundle.failures == [] and set(bundle.indexes) == {"v4"}
    assert bundle.story is not None and bundle.story.ids.tolist() == told
    assert "index_story" in bundle.timings_ms
    # and a plot description finds its anime through the story index with the encoder's v3 query vector
    assert bundle.encoder is not None
    query = bundle.encoder.encode_one("parents turned into pigs, bathhouse")["v3"]
    assert bundle.story.search(query, 1)[0][0] == SPIRITED_AWAY
    for anime_id in told:
        passage = story_passage(storied.by_id(anime_id))
        assert passage is not None
        assert bundle.story.search(bundle.encoder.encode_one(passage)["v3"], 1)[0][0] == anime_id
    # and loading every tier loads it too
    assert load_bundle(storied_bundle, all_tiers=True).story is not None


@pytest.mark.parametrize("mode", ["flip", "truncate", "delete"])
def test_corrupt_story_index_is_reported_and_the_tier_stays(storied_bundle: Path, mode: CorruptMode) -> None:
    # Given a bundle whose story vectors were damaged
    corrupt_file(storied_bundle / "index_story" / "vectors.npy", mode)

    # When it is loaded
    bundle = load_bundle(storied_bundle)

    # Then only the story features are gone: the failure is reported, everything else serves as before
    assert bundle.story is None
    assert [(f.path, f.component) for f in bundle.failures] == [("index_story/vectors.npy", "index_story")]
    assert bundle.tier == "v4" and bundle.encoder is not None and bundle.index is not None
    assert bundle.lexical is not None and bundle.tables is not None
    assert bundle.neighbours.for_id(1, 3)
    assert {f.component for f in verify(storied_bundle)} == {"index_story"}


def test_story_index_never_changes_the_tier(storied_bundle: Path) -> None:
    # Given a bundle whose V4 index is corrupt but whose story index is intact
    corrupt_file(storied_bundle / "index_v4" / "index.bin", "flip")
    # When it is loaded, then it falls back to v3 as it always did, and the story index still serves
    bundle = load_bundle(storied_bundle)
    assert bundle.tier == "v3" and bundle.story is not None and len(bundle.story) == 28

    # Given the V3 index broken too: tier v2 has no encoder, so no story index is served (nor blamed)
    corrupt_file(storied_bundle / "index_v3" / "vectors.npy", "flip")
    bundle = load_bundle(storied_bundle)
    assert bundle.tier == "v2" and bundle.encoder is None and bundle.story is None
    assert "index_story" not in {f.component for f in bundle.failures}


def test_verified_but_unloadable_story_index_is_a_failure(storied_bundle: Path) -> None:
    # Given a story index whose manifest count disagrees with its files (written by a buggy tool)
    manifest = Manifest.read(storied_bundle)
    info = manifest.indexes[STORY].model_copy(update={"count": 27})
    edited = manifest.model_copy(update={"indexes": {**manifest.indexes, STORY: info}})
    (storied_bundle / "manifest.json").write_text(edited.model_dump_json(indent=2))
    # When loaded, then it is not served, the failure says why, and the tier is v4
    bundle = load_bundle(storied_bundle)
    assert bundle.tier == "v4" and bundle.story is None
    assert [f.component for f in bundle.failures] == ["index_story"]
    assert "count" in bundle.failures[0].reason


def test_bundle_without_synopses_has_no_story_index(bundle_dir: Path) -> None:
    # Given the default bundle (no anime has a synopsis): no story index, no manifest entry, no failure
    assert STORY not in Manifest.read(bundle_dir).indexes
    assert not (bundle_dir / "index_story").exists()
    bundle = load_bundle(bundle_dir, all_tiers=True)
    assert bundle.story is None and bundle.failures == [] and bundle.tier == "v4"


def test_write_bundle_checks_the_story_dim_against_the_v3_output(
    storied: Catalogue, model_dir: Path, tmp_path: Path
) -> None:
    # Given a story index built from the V4 output (the wrong dim)
    encoder = OnnxEncoder.load(model_dir, threads=1)
    wrong = story_index(storied, encoder, dim_of="v4")
    assert wrong.dim == V4_DIM
    # When it is written, then the bundle is refused naming the index and the output it must match
    with pytest.raises(ValueError, match="story has dim 8, model output v3 is 16"):
        write_bundle(
            tmp_path / "b",
            catalogue=storied,
            neighbours=top_k_neighbours(TeacherFeatures.from_catalogue(storied), k=5),
            model_dir=model_dir,
            indexes={STORY: wrong},
        )


def test_story_index_vectors_are_the_v3_vectors_of_the_passages(
    storied: Catalogue, model_dir: Path, storied_bundle: Path
) -> None:
    # The stored rows decode (int8) to the encoder's v3 vectors of the story passages
    bundle = load_bundle(storied_bundle)
    assert bundle.story is not None
    encoder = OnnxEncoder.load(model_dir, threads=1)
    passage = story_passage(storied.by_id(SPIRITED_AWAY))
    assert passage is not None
    fresh = encoder.encode([passage], batch_size=1)["v3"][0]
    assert float(np.dot(bundle.story.vector(SPIRITED_AWAY), fresh)) > 0.999
