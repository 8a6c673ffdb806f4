"""Precomputed top-K neighbour lists (the V2 teacher's output, and the API's last fallback tier).

Neighbours are stored as anime ids, not rows, so a list stays meaningful when the
catalogue around it changes (a delta update only rewrites the lists it must).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_ARRAYS = ("ids", "neighbour_ids", "scores")


@dataclass(frozen=True)
class NeighbourLists:
    """`ids` int64 [n] (sorted anime ids), `neighbour_ids` int32 [n, k] (anime ids),
    `scores` float16 [n, k], each row in descending score order."""

    ids: np.ndarray
    neighbour_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError("ids must be one-dimensional")
        n = ids.shape[0]
        nb = np.asarray(self.neighbour_ids)
        if nb.ndim != 2 or nb.shape[0] != n:
            raise ValueError(f"neighbour_ids must have shape ({n}, k), got {nb.shape}")
        if nb.size and (nb.min() < np.iinfo(np.int32).min or nb.max() > np.iinfo(np.int32).max):
            raise ValueError("neighbour ids do not fit in int32")
        scores = np.asarray(self.scores, dtype=np.float16)
        if scores.shape != nb.shape:
            raise ValueError(f"scores must have shape {nb.shape}, got {scores.shape}")
        if n > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ValueError("ids must be strictly increasing (catalogue row order)")
        # Frozen dataclass: normalise dtypes once, here.
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "neighbour_ids", nb.astype(np.int32, copy=False))
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __contains__(self, anime_id: object) -> bool:
        return isinstance(anime_id, int | np.integer) and self._row(int(anime_id)) is not None

    @property
    def k(self) -> int:
        """Length of every list."""
        return int(self.neighbour_ids.shape[1])

    def _row(self, anime_id: int) -> int | None:
        row = int(np.searchsorted(self.ids, anime_id))
        return row if row < len(self.ids) and int(self.ids[row]) == anime_id else None

    def for_id(self, anime_id: int, k: int | None = None) -> list[tuple[int, float]]:
        """The (neighbour id, score) list of one anime, best first; KeyError when unknown."""
        row = self._row(anime_id)
        if row is None:
            raise KeyError(anime_id)
        end = self.k if k is None else max(0, min(k, self.k))
        return [
            (int(i), float(s))
            for i, s in zip(self.neighbour_ids[row, :end], self.scores[row, :end], strict=True)
        ]

    def with_lists(self, other: NeighbourLists) -> NeighbourLists:
        """These lists with `other`'s rows replacing (or adding) those of the same ids."""
        if other.k != self.k and len(other) and len(self):
            raise ValueError(f"cannot merge lists of length {other.k} into lists of length {self.k}")
        keep = ~np.isin(self.ids, other.ids)
        ids = np.concatenate([self.ids[keep], other.ids])
        order = np.argsort(ids, kind="stable")
        k = self.k if len(self) else other.k
        return NeighbourLists(
            ids=ids[order],
            neighbour_ids=np.concatenate([self.neighbour_ids[keep].reshape(-1, k), other.neighbour_ids])[
                order
            ],
            scores=np.concatenate([self.scores[keep].reshape(-1, k), other.scores])[order],
        )

    def without_ids(self, anime_ids: Iterable[int]) -> NeighbourLists:
        """These lists minus the rows of `anime_ids` (their appearances inside other lists stay)."""
        keep = ~np.isin(self.ids, np.fromiter(anime_ids, dtype=np.int64))
        return NeighbourLists(self.ids[keep], self.neighbour_ids[keep], self.scores[keep])

    def save(self, path: Path, *, compress: bool = True) -> None:
        """Write as a .npz (ids, neighbour_ids, scores); `load` reads either form.

        `compress=False` stores the arrays as they are: about twice the bytes but ~50x faster to
        write (deflating 17k lists takes ~1 s), which is what a delta update wants.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        write = np.savez_compressed if compress else np.savez
        with path.open("wb") as fh:
            write(fh, ids=self.ids, neighbour_ids=self.neighbour_ids, scores=self.scores)

    @classmethod
    def load(cls, path: Path) -> NeighbourLists:
        """Read lists written by `save`; ValueError naming the file when arrays are missing or malformed."""
        try:
            arrays = _read_npz(path, _ARRAYS)
            return cls(ids=arrays["ids"], neighbour_ids=arrays["neighbour_ids"], scores=arrays["scores"])
        except (KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a valid neighbour-list file ({exc})") from exc


def _read_npz(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named arrays of a .npz, each member inflated by ONE zipfile read.

    `np.load` reads a member in 256 kB pieces, taking the GIL for each; at cold start this runs on a
    loader thread beside the catalogue parse, which holds the GIL in long stretches, so the lists
    waited ~0.1 s for their turns. One read is one inflate and one CRC check, both in C without the
    GIL; the array is then a view of those bytes (read-only, as nothing writes to the lists).
    """
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        for name in names:
            raw = archive.read(f"{name}.npy")
            header = io.BytesIO(raw)
            version = np.lib.format.read_magic(header)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(header)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(header)
            else:
                raise ValueError(f"{name}: .npy format version {version} not supported")
            if dtype.hasobject:
                raise ValueError(f"{name}: object arrays are not allowed")
            count = int(np.prod(shape, dtype=np.int64))
            flat = np.frombuffer(raw, dtype=dtype, count=count, offset=header.tell())
            arrays[name] = flat.reshape(shape, order="F" if fortran_order else "C")
    return arrays
