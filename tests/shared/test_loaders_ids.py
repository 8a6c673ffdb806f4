"""Ids: duplicates keep the most information, derived ids are deterministic and collision-free."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from loaders_support import BEBOP, MOVIE, load, pretty, write

from anime_recommender.loaders import SYNTHETIC_ID_BASE, assign_derived_ids, derived_id_key
from anime_recommender.loaders import ids as loader_ids


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
    monkeypatch.setattr(loader_ids, "derived_id", lambda key: 2 * SYNTHETIC_ID_BASE - 1)
    ids = assign_derived_ids(
        ["https://anilist.co/anime/2", "https://anilist.co/anime/1", "https://anidb.net/anime/9"]
    )
    assert ids == {
        "https://anidb.net/anime/9": 2 * SYNTHETIC_ID_BASE - 1,
        "https://anilist.co/anime/1": SYNTHETIC_ID_BASE,  # wrapped around inside the range
        "https://anilist.co/anime/2": SYNTHETIC_ID_BASE + 1,
    }
