"""The story index through a delta update: rows follow the synopses (changed, removed, lost, gained), an
unchanged story index is carried over as it is, and a base without one gets none."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from delta_support import run, weekly_change, write_manami
from story_support import DATA, build_bundle, story_ids, story_model, with_synopses

from anime_recommender.artifacts import CATALOGUE, STORY, Manifest, ServingBundle, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.apply import apply_delta
from anime_recommender.delta.plan import plan_delta
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.store import LocalArtifactStore
from anime_recommender.text import anime_text, story_passage

TRIGUN, DEATH_NOTE, MYSTERY_SHORT = 6, 1535, 40000
# Trigun's synopsis in the base: the encoder text's snippet keeps the first two sentences (53 words),
# the story passage all three; the tiny model reads 64 words, so it sees the third one's opening.
OPENING = (
    "Vash the Stampede, a gunslinger with a sixty-billion-double-dollar bounty on his head, wanders a "
    "desert planet where towns fear his name. Two insurance agents follow him from town to town to limit "
    "the damage he causes, only to find a pacifist who hates killing and who laughs off every insult "
    "thrown at him."
)
OLD_TRIGUN = (
    OPENING + " Behind the smile hides a past tied to the lost colony ships and a brother named Knives."
)
NEW_TRIGUN = OPENING + " Behind the grin lurks a debt owed to sand steamers and an angel of the desert."


@pytest.fixture(scope="module")
def story_base(base_catalogue: Catalogue) -> Catalogue:
    """The delta tests' base catalogue with synopses (28 anime), Trigun's the long one above."""
    storied = with_synopses(base_catalogue)
    return Catalogue(replace(a, synopsis=OLD_TRIGUN) if a.id == TRIGUN else a for a in storied)


@pytest.fixture(scope="module")
def model_dir(story_base: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return story_model(tmp_path_factory.mktemp("story-model"), story_base, [NEW_TRIGUN])


@pytest.fixture(scope="module")
def story_template(story_base: Catalogue, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base bundle as `anime-build index` writes it, story index included."""
    return build_bundle(story_base, tmp_path_factory.mktemp("story-base"), model_dir)[0]


@pytest.fixture
def story_layer(story_template: Path, tmp_path: Path) -> Path:
    """A writable copy of `story_template`: the deployed layer a delta starts from."""
    return Path(shutil.copytree(story_template, tmp_path / "story-layer"))


def published(store: LocalArtifactStore, tmp_path: Path) -> ServingBundle:
    """The version the store's pointer names, loaded as the API would (every tier)."""
    pointer = store.read_pointer()
    assert pointer is not None
    return load_bundle(store.fetch(pointer, tmp_path / "fetched"), all_tiers=True)


def story_vector(model_dir: Path, text: str) -> np.ndarray:
    return OnnxEncoder.load(model_dir, threads=1).encode([text], batch_size=1)["v3"][0]


def assert_same_rows(new: ServingBundle, base: ServingBundle, ids: list[int]) -> None:
    """These anime's story vectors are the base's, bit for bit (they were not re-embedded)."""
    assert new.story is not None and base.story is not None
    for anime_id in ids:
        np.testing.assert_array_equal(new.story.vector(anime_id), base.story.vector(anime_id))


def test_changed_synopsis_updates_only_its_story_row(
    base_catalogue: Catalogue, story_base: Catalogue, story_layer: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a base with a story index, this week's release (no story text) and a synopsis file that
    # rewrites the third sentence of Trigun's synopsis: past the encoder text's snippet, in its passage
    old = story_base.by_id(TRIGUN)
    new = replace(old, synopsis=NEW_TRIGUN)
    assert anime_text(new) == anime_text(old) and story_passage(new) != story_passage(old)
    store = LocalArtifactStore(tmp_path / "store")
    week = write_manami(tmp_path / "week.jsonl", list(base_catalogue))
    synopses = tmp_path / "synopses.csv"
    synopses.write_text(f'MAL_ID,Name,sypnopsis\n{TRIGUN},Trigun,"{NEW_TRIGUN}"\n', encoding="utf-8")

    # When the delta runs with it
    summary = run(store, story_layer, week, tmp_path, storytext_path=synopses)

    # Then Trigun changed, and its V3/V4 vectors were not re-embedded (same encoder text) ...
    assert summary.status == "published" and summary.counts["changed"] == 1 and summary.embedded == 0
    bundle, base = published(store, tmp_path), load_bundle(story_layer, all_tiers=True)
    for space, index in bundle.indexes.items():
        np.testing.assert_array_equal(index.vector(TRIGUN), base.indexes[space].vector(TRIGUN))
    # ... but its story row is the new passage's vector, and no longer the old one's ...
    assert bundle.story is not None and base.story is not None
    fresh = story_vector(model_dir, NEW_TRIGUN)
    assert float(np.dot(bundle.story.vector(TRIGUN), fresh)) > 0.999
    assert float(np.dot(base.story.vector(TRIGUN), fresh)) < 0.99
    # ... so a search with the new passage finds it ...
    assert bundle.story.search(fresh, 1)[0][0] == TRIGUN
    # ... and every other story row is the base's, bit for bit
    others = [i for i in story_ids(story_base) if i != TRIGUN]
    assert bundle.story.ids.tolist() == story_ids(story_base)
    assert_same_rows(bundle, base, others)
    manifest = Manifest.read(bundle.root)
    assert manifest.indexes[STORY].count == 28 and manifest.extra["delta"]["story_embedded"] == 1


def test_removed_anime_leaves_the_story_index(
    base_catalogue: Catalogue, story_base: Catalogue, story_layer: Path, tmp_path: Path
) -> None:
    # Given this week's release without Death Note (which has a synopsis)
    store = LocalArtifactStore(tmp_path / "store")
    week = write_manami(tmp_path / "week.jsonl", [a for a in base_catalogue if a.id != DEATH_NOTE])

    # When the delta runs
    summary = run(store, story_layer, week, tmp_path)

    # Then its story row is gone, and search can no longer return it; the others are untouched
    assert summary.status == "published" and summary.counts["removed"] == 1
    bundle, base = published(store, tmp_path), load_bundle(story_layer, all_tiers=True)
    assert bundle.story is not None and base.story is not None
    assert DEATH_NOTE not in bundle.story and len(bundle.story) == 27
    assert DEATH_NOTE not in {i for i, _ in bundle.story.search(base.story.vector(DEATH_NOTE), 27)}
    assert_same_rows(bundle, base, [i for i in story_ids(story_base) if i != DEATH_NOTE])
    assert Manifest.read(bundle.root).indexes[STORY].count == 27


def test_weekly_delta_carries_the_story_index_over_unchanged(
    base_catalogue: Catalogue, story_layer: Path, tmp_path: Path
) -> None:
    # Given the weekly change (a re-tag, an anime without synopsis removed, two new ones without any)
    store = LocalArtifactStore(tmp_path / "store")
    week = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))

    # When the delta runs
    summary = run(store, story_layer, week, tmp_path)

    # Then the new version ships the base's story index files as they were (linked, not rewritten)
    assert summary.status == "published" and summary.embedded == 3
    bundle = published(store, tmp_path)
    base, new = Manifest.read(story_layer), Manifest.read(bundle.root)
    story_files = {rel: e for rel, e in base.files.items() if rel.startswith("index_story/")}
    assert story_files and {rel: new.files[rel] for rel in story_files} == story_files
    assert new.indexes[STORY] == base.indexes[STORY] and new.extra["delta"]["story_embedded"] == 0
    assert bundle.story is not None and bundle.failures == []


def test_lost_synopsis_leaves_the_story_index_and_a_new_one_joins_it(
    story_layer: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a new catalogue where Death Note lost its synopsis and the Mystery Short gained one
    base_catalogue = Catalogue.load(story_layer / CATALOGUE)
    text = "A detective story about a missing bounty hunter on a desert planet."
    new = Catalogue(
        replace(a, synopsis=None)
        if a.id == DEATH_NOTE
        else replace(a, synopsis=text)
        if a.id == MYSTERY_SHORT
        else a
        for a in base_catalogue
    )
    plan = plan_delta(base_catalogue, new)
    assert set(plan.story_to_embed) == {DEATH_NOTE, MYSTERY_SHORT}

    # When the delta is applied
    result = apply_delta(story_layer, plan, None, tmp_path / "new")

    # Then the story index follows: one row out, one row in, the same count
    bundle = load_bundle(result.out_dir, all_tiers=True)
    assert bundle.story is not None and bundle.failures == []
    assert DEATH_NOTE not in bundle.story and MYSTERY_SHORT in bundle.story
    assert len(bundle.story) == 28 == result.manifest.indexes[STORY].count
    fresh = story_vector(model_dir, text)
    assert float(np.dot(bundle.story.vector(MYSTERY_SHORT), fresh)) > 0.999


def test_base_without_story_index_gets_none(layer: Path, tmp_path: Path, base_catalogue: Catalogue) -> None:
    # Given the default bundle (no synopses, no story index) and a first delta with a synopsis file
    store = LocalArtifactStore(tmp_path / "store")
    week = write_manami(tmp_path / "week.jsonl", list(base_catalogue))

    # When the delta runs
    summary = run(store, layer, week, tmp_path, storytext_path=DATA / "synopses.csv")

    # Then the synopses are in the catalogue, but no story index is created (a full build makes one)
    assert summary.status == "published"
    bundle = published(store, tmp_path)
    assert sum(1 for a in bundle.catalogue if a.synopsis) == 28
    assert STORY not in bundle.manifest.indexes and bundle.story is None and bundle.failures == []
