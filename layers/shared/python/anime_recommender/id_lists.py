"""Many short lists of anime ids packed in two flat integer arrays, for the saved lookup tables.

The title and franchise indexes hold ~100k small id lists and sets. Unmarshalling them object by
object cost ~0.1 s of a 27.6k-anime cold start with the GIL held; packed, a table is two byte
strings, restored in microseconds, and a list is an array slice whose items are plain ints.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any


def _int64(raw: bytes) -> array[int]:
    values = array("q")
    values.frombytes(raw)  # ValueError when not a whole number of items
    return values


class IdLists:
    """Lists of ids: list i is `flat[starts[i] : starts[i + 1]]`."""

    def __init__(self, starts: array[int], flat: array[int]) -> None:
        if not starts or starts[0] != 0 or starts[-1] != len(flat):
            raise ValueError("id list offsets do not match their ids")
        self._starts = starts
        self._flat = flat

    @classmethod
    def pack(cls, lists: Iterable[Iterable[int]]) -> IdLists:
        """Pack `lists` in order (each list's ids in its own order)."""
        starts, flat = array("q", [0]), array("q")
        for ids in lists:
            flat.extend(ids)
            starts.append(len(flat))
        return cls(starts, flat)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdLists):
            return NotImplemented
        return self._starts == other._starts and self._flat == other._flat

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, compared by value

    def __getitem__(self, row: int) -> array[int]:
        return self._flat[self._starts[row] : self._starts[row + 1]]

    def start(self, row: int) -> int:
        """Where list `row` starts in the flat ids (its items' positions follow)."""
        return self._starts[row]

    def __iter__(self) -> Iterator[array[int]]:
        return (self[row] for row in range(len(self)))

    def state(self) -> list[Any]:
        """[byte order, starts, ids] as bytes (for marshal)."""
        return [sys.byteorder, self._starts.tobytes(), self._flat.tobytes()]

    @classmethod
    def from_state(cls, state: list[Any]) -> IdLists:
        """Inverse of `state`; ValueError when saved in the other byte order or inconsistent."""
        byteorder, starts, flat = state
        if byteorder != sys.byteorder:
            raise ValueError(f"id lists saved {byteorder}-endian")
        return cls(_int64(starts), _int64(flat))


class KeyedIdLists(Mapping[str, Sequence[int]]):
    """str → ids, read-only (a dict of id sets, packed)."""

    def __init__(self, keys: list[str], lists: IdLists) -> None:
        if len(keys) != len(lists):
            raise ValueError(f"{len(keys)} keys for {len(lists)} id lists")
        self._row = {key: row for row, key in enumerate(keys)}
        self._keys = keys
        self._lists = lists

    @classmethod
    def pack(cls, sets: Mapping[str, Iterable[int]]) -> KeyedIdLists:
        """Pack a mapping of id collections (a set's ids ascending, so equal sets pack equally)."""
        keys = list(sets)
        return cls(keys, IdLists.pack(sorted(sets[key]) for key in keys))

    def __getitem__(self, key: str) -> array[int]:
        return self._lists[self._row[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def state(self) -> list[Any]:
        """[keys, packed lists] (for marshal)."""
        return [self._keys, self._lists.state()]

    @classmethod
    def from_state(cls, state: list[Any]) -> KeyedIdLists:
        """Inverse of `state` (ValueError when inconsistent)."""
        keys, lists = state
        return cls(list(keys), IdLists.from_state(lists))
