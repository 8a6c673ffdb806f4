"""The delta plan (`delta/plan.py`): added / changed / removed by content hash, refusals, and
hashing the new catalogue against the base's saved lines."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from delta_support import weekly_change

from anime_recommender.artifacts import data_version
from anime_recommender.catalogue import Anime, Catalogue, saved_lines, with_fields
from anime_recommender.delta.plan import (
    BaseRecords,
    DeltaPolicy,
    DeltaRefusedError,
    carry_base_story_text,
    hash_new_catalogue,
    plan_delta,
    story_fields,
)


def test_plan_classifies_added_changed_removed(base_catalogue: Catalogue) -> None:
    # Given a weekly change; When planned; Then each kind is found by content hash
    plan = plan_delta(base_catalogue, Catalogue(weekly_change(base_catalogue)))
    assert plan.added == (29277, 52991)
    assert plan.changed == (1,)
    assert plan.removed == (40000,)
    assert plan.unchanged == len(base_catalogue) - 2
    assert plan.base_version != plan.new_version
    assert plan_delta(base_catalogue, base_catalogue).is_empty


def base_records(catalogue: Catalogue, path: Path) -> BaseRecords:
    """`catalogue` saved to `path` and read back as a base bundle's records (lines, hashes, story)."""
    catalogue.save(path)
    hashes = catalogue.content_hashes()
    story = {a.id: fields for a in catalogue if (fields := story_fields(a))}
    return BaseRecords(hashes, saved_lines(path), data_version(hashes), story)


def restoried(catalogue: Catalogue, changes: Mapping[int, Mapping[str, Any]]) -> Catalogue:
    """`catalogue` with the given fields of some anime replaced."""
    return Catalogue(with_fields(a, **changes[a.id]) if a.id in changes else a for a in catalogue)


def test_only_anime_whose_encoder_text_changed_are_re_embedded(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given a base with story text, and a week where one anime is re-rated and gets a studio, one is
    # re-scored and one gets a new synopsis
    base = restoried(base_catalogue, {199: {"synopsis": "A girl in a bathhouse.", "content_rating": "pg"}})
    new = restoried(
        base,
        {
            199: {"content_rating": "g", "studios": ("Studio Ghibli",)},
            6: {"score": 8.0},
            1: {"synopsis": "Bounty hunters in space."},
        },
    )

    # When planned against the base catalogue, or against its saved records (lines with story columns,
    # or a base saved before it had any story text)
    plans = [
        plan_delta(base, new),
        plan_delta(base_records(base, tmp_path / "storied.jsonl.gz"), new),
        plan_delta(
            base_records(base_catalogue, tmp_path / "plain.jsonl.gz"),
            restoried(base_catalogue, {6: {"score": 8.0}}),
        ),
    ]

    # Then every change is a change (new records, V2 lists recomputed), but only a new text is embedded
    assert plans[0].changed == plans[1].changed == plans[0].touched == (1, 6, 199)
    assert plans[0].to_embed == plans[1].to_embed == (1,)
    assert plans[2].changed == (6,) and plans[2].to_embed == ()
    # Added anime are always embedded
    added = Anime(id=77777, title="Brand New", tags=("drama",))
    plan = plan_delta(base, Catalogue([*base, added]))
    assert plan.to_embed == plan.touched == plan.added == (77777,)


def test_base_records_read_back_each_record_from_its_saved_line(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given bases saved with and without story columns
    storied = restoried(base_catalogue, {1: {"synopsis": "s", "studios": ("Sunrise",), "title_english": "e"}})
    for catalogue, name in ((storied, "storied"), (base_catalogue, "plain")):
        records = base_records(catalogue, tmp_path / f"{name}.jsonl.gz")
        # Then each line parses back into its anime (the comparison the re-embedding decision needs)
        assert [records.record(a.id) for a in catalogue] == list(catalogue)
        assert records.record(123456789) is None
    assert BaseRecords({1: "x"}, {1: b"not json"}, "v").record(1) is None


def test_base_story_text_is_carried_field_by_field(base_catalogue: Catalogue, tmp_path: Path) -> None:
    # Given a base with full story text for two anime, and a new catalogue in which one of them has
    # only a synopsis of its own (a synopsis-only file) and the other none at all
    full = {"synopsis": "old", "title_english": "E", "content_rating": "r", "studios": ("Sunrise",)}
    base = base_records(restoried(base_catalogue, {1: full, 199: full}), tmp_path / "base.jsonl.gz")
    new = restoried(base_catalogue, {1: {"synopsis": "new"}})

    # When the base's story text is carried
    carried, count = carry_base_story_text(new, base)

    # Then each anime got exactly the fields it lacked; its own text won
    assert count == 2
    assert story_fields(carried.by_id(199)) == full
    assert story_fields(carried.by_id(1)) == {**full, "synopsis": "new"}
    assert carried.by_id(6) == new.by_id(6)
    # A base without story text gives nothing, and the catalogue is returned as is
    plain = base_records(base_catalogue, tmp_path / "plain.jsonl.gz")
    assert carry_base_story_text(new, plain) == (new, 0)


def test_suspicious_shrink_is_refused(base_catalogue: Catalogue) -> None:
    smaller = Catalogue(list(base_catalogue)[:-4])  # 4 of 30 removed: 13 % > 10 %
    with pytest.raises(DeltaRefusedError) as info:
        plan_delta(base_catalogue, smaller)
    assert info.value.code == "shrink" and "4 of 30" in info.value.reason
    assert plan_delta(base_catalogue, smaller, DeltaPolicy(max_removed_share=0.2)).removed


# ---------------------------------------------------------------------------------------------
# content hashes: the new catalogue hashed against the base's saved lines
# ---------------------------------------------------------------------------------------------


def test_content_hash_is_sha256_of_sorted_compact_json(base_catalogue: Catalogue) -> None:
    # The fast path must give the very hashes (and data versions) published bundles were built with.
    odd = Anime(id=7, title='Ünïcode \u2028 "quoted"', synonyms=("x",), episodes=None, score=None)
    for anime in [*base_catalogue, odd]:
        payload = json.dumps(anime.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert anime.content_hash() == hashlib.sha256(payload.encode()).hexdigest()[:16]


def test_new_catalogue_hashes_reuse_the_base_only_for_identical_lines(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given a saved base and a week's changes (Cowboy Bebop re-tagged, one anime removed, two added)
    base_file = tmp_path / "base.jsonl.gz"
    base_catalogue.save(base_file)
    hashes = base_catalogue.content_hashes()
    base = BaseRecords(hashes=hashes, lines=saved_lines(base_file), data_version=data_version(hashes))
    new = Catalogue(weekly_change(base_catalogue))

    # When hashed against the base, from the lines it will be saved with
    lines = new.lines()
    hashes = hash_new_catalogue(new, lines, base)

    # Then every hash is the anime's own content hash (the reused ones included) ...
    assert hashes == new.content_hashes()
    assert hashes[1] != base.hashes[1]
    # ... the lines are what `save` writes, and the saved file reads back as the new catalogue
    new.save(tmp_path / "new.jsonl.gz", lines=lines)
    assert gzip.decompress((tmp_path / "new.jsonl.gz").read_bytes()).split(b"\n")[1:-1] == lines
    assert list(Catalogue.load(tmp_path / "new.jsonl.gz")) == list(new)


def test_a_stale_base_hash_is_not_reused_when_the_line_differs(
    base_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given base records whose hash for Cowboy Bebop is wrong but whose line is also different
    base_file = tmp_path / "base.jsonl.gz"
    base_catalogue.save(base_file)
    lines = saved_lines(base_file)
    lines[1] = lines[1].replace(b"Cowboy", b"Cowgirl")
    stale = {**base_catalogue.content_hashes(), 1: "0" * 16}
    base = BaseRecords(hashes=stale, lines=lines, data_version=data_version(stale))

    # When the unchanged catalogue is hashed against it, Cowboy Bebop is hashed afresh
    assert hash_new_catalogue(base_catalogue, base_catalogue.lines(), base) == base_catalogue.content_hashes()


def test_lines_mapped_to_the_wrong_ids_are_never_reused(base_catalogue: Catalogue, tmp_path: Path) -> None:
    # Given base lines read with a wrong id order (each line still starts with its own id)
    base_file = tmp_path / "base.jsonl.gz"
    base_catalogue.save(base_file)
    hashes = base_catalogue.content_hashes()
    wrong = saved_lines(base_file, ids=sorted(hashes, reverse=True))
    assert wrong != saved_lines(base_file) == saved_lines(base_file, ids=sorted(hashes))
    base = BaseRecords(hashes=hashes, lines=wrong, data_version=data_version(hashes))

    # Then hashing against them still gives every anime its own hash: a line filed under another id
    # never equals that anime's line, so no other anime's hash is taken
    assert hash_new_catalogue(base_catalogue, base_catalogue.lines(), base) == hashes
