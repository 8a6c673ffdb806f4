"""Approximate nearest-neighbour search over unit vectors: hnswlib with explicit anime-id labels.

Why `chroma-hnswlib` (Chroma's fork, imported as `hnswlib`) rather than nmslib's source distribution:
upstream hnswlib ships only an sdist that compiles with `-march=native`, so a wheel built on the build
machine may use AVX-512 and die with SIGILL on whatever CPU Lambda lands on (HNSWLIB_NO_NATIVE=1 avoids
that, but then every build needs a C++ toolchain and a cross-compiler for arm64). chroma-hnswlib 0.7.6
publishes manylinux2014 cp312 wheels for x86_64 *and* aarch64, built portably (the x86_64 `.so` contains
no ymm/zmm instructions: SSE only), with the same API plus a `filter` callable on `knn_query`.

Labels are our own ints, never anime ids: `label_ids[label]` is the anime id (or -1 once the label is
gone), saved beside the index as `ids.npy`. New anime always get a fresh label, which sidesteps
hnswlib's pitfalls around `replace_deleted` (reusing an existing label with a vacant slot leaves two
elements under one label) and around re-adding a deleted label (`addPoint` refuses when
`allow_replace_deleted` is on). `allow_replace_deleted=True` is passed at build *and* load, because
hnswlib does not persist it. `ef` is not persisted either: callers pass it (the manifest holds it).

Thread safety: concurrent searches are safe; mutations (`add`, `mark_deleted`) must not run concurrently
with searches on the same object (the delta update works on its own copy).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

INDEX_FILE = "index.bin"
IDS_FILE = "ids.npy"
META_FILE = "index.json"
FORMAT_VERSION = 1

# hnswlib's saveIndex header: six size_t, int maxlevel, uint enterpoint, three size_t, double mult,
# size_t ef_construction; then `count` fixed-size level-0 records [links | vector | label].
_HEADER = struct.Struct("<6QiI3QdQ")

# Below this many allowed items, an exact scan of their vectors beats filtered graph search
# (measured: hnswlib's Python filter callback costs ~40-55 ms when 0.5% of 20k items pass).
EXACT_SCAN_MAX = 2048
# Over-fetch factor for moderately selective filters before falling back to hnswlib's filter.
OVERFETCH_FACTOR = 2.0
OVERFETCH_MAX = 1024


class UnknownAnimeError(KeyError):
    """The anime id is not (or no longer) in the index."""


class IndexFormatError(ValueError):
    """An index directory that this code cannot read consistently."""


@dataclass(frozen=True)
class IndexParams:
    """hnswlib construction parameters (M, ef_construction) and the query-time `ef`."""

    M: int = 16
    ef_construction: int = 200
    ef: int = 64


def _normalise(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Float32, C-contiguous, unit-length rows; zero or non-finite rows are refused."""
    arr = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        raise ValueError(f"expected vectors of shape (n, {dim}), got {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("vectors must be finite and non-zero")
    return np.ascontiguousarray(arr / norms)


class VectorIndex:
    """An hnswlib 'ip' index over unit vectors, labelled by anime id; cosine = inner product."""

    def __init__(self, index: hnswlib.Index, label_ids: np.ndarray, params: IndexParams) -> None:
        self._index = index
        self._label_ids = np.asarray(label_ids, dtype=np.int64).copy()
        # anime id → label (one C-level pass; -1 marks labels of removed anime)
        self._label_of: dict[int, int] = dict(
            zip(self._label_ids.tolist(), range(len(self._label_ids)), strict=True)
        )
        self._label_of.pop(-1, None)
        self._deleted_labels: set[int] = set()
        self.params = params
        self._index.set_ef(params.ef)
        # Exact-scan view: vectors by row, plus label → row (-1 when absent). None after mutations.
        self._flat: np.ndarray | None = None
        self._flat_row: np.ndarray | None = None

    # ---- construction and persistence -------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Iterable[int],
        vectors: np.ndarray,
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 64,
        *,
        threads: int = 1,
        seed: int = 100,
    ) -> VectorIndex:
        """Build an index; label i is row i of `ids`/`vectors` (vectors are L2-normalised here)."""
        id_arr = np.asarray(list(ids), dtype=np.int64)
        vecs = _normalise(vectors)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids but {len(vecs)} vectors")
        if len(np.unique(id_arr)) != len(id_arr) or (len(id_arr) and id_arr.min() < 0):
            raise ValueError("anime ids must be unique and non-negative")
        index = hnswlib.Index(space="ip", dim=vecs.shape[1])
        index.init_index(
            max_elements=max(1, len(vecs)),
            M=M,
            ef_construction=ef_construction,
            random_seed=seed,
            allow_replace_deleted=True,
        )
        if len(vecs):
            index.add_items(vecs, np.arange(len(vecs), dtype=np.int64), num_threads=threads)
        out = cls(index, id_arr, IndexParams(M=M, ef_construction=ef_construction, ef=ef))
        out._flat, out._flat_row = vecs, np.arange(len(vecs), dtype=np.int64)
        out._index.set_num_threads(1)
        return out

    def save(self, directory: Path) -> list[Path]:
        """Write `index.bin`, `ids.npy` and `index.json` into `directory`; returns the files."""
        directory.mkdir(parents=True, exist_ok=True)
        index_path = directory / INDEX_FILE
        self._index.save_index(str(index_path))
        np.save(directory / IDS_FILE, self._label_ids)
        meta = {
            "format": FORMAT_VERSION,
            "space": "ip",
            "dim": self.dim,
            "M": self.params.M,
            "ef_construction": self.params.ef_construction,
            "count": len(self),
            "labels": len(self._label_ids),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._flat, self._flat_row = _flat_view(index_path, self.dim, len(self._label_ids))
        return [index_path, directory / IDS_FILE, directory / META_FILE]

    @classmethod
    def load(cls, directory: Path, *, ef: int, threads: int = 1) -> VectorIndex:
        """Load a saved index; `ef` comes from the manifest because hnswlib does not store it."""
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format") != FORMAT_VERSION or meta.get("space") != "ip":
            raise IndexFormatError(f"{directory}: unsupported index format {meta.get('format')!r}")
        label_ids = np.load(directory / IDS_FILE, allow_pickle=False)
        index = hnswlib.Index(space="ip", dim=int(meta["dim"]))
        index.load_index(str(directory / INDEX_FILE), allow_replace_deleted=True)
        index.set_num_threads(threads)
        params = IndexParams(M=int(meta["M"]), ef_construction=int(meta["ef_construction"]), ef=ef)
        held = index.get_ids_list()  # every label hnswlib holds, marked-deleted ones included
        if held and max(held) >= len(label_ids):
            raise IndexFormatError(f"{directory}: label {max(held)} beyond ids.npy ({len(label_ids)})")
        out = cls(index, label_ids, params)
        # ids.npy says -1 for deleted labels; hnswlib still holds them until a slot is reused.
        out._deleted_labels = {label for label in held if label_ids[label] < 0}
        if set(out._label_of.values()) - set(held):
            raise IndexFormatError(f"{directory}: ids.npy names labels the index does not hold")
        out._flat, out._flat_row = _flat_view(directory / INDEX_FILE, out.dim, len(label_ids))
        return out

    # ---- introspection ----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._index.dim)

    @property
    def capacity(self) -> int:
        """hnswlib's max_elements (grows by `resize_index` when adding)."""
        return int(self._index.get_max_elements())

    @property
    def ids(self) -> np.ndarray:
        """Live anime ids (sorted)."""
        return np.array(sorted(self._label_of), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, anime_id: object) -> bool:
        return anime_id in self._label_of

    def label(self, anime_id: int) -> int:
        """The hnswlib label of a live anime id; UnknownAnimeError when unknown."""
        try:
            return self._label_of[int(anime_id)]
        except KeyError:
            raise UnknownAnimeError(anime_id) from None

    def vector(self, anime_id: int) -> np.ndarray:
        """The stored unit vector of an anime (float32 copy)."""
        label = self.label(anime_id)
        if self._flat is not None and self._flat_row is not None and self._flat_row[label] >= 0:
            return np.array(self._flat[self._flat_row[label]], dtype=np.float32)
        return np.asarray(self._index.get_items([label])[0], dtype=np.float32)

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored unit vectors of many anime at once: (float32 [n, dim], present bool [n]).

        Rows of ids that are not (or no longer) in the index are zero and `present` is False there,
        so `matrix @ query` gives 0 for them. One gather from the flat view instead of n lookups.
        """
        labels = np.fromiter((self._label_of.get(int(i), -1) for i in ids), dtype=np.int64, count=len(ids))
        present = labels >= 0
        out = np.zeros((len(labels), self.dim), dtype=np.float32)
        if not present.any():
            return out, present
        live = labels[present]
        if self._flat is not None and self._flat_row is not None:
            rows = self._flat_row[live]
            if np.all(rows >= 0):
                out[present] = self._flat[rows]
                return out, present
        out[present] = np.asarray(self._index.get_items(live.tolist()), dtype=np.float32)
        return out, present

    # ---- search -----------------------------------------------------------------------------

    def search(
        self,
        vector: np.ndarray,
        k: int,
        allowed: set[int] | None = None,
        exclude: Iterable[int] | None = None,
    ) -> list[tuple[int, float]]:
        """The k nearest anime as (anime id, cosine), best first.

        `allowed` restricts results to those anime ids; `exclude` removes ids (e.g. the query anime).
        Returns k results whenever at least k live anime pass both: small allowed sets are scanned
        exactly, larger ones over-fetched and then, if still short, searched with hnswlib's filter.
        """
        if k <= 0 or not self._label_of:
            return []
        query = _normalise(vector, self.dim)
        excluded = {self._label_of[i] for i in (exclude or ()) if i in self._label_of}
        if allowed is None:
            k_eff = min(k, len(self._label_of) - len(excluded))
            if k_eff <= 0:
                return []
            labels, sims = self._knn(query, k_eff + len(excluded))
            return self._pairs(labels, sims, excluded, k_eff)
        wanted = {self._label_of[i] for i in allowed if i in self._label_of} - excluded
        k_eff = min(k, len(wanted))
        if k_eff == 0:
            return []
        if len(wanted) <= EXACT_SCAN_MAX:
            return self._exact(query, wanted, k_eff)
        fetch = math.ceil(k_eff * OVERFETCH_FACTOR * len(self._label_of) / len(wanted)) + len(excluded)
        if fetch <= OVERFETCH_MAX:
            labels, sims = self._knn(query, min(fetch, len(self._label_of)))
            result = self._pairs(labels, sims, excluded, k_eff, wanted)
            if len(result) == k_eff:
                return result
        labels, sims = self._knn(query, k_eff, wanted.__contains__)
        return self._pairs(labels, sims, excluded, k_eff, wanted)

    def knn_batch(self, vectors: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered batch search: (anime ids [n,k], cosines [n,k]); for evaluation and bulk work."""
        queries = _normalise(vectors, self.dim)
        k = min(k, len(self._label_of))
        labels, dist = self._index.knn_query(queries, k=k, num_threads=threads)
        return self._label_ids[labels.astype(np.int64)], (1.0 - dist).astype(np.float32)

    def _knn(
        self, query: np.ndarray, k: int, filter_fn: Callable[[int], bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        labels, dist = self._index.knn_query(query, k=k, num_threads=1, filter=filter_fn)
        return labels[0].astype(np.int64), 1.0 - dist[0]

    def _pairs(
        self,
        labels: np.ndarray,
        sims: np.ndarray,
        excluded: set[int],
        k: int,
        wanted: set[int] | None = None,
    ) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for label, sim in zip(labels.tolist(), sims.tolist(), strict=True):
            if label in excluded or (wanted is not None and label not in wanted):
                continue
            out.append((int(self._label_ids[label]), float(sim)))
            if len(out) == k:
                break
        return out

    def _exact(self, query: np.ndarray, wanted: set[int], k: int) -> list[tuple[int, float]]:
        labels = np.fromiter(wanted, dtype=np.int64, count=len(wanted))
        if self._flat is not None and self._flat_row is not None and np.all(self._flat_row[labels] >= 0):
            mat = self._flat[self._flat_row[labels]]
        else:
            mat = np.asarray(self._index.get_items(labels.tolist()), dtype=np.float32)
        sims = mat @ query[0]
        top = np.argsort(-sims, kind="stable")[:k]
        return [(int(self._label_ids[labels[i]]), float(sims[i])) for i in top]

    # ---- updates ----------------------------------------------------------------------------

    def add(self, ids: Iterable[int], vectors: np.ndarray, *, threads: int = 1) -> None:
        """Insert new anime or replace the vectors of existing ones (upsert), growing as needed.

        Existing live ids are updated in place under their label. New ids get fresh labels and
        reuse the slots of deleted elements (`replace_deleted=True`) before growing the index.
        """
        id_list = [int(i) for i in ids]
        vecs = _normalise(vectors, self.dim)
        if len(id_list) != len(vecs):
            raise ValueError(f"{len(id_list)} ids but {len(vecs)} vectors")
        if len(set(id_list)) != len(id_list) or any(i < 0 for i in id_list):
            raise ValueError("anime ids must be unique and non-negative")
        existing = [row for row, aid in enumerate(id_list) if aid in self._label_of]
        new = [row for row, aid in enumerate(id_list) if aid not in self._label_of]
        self._flat = self._flat_row = None
        if existing:
            labels = np.array([self._label_of[id_list[r]] for r in existing], dtype=np.int64)
            # Live labels: a plain addPoint updates the vector in place (never replace_deleted here:
            # with a vacant slot that would leave the old element under the same label).
            self._index.add_items(vecs[existing], labels, num_threads=threads)
        if new:
            free_slots = len(self._deleted_labels)
            needed = self._index.element_count + max(0, len(new) - free_slots)
            if needed > self.capacity:
                # Grow with headroom so weekly deltas do not resize (reallocate) every time.
                self._index.resize_index(max(needed, int(self.capacity * 1.1) + 16))
            first = len(self._label_ids)
            labels = np.arange(first, first + len(new), dtype=np.int64)
            self._label_ids = np.concatenate(
                [self._label_ids, np.array([id_list[r] for r in new], dtype=np.int64)]
            )
            self._index.add_items(vecs[new], labels, num_threads=threads, replace_deleted=True)
            reused = min(free_slots, len(new))
            # hnswlib drops the labels of the slots it reused; which ones is its choice, so ask it.
            if reused:
                self._deleted_labels &= set(self._index.get_ids_list())
            for row, label in zip(new, labels.tolist(), strict=True):
                self._label_of[id_list[row]] = label

    replace = add

    def mark_deleted(self, ids: Iterable[int]) -> int:
        """Hide anime from search (their slots are reused by later `add`s); returns how many."""
        count = 0
        for aid in {int(i) for i in ids}:
            label = self._label_of.pop(aid, None)
            if label is None:
                continue
            self._index.mark_deleted(label)
            self._deleted_labels.add(label)
            self._label_ids[label] = -1
            count += 1
        return count


def _flat_view(index_path: Path, dim: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy view of the vectors inside a saved hnswlib file, plus label → row.

    Reads hnswlib's documented level-0 layout (pinned chroma-hnswlib 0.7.6), so exact scans
    over small filtered sets need no second copy of the vectors on disk.
    """
    with index_path.open("rb") as fh:
        header = _HEADER.unpack(fh.read(_HEADER.size))
    _, _, count, size_per_element, label_offset, data_offset = header[:6]
    if data_offset + 4 * dim > label_offset or label_offset + 8 > size_per_element:
        raise IndexFormatError(f"{index_path}: unexpected hnswlib layout {header[:6]}")
    if count == 0:
        return np.zeros((0, dim), dtype=np.float32), np.full(n_labels, -1, dtype=np.int64)
    size = count * size_per_element
    raw = np.memmap(index_path, dtype=np.uint8, mode="r", offset=_HEADER.size, shape=(size,))
    records = raw.reshape(count, size_per_element)
    vectors = np.ndarray(
        shape=(count, dim),
        dtype=np.float32,
        buffer=raw,
        offset=data_offset,
        strides=(size_per_element, 4),
    )
    labels = np.ascontiguousarray(records[:, label_offset : label_offset + 8]).view(np.int64).ravel()
    row_of = np.full(max(n_labels, int(labels.max()) + 1), -1, dtype=np.int64)
    row_of[labels] = np.arange(count, dtype=np.int64)
    return vectors, row_of
