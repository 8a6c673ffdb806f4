"""Packed id lists (`id_lists`): what the saved lookup tables restore."""

from __future__ import annotations

import marshal
import sys

import pytest

from anime_recommender.id_lists import IdLists, KeyedIdLists


def test_lists_round_trip_through_marshal_as_plain_ints() -> None:
    lists = IdLists.pack([[5, 1], [], [2**40, 7, 7]])
    restored = IdLists.from_state(marshal.loads(marshal.dumps(lists.state())))
    assert restored == lists
    assert [list(ids) for ids in restored] == [[5, 1], [], [2**40, 7, 7]]
    assert all(type(i) is int for i in restored[2])  # JSON-ready, unlike numpy scalars
    assert restored.start(2) == 2


def test_keyed_lists_read_like_a_dict_of_sets() -> None:
    table = KeyedIdLists.pack({"naruto": {20, 1735}, "bebop": {1}})
    restored = KeyedIdLists.from_state(marshal.loads(marshal.dumps(table.state())))
    assert restored == table
    assert list(restored) == ["naruto", "bebop"]
    assert list(restored["naruto"]) == [20, 1735]
    assert restored.get("missing", ()) == ()


def test_lists_of_another_byte_order_or_inconsistent_are_refused() -> None:
    _, starts, flat = IdLists.pack([[1, 2]]).state()
    other = "big" if sys.byteorder == "little" else "little"
    with pytest.raises(ValueError, match="endian"):
        IdLists.from_state([other, starts, flat])
    with pytest.raises(ValueError, match="offsets"):
        IdLists.from_state([sys.byteorder, starts, flat[:8]])
    with pytest.raises(ValueError):
        IdLists.from_state([sys.byteorder, starts, flat[:5]])
    with pytest.raises(ValueError, match="keys"):
        KeyedIdLists(["a", "b"], IdLists.pack([[1]]))
