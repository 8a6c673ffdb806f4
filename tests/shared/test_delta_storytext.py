"""Story text through a delta update (`STORYTEXT_SOURCE_URL`, `anime-build delta --storytext`): the
story-text file is merged through the ingest's loader, a base's story fields are carried when none is
configured, and only a change of the encoder text re-embeds an anime."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from delta_support import NEW_ANIME, run, weekly_change, write_manami

from anime_pipeline import delta_stage
from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.artifacts import Manifest, ServingBundle, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.plan import story_fields
from anime_recommender.delta.settings import DeltaSettings
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.loaders.storytext import merge_storytext, read_storytext
from anime_recommender.store import LocalArtifactStore
from anime_recommender.text import anime_text

SPIRITED_AWAY, COWBOY_BEBOP, DEATH_NOTE, STEINS_GATE = 199, 1, 1535, 9253
FRIEREN = NEW_ANIME[1].id

# What a story-text file says of four anime (the fixture's JSONL shape), the base bundle's source.
STORIES: dict[int, dict[str, Any]] = {
    COWBOY_BEBOP: {
        "synopsis": "Two bounty hunters chase outlaws across the solar system with a corgi aboard.",
        "title_english": "Cowboy Bebop",
        "rating": "R - 17+ (violence & profanity)",
        "studios": ["Sunrise"],
    },
    SPIRITED_AWAY: {
        "synopsis": "A girl works in a bathhouse for spirits to free her parents.",
        "title_english": "Spirited Away",
        "rating": "PG - Children",
        "studios": ["Studio Ghibli"],
    },
    DEATH_NOTE: {
        "synopsis": "A student finds a notebook that kills anyone whose name is written in it.",
        "rating": "R - 17+ (violence & profanity)",
        "studios": ["Madhouse"],
    },
    STEINS_GATE: {
        "synopsis": "A self-proclaimed mad scientist sends messages into the past with a microwave."
    },
}


def write_storytext(path: Path, stories: dict[int, dict[str, Any]]) -> Path:
    """A story-text JSONL file: one `{mal_id, ...}` object per anime."""
    lines = [json.dumps({"mal_id": anime_id, **story}) for anime_id, story in stories.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_story(anime_id: int, **changes: Any) -> dict[int, dict[str, Any]]:
    """`STORIES` with one anime's record changed."""
    return {**STORIES, anime_id: {**STORIES[anime_id], **changes}}


@pytest.fixture(scope="module")
def storied_catalogue(base_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    """The delta tests' base catalogue with `STORIES` merged, as `anime-build ingest --storytext` does."""
    stories, report = read_storytext(write_storytext(tmp_path_factory.mktemp("story") / "s.jsonl", STORIES))
    return merge_storytext(base_catalogue, stories, report)


@pytest.fixture(scope="module")
def storied_template(
    storied_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A complete bundle built from the story-text catalogue."""
    return make_tiny_bundle(
        storied_catalogue, tmp_path_factory.mktemp("storied"), k=5, model_dir=tiny_model_dir
    )


@pytest.fixture
def storied_layer(storied_template: Path, tmp_path: Path) -> Path:
    """A writable copy of `storied_template`: the deployed layer a delta starts from."""
    return Path(shutil.copytree(storied_template, tmp_path / "storied-layer"))


def published(store: LocalArtifactStore, tmp_path: Path) -> tuple[ServingBundle, Manifest]:
    """The version the store's pointer names, loaded as the API would (every tier), and its manifest."""
    pointer = store.read_pointer()
    assert pointer is not None
    root = store.fetch(pointer, tmp_path / "fetched")
    return load_bundle(root, all_tiers=True), Manifest.read(root)


def test_weekly_delta_without_a_file_keeps_every_story_field(
    base_catalogue: Catalogue, storied_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    # Given a base bundle with synopses, English titles, ratings and studios, and this week's manami
    # release (none of them in it), with no story-text file configured
    store = LocalArtifactStore(tmp_path / "store")
    week = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))

    # When the delta runs
    summary = run(store, storied_layer, week, tmp_path)

    # Then only the source's changes count, and every anime keeps all of its story fields
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    assert summary.story_text_carried == len(STORIES)
    assert summary.embedded == 3  # the two new anime and re-tagged Cowboy Bebop
    bundle, _ = published(store, tmp_path)
    for anime in bundle.catalogue:
        old = storied_catalogue.get(anime.id)
        assert story_fields(anime) == ({} if old is None else story_fields(old))
    bebop = bundle.catalogue.by_id(COWBOY_BEBOP)
    assert (bebop.title_english, bebop.content_rating, bebop.studios) == ("Cowboy Bebop", "r", ("Sunrise",))


def test_rating_or_studios_alone_update_the_record_but_re_embed_nothing(
    base_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    # Given an unchanged release and a story-text file that only re-rates Spirited Away and adds a studio
    store = LocalArtifactStore(tmp_path / "store")
    same = write_manami(tmp_path / "same.jsonl", list(base_catalogue))
    story = write_storytext(
        tmp_path / "story.jsonl",
        with_story(SPIRITED_AWAY, rating="G - All Ages", studios=["Studio Ghibli", "Toho"]),
    )

    # When the delta runs with it
    summary = run(store, storied_layer, same, tmp_path, storytext_path=story)

    # Then the anime changed (a new version with the new rating is published) ...
    assert summary.status == "published"
    assert summary.counts["changed"] == 1 and summary.counts["added"] == summary.counts["removed"] == 0
    bundle, manifest = published(store, tmp_path)
    spirited = bundle.catalogue.by_id(SPIRITED_AWAY)
    assert spirited.content_rating == "g" and spirited.studios == ("Studio Ghibli", "Toho")
    # ... but its encoder text did not: nothing was embedded, its vectors are the base's bit for bit
    assert summary.embedded == 0 and manifest.extra["delta"]["embedded"] == 0
    base = load_bundle(storied_layer, all_tiers=True)
    assert anime_text(spirited) == anime_text(base.catalogue.by_id(SPIRITED_AWAY))
    for space, index in bundle.indexes.items():
        np.testing.assert_array_equal(index.vector(SPIRITED_AWAY), base.indexes[space].vector(SPIRITED_AWAY))


def test_a_new_synopsis_re_embeds_that_anime(
    base_catalogue: Catalogue, storied_layer: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Given an unchanged release and a story-text file with a new synopsis for Spirited Away
    store = LocalArtifactStore(tmp_path / "store")
    same = write_manami(tmp_path / "same.jsonl", list(base_catalogue))
    synopsis = "A girl trapped among spirits works for a witch and befriends a river dragon."
    story = write_storytext(tmp_path / "story.jsonl", with_story(SPIRITED_AWAY, synopsis=synopsis))

    # When the delta runs with it
    summary = run(store, storied_layer, same, tmp_path, storytext_path=story)

    # Then that anime alone changed and was re-embedded from its new text
    assert summary.status == "published"
    assert summary.counts["changed"] == 1 and summary.embedded == 1
    bundle, _ = published(store, tmp_path)
    spirited = bundle.catalogue.by_id(SPIRITED_AWAY)
    assert spirited.synopsis == synopsis and spirited.content_rating == "pg"
    fresh = OnnxEncoder.load(tiny_model_dir, threads=1).encode([anime_text(spirited)])
    for space, index in bundle.indexes.items():
        np.testing.assert_allclose(index.vector(SPIRITED_AWAY), fresh[space][0], atol=1e-5)
    # ... and /search finds it by its new story words
    assert bundle.lexical is not None
    assert bundle.lexical.search("dragon witch", 1)[0].anime_id == SPIRITED_AWAY


def test_anime_only_the_file_has_join_with_storytext_adds(
    base_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    # Given an unchanged release and the base's story text plus a record for an anime the source lacks
    same = write_manami(tmp_path / "same.jsonl", list(base_catalogue))
    frieren = {"title": "Sousou no Frieren", "synopsis": "An elf mage outlives her party.", "type": "TV"}
    story = write_storytext(tmp_path / "story.jsonl", {**STORIES, FRIEREN: frieren})

    # When the delta runs without `storytext_adds`, then the file's own anime stays out: nothing changed
    plain = run(LocalArtifactStore(tmp_path / "plain"), storied_layer, same, tmp_path, storytext_path=story)
    assert plain.status == "unchanged"

    # When it runs with it, then that anime joins (and is embedded), the rest is untouched
    store = LocalArtifactStore(tmp_path / "store")
    summary = run(store, storied_layer, same, tmp_path, storytext_path=story, storytext_adds=True)
    assert summary.status == "published"
    assert {k: summary.counts[k] for k in ("added", "changed", "removed")} == {
        "added": 1,
        "changed": 0,
        "removed": 0,
    }
    assert summary.embedded == 1
    bundle, _ = published(store, tmp_path)
    added = bundle.catalogue.by_id(FRIEREN)
    assert added.title == "Sousou no Frieren" and added.synopsis == frieren["synopsis"]


@pytest.mark.parametrize(
    "content",
    [
        b"[1, 2",  # a JSON array cut short
        b'{"title": "no id"}\n{"name": "nor here"}\n',  # objects, none with a MyAnimeList id
        b"name,title\n1,Cowboy Bebop\n",  # a CSV without a synopsis column
    ],
)
def test_bad_storytext_file_refuses_the_delta(
    content: bytes, base_catalogue: Catalogue, storied_layer: Path, tmp_path: Path
) -> None:
    # Given this week's release and a configured story-text file that is not usable
    store = LocalArtifactStore(tmp_path / "store")
    bad = tmp_path / "story.jsonl"
    bad.write_bytes(content)
    week = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))

    # When the delta runs, then it is refused and nothing is published
    summary = run(store, storied_layer, week, tmp_path, storytext_path=bad)
    assert summary.status == "refused" and summary.refusal_code == "invalid_storytext"
    assert summary.refusal_reason and "story-text file" in summary.refusal_reason
    assert store.read_pointer() is None and not (tmp_path / "store" / "versions").exists()


def test_storytext_source_supersedes_the_synopses_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given only the older variable: it is the story-text location
    monkeypatch.setenv("SYNOPSES_SOURCE_URL", "s3://bucket/incoming/synopses.csv")
    monkeypatch.setenv("STORYTEXT_SOURCE_URL", " ")  # SAM passes an unset parameter as empty
    monkeypatch.setenv("STORYTEXT_ADDS", "")
    settings = DeltaSettings.from_env()
    assert settings.story_text_url == "s3://bucket/incoming/synopses.csv"
    assert settings.storytext_source_url is None and settings.storytext_adds is False

    # Given both: the new one wins; STORYTEXT_ADDS reads the template's true|false
    monkeypatch.setenv("STORYTEXT_SOURCE_URL", "s3://bucket/incoming/storytext.jsonl.zst")
    monkeypatch.setenv("STORYTEXT_ADDS", "true")
    settings = DeltaSettings.from_env()
    assert settings.story_text_url == "s3://bucket/incoming/storytext.jsonl.zst"
    assert settings.storytext_adds is True

    # Given neither: no story-text file (the base's story text is carried)
    monkeypatch.delenv("SYNOPSES_SOURCE_URL")
    monkeypatch.delenv("STORYTEXT_SOURCE_URL")
    assert DeltaSettings.from_env().story_text_url is None


def test_delta_command_takes_a_storytext_file() -> None:
    parser = argparse.ArgumentParser()
    delta_stage.register(parser.add_subparsers())
    args = parser.parse_args(["delta", "--catalogue", "c.json", "--storytext", "s.jsonl", "--storytext-adds"])
    assert delta_stage.story_text_file(args) == Path("s.jsonl") and args.storytext_adds
    # The older flag still works, as the same input
    args = parser.parse_args(["delta", "--catalogue", "c.json", "--synopses", "s.csv"])
    assert delta_stage.story_text_file(args) == Path("s.csv") and not args.storytext_adds
    assert delta_stage.story_text_file(parser.parse_args(["delta", "--catalogue", "c.json"])) is None
    with pytest.raises(SystemExit):
        parser.parse_args(["delta", "--catalogue", "c.json", "--storytext", "a", "--synopses", "b"])
