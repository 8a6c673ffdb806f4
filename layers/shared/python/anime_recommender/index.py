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

`FlatIndex` is the other kind (`FLAT_KIND`), with the same query API: int8 vectors searched exactly by
numpy. The V3 fallback tier uses it: a flat int8 matrix is a quarter of hnswlib's float32 graph file
(10 MB instead of 47 MB at 40k anime) and an exact scan of it takes milliseconds. `index.json` says
which kind a directory holds (no `kind`: hnswlib, as every bundle before flat indexes); `load_index`
picks the class from it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import hnswlib
import numpy as np

from anime_recommender.topk import top_k_per_row

INDEX_FILE = "index.bin"
IDS_FILE = "ids.npy"
META_FILE = "index.json"
FORMAT_VERSION = 1
# FlatIndex files: int8 codes [n, dim] and per-row float32 scales of the rotated residuals, the codebook.
CODES_FILE = "vectors.npy"
SCALES_FILE = "scales.npy"
CODEBOOK_FILE = "codebook.npy"  # float32 [dim + 1, dim]: the mean, then the rotation (FlatCodebook)

IndexKind = Literal["hnsw", "flat-int8"]
HNSW_KIND: Final = "hnsw"
FLAT_KIND: Final = "flat-int8"
# Rows dequantised per matrix-vector product. Small enough that OpenBLAS runs each product on one
# thread: from 2048 rows it goes multi-threaded, and on a busy 2-core machine a 40k scan then took
# 25-80 ms instead of ~2.3 ms (17.5k: ~1 ms); below 1024 the Python loop starts to cost.
FLAT_CHUNK_ROWS = 1024
# Below this share of allowed rows, a filtered flat search gathers just those rows.
FLAT_GATHER_SHARE = 0.25

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

    kind: IndexKind = HNSW_KIND

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
        if M < 2 or ef_construction < 1:
            # hnswlib does not check: M=0 (a flat index's manifest entry) crashes the process.
            raise ValueError(f"hnswlib needs M >= 2 and ef_construction >= 1, got M={M}, {ef_construction}")
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
            "kind": HNSW_KIND,
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
        meta = _read_meta(directory, HNSW_KIND)
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

    def similarities(self, query: np.ndarray, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Inner products of `query` with many anime's vectors: (float32 [n], present [n]); 0 where absent."""
        matrix, present = self.vectors(ids)
        return matrix @ np.asarray(query, dtype=np.float32), present

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


@dataclass(frozen=True)
class FlatCodebook:
    """How a flat index quantises: rows are stored as int8 codes of `(x - mean) @ rotation`.

    Catalogue vectors share a large common direction (the V3 mean has norm ~0.65), so the residual
    is what varies; a random rotation spreads each residual evenly over the dimensions, so no single
    component sets a coarse int8 step. Measured on the shipped V3 (17,562 anime, 1,000 catalogue
    queries, exact float top-10 as truth): recall@10 0.978 quantising rows as they are, 0.989 with
    the mean removed, 0.995 with the mean removed and the rotation.
    """

    mean: np.ndarray  # float32 [dim]
    rotation: np.ndarray  # float32 [dim, dim], orthogonal

    @classmethod
    def fit(cls, unit: np.ndarray, seed: int = 0) -> FlatCodebook:
        """The mean of `unit`'s rows and a seeded random rotation."""
        dim = unit.shape[1]
        q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        rotation = q * np.sign(np.diag(r))  # a uniformly random orthogonal matrix
        mean = unit.mean(axis=0) if len(unit) else np.zeros(dim)
        return cls(mean.astype(np.float32), rotation.astype(np.float32))

    def quantise(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int8 codes (each row's largest component at ±127) and the per-row float32 scale."""
        residual = (unit - self.mean) @ self.rotation
        peak = np.abs(residual).max(axis=1, keepdims=True)
        peak[peak == 0] = 1.0
        codes = np.clip(np.rint(residual * (127.0 / peak)), -127, 127).astype(np.int8)
        return codes, (peak[:, 0] / 127.0).astype(np.float32)

    def decode(self, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """The float32 vectors codes [n, dim] with scales [n] stand for."""
        return (codes.astype(np.float32) * scales[:, None]) @ self.rotation.T + self.mean


class FlatIndex:
    """Exact inner-product search over int8-quantised unit vectors, keyed by anime id.

    A row is stored as `FlatCodebook` codes; its score against a unit query q is
    `q·mean + scale · (codes · (q @ rotation))`, computed a chunk of rows at a time. Rows are kept
    sorted by anime id, so ties between equal scores go to the lower id and an id's row is a binary
    search. The same query API as `VectorIndex` (search, vector(s), knn_batch, add, mark_deleted,
    save/load); `vector(s)` return the decoded vectors, whose inner products are the search scores.
    """

    kind: IndexKind = FLAT_KIND
    params: IndexParams | None = None  # no graph, so no hnswlib parameters

    def __init__(
        self, ids: np.ndarray, codes: np.ndarray, scales: np.ndarray, codebook: FlatCodebook
    ) -> None:
        order = np.argsort(ids, kind="stable")
        self._ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64)[order])
        self._codes = np.ascontiguousarray(np.asarray(codes, dtype=np.int8)[order])
        self._scales = np.ascontiguousarray(np.asarray(scales, dtype=np.float32)[order])
        self.codebook = codebook
        # The codes as float32, made by the first search and kept: converting the int8 rows on every
        # search was most of a similar list's time once a bundle has two flat indexes (V3 and the
        # story index: 2 x ~25k rows, ~1.8 ms a request); 4 bytes a code (~28 MB at 27k x 256).
        self._matrix: np.ndarray | None = None
        dim = codebook.mean.shape[0]
        if (
            self._codes.ndim != 2
            or self._codes.shape != (len(self._ids), dim)
            or self._scales.shape != self._ids.shape
            or codebook.rotation.shape != (dim, dim)
        ):
            raise IndexFormatError(
                f"{len(self._ids)} ids, codes {self._codes.shape}, scales {self._scales.shape} "
                f"and a dim-{dim} codebook do not match"
            )
        if len(self._ids) and (self._ids[0] < 0 or np.any(np.diff(self._ids) == 0)):
            raise ValueError("anime ids must be unique and non-negative")

    # ---- construction and persistence -------------------------------------------------------

    @classmethod
    def build(cls, ids: Iterable[int], vectors: np.ndarray, *, seed: int = 0, **_hnsw: Any) -> FlatIndex:
        """Quantise `vectors` (L2-normalised here) for `ids`; hnswlib parameters are accepted, unused."""
        id_arr = np.asarray(list(ids), dtype=np.int64)
        vecs = _normalise(vectors)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids but {len(vecs)} vectors")
        codebook = FlatCodebook.fit(vecs, seed)
        codes, scales = codebook.quantise(vecs)
        return cls(id_arr, codes, scales, codebook)

    @classmethod
    def from_index(cls, index: VectorIndex | FlatIndex) -> FlatIndex:
        """A flat index of another index's live vectors (e.g. an hnswlib V3 of an older bundle)."""
        if isinstance(index, FlatIndex):
            return cls(index._ids, index._codes, index._scales, index.codebook)
        ids = index.ids
        return cls.build(ids, index.vectors(ids.tolist())[0])

    def save(self, directory: Path) -> list[Path]:
        """Write `vectors.npy`, `scales.npy`, `codebook.npy`, `ids.npy` and `index.json` into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / CODES_FILE, self._codes, allow_pickle=False)
        np.save(directory / SCALES_FILE, self._scales, allow_pickle=False)
        book = np.vstack([self.codebook.mean[None, :], self.codebook.rotation])
        np.save(directory / CODEBOOK_FILE, book, allow_pickle=False)
        np.save(directory / IDS_FILE, self._ids, allow_pickle=False)
        meta = {
            "format": FORMAT_VERSION,
            "kind": FLAT_KIND,
            "space": "ip",
            "dim": self.dim,
            "count": len(self),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return [directory / name for name in (CODES_FILE, SCALES_FILE, CODEBOOK_FILE, IDS_FILE, META_FILE)]

    @classmethod
    def load(cls, directory: Path, **_hnsw: Any) -> FlatIndex:
        """Load what `save` wrote (`ef`/`threads` are accepted for `load_index` and unused)."""
        meta = _read_meta(directory, FLAT_KIND)
        dim = int(meta["dim"])
        try:
            codes = np.load(directory / CODES_FILE, allow_pickle=False)
            scales = np.load(directory / SCALES_FILE, allow_pickle=False)
            book = np.load(directory / CODEBOOK_FILE, allow_pickle=False)
            ids = np.load(directory / IDS_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{directory}: {exc}") from exc
        if codes.dtype != np.int8 or book.shape != (dim + 1, dim) or ids.ndim != 1:
            raise IndexFormatError(f"{directory}: codes {codes.dtype}, codebook {book.shape}: not dim {dim}")
        if np.any(np.diff(ids) <= 0):
            raise IndexFormatError(f"{directory}: ids.npy is not sorted and unique")
        codebook = FlatCodebook(book[0].astype(np.float32), np.ascontiguousarray(book[1:], dtype=np.float32))
        index = cls(ids, codes, scales, codebook)
        # The search rows made now, on the bundle loader's thread beside the catalogue parse (numpy
        # converts without the GIL), rather than by the first request (+15-30 ms for V3 and story).
        index._matrix = index._codes.astype(np.float32)
        return index

    # ---- introspection ----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._codes.shape[1])

    @property
    def ids(self) -> np.ndarray:
        """Live anime ids (sorted)."""
        return self._ids.copy()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, anime_id: object) -> bool:
        if not isinstance(anime_id, int | np.integer):
            return False
        return bool(self._rows([int(anime_id)])[0] >= 0)

    def _rows(self, ids: Iterable[int]) -> np.ndarray:
        """Row per id (-1 where absent), by binary search over the sorted ids."""
        arr = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(self._ids):
            return np.full(len(arr), -1, dtype=np.int64)
        pos = np.searchsorted(self._ids, arr)
        found = (pos < len(self._ids)) & (self._ids[np.minimum(pos, len(self._ids) - 1)] == arr)
        return np.where(found, pos, -1)

    def vector(self, anime_id: int) -> np.ndarray:
        """The decoded vector of an anime (float32; unit length to ~1e-3); UnknownAnimeError when unknown."""
        row = int(self._rows([int(anime_id)])[0])
        if row < 0:
            raise UnknownAnimeError(anime_id)
        return self.codebook.decode(self._codes[row : row + 1], self._scales[row : row + 1])[0]

    def similarities(self, query: np.ndarray, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Inner products of `query` with many anime's decoded vectors: (float32 [n], present bool [n]).

        Scored on the codes as `search` scores them (the query rotated once), not by decoding the rows:
        decoding n rows costs an n x dim x dim product (~2 ms for a 400-candidate re-ranking pool).
        """
        rows = self._rows(ids)
        present = rows >= 0
        out = np.zeros(len(rows), dtype=np.float32)
        if present.any():
            out[present] = self._scores(np.asarray(query, dtype=np.float32), rows[present])
        return out, present

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Decoded vectors of many anime: (float32 [n, dim], present bool [n]); absent rows are 0."""
        rows = self._rows(ids)
        present = rows >= 0
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        live = rows[present]
        out[present] = self.codebook.decode(self._codes[live], self._scales[live])
        return out, present

    # ---- search -----------------------------------------------------------------------------

    def _scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Inner product of a unit `query` with every decoded row (or with `rows`)."""
        matrix = self._matrix
        if matrix is None:
            # Concurrent first searches may both convert; either result is the same array.
            matrix = self._matrix = self._codes.astype(np.float32)
        codes = matrix if rows is None else matrix[rows]
        rotated = query @ self.codebook.rotation
        out = codes @ rotated
        out *= self._scales if rows is None else self._scales[rows]
        out += np.float32(query @ self.codebook.mean)
        return out

    def search(
        self,
        vector: np.ndarray,
        k: int,
        allowed: set[int] | None = None,
        exclude: Iterable[int] | None = None,
    ) -> list[tuple[int, float]]:
        """The exact k nearest anime as (anime id, cosine), best first; ties by the lower id.

        `allowed` restricts results to those anime ids; `exclude` removes ids (e.g. the query anime).
        """
        if k <= 0 or not len(self._ids):
            return []
        query = _normalise(vector, self.dim)[0]
        banned = self._rows(exclude or ())
        banned = banned[banned >= 0]
        if allowed is None:
            scores = self._scores(query)
            if not len(banned):
                return self._top(np.arange(len(scores)), scores, k)
            scores[banned] = -np.inf
            live = np.flatnonzero(np.isfinite(scores))
            return self._top(live, scores[live], k)
        rows = np.unique(self._rows(allowed))
        rows = np.setdiff1d(rows[rows >= 0], banned, assume_unique=True)
        if len(rows) <= FLAT_GATHER_SHARE * len(self._ids):
            return self._top(rows, self._scores(query, rows), k)
        return self._top(rows, self._scores(query)[rows], k)

    def _top(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k best (id, score) of `rows` scored `scores`, best first, ties by row (= by id)."""
        k = min(k, len(rows))
        if k <= 0:
            return []
        if k < len(rows):
            # Every score >= the k-th best: argpartition alone could keep any of several equal ones.
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            pick = np.flatnonzero(scores >= kth)
        else:
            pick = np.arange(len(rows))
        order = pick[np.lexsort((rows[pick], -scores[pick]))][:k]
        found = self._ids[rows[order]].tolist()
        return [(int(a), float(s)) for a, s in zip(found, scores[order].tolist(), strict=True)]

    def knn_batch(self, vectors: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered exact batch search: (anime ids [n,k], scores [n,k]); for evaluation and bulk work."""
        queries = _normalise(vectors, self.dim)
        k = min(k, len(self._ids))
        found = np.empty((len(queries), k), dtype=np.int64)
        sims = np.empty((len(queries), k), dtype=np.float32)
        rotated = queries @ self.codebook.rotation
        offsets = queries @ self.codebook.mean
        for start in range(0, len(queries), 256):
            block = rotated[start : start + 256]
            scores = np.empty((len(block), len(self._ids)), dtype=np.float32)
            for row in range(0, len(self._ids), FLAT_CHUNK_ROWS):
                stop = row + FLAT_CHUNK_ROWS
                part = block @ self._codes[row:stop].astype(np.float32).T
                scores[:, row:stop] = part * self._scales[row:stop]
            scores += offsets[start : start + 256, None]
            rows, vals = top_k_per_row(scores, k)
            found[start : start + len(block)] = self._ids[rows]
            sims[start : start + len(block)] = vals
        return found, sims

    # ---- updates ----------------------------------------------------------------------------

    def add(self, ids: Iterable[int], vectors: np.ndarray, *, threads: int = 1) -> None:
        """Insert new anime or replace the vectors of existing ones (upsert), with this index's
        codebook (a delta does not refit the mean or the rotation); `threads` is unused."""
        id_arr = np.asarray([int(i) for i in ids], dtype=np.int64)
        vecs = _normalise(vectors, self.dim)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids but {len(vecs)} vectors")
        if len(np.unique(id_arr)) != len(id_arr) or (len(id_arr) and id_arr.min() < 0):
            raise ValueError("anime ids must be unique and non-negative")
        if not len(id_arr):
            return
        codes, scales = self.codebook.quantise(vecs)
        rows = self._rows(id_arr.tolist())
        old = rows >= 0
        # New arrays rather than writes in place: a loaded index may share memory with its caller.
        base_codes, base_scales = self._codes.copy(), self._scales.copy()
        base_codes[rows[old]], base_scales[rows[old]] = codes[old], scales[old]
        merged = FlatIndex(
            np.concatenate([self._ids, id_arr[~old]]),
            np.concatenate([base_codes, codes[~old]]),
            np.concatenate([base_scales, scales[~old]]),
            self.codebook,
        )
        self._ids, self._codes, self._scales = merged._ids, merged._codes, merged._scales
        self._matrix = None

    replace = add

    def mark_deleted(self, ids: Iterable[int]) -> int:
        """Remove anime from the index; returns how many were present."""
        rows = np.unique(self._rows(ids))
        rows = rows[rows >= 0]
        if len(rows):
            keep = np.ones(len(self._ids), dtype=bool)
            keep[rows] = False
            self._ids, self._codes, self._scales = self._ids[keep], self._codes[keep], self._scales[keep]
            self._matrix = None
        return len(rows)


SearchIndex = VectorIndex | FlatIndex


def _read_meta(directory: Path, kind: IndexKind) -> dict[str, Any]:
    """`index.json` of a directory holding an index of `kind`; IndexFormatError otherwise."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{directory}: unreadable {META_FILE} ({exc})") from exc
    if meta.get("format") != FORMAT_VERSION or meta.get("space") != "ip":
        raise IndexFormatError(f"{directory}: unsupported index format {meta.get('format')!r}")
    found = meta.get("kind", HNSW_KIND)
    if found != kind:
        raise IndexFormatError(f"{directory}: a {found!r} index, expected {kind!r}")
    return dict(meta)


def index_kind(directory: Path) -> IndexKind:
    """Which kind of index a saved directory holds (`index.json` without a kind: hnswlib)."""
    try:
        kind = json.loads((directory / META_FILE).read_text()).get("kind", HNSW_KIND)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{directory}: unreadable {META_FILE} ({exc})") from exc
    if kind not in (HNSW_KIND, FLAT_KIND):
        raise IndexFormatError(f"{directory}: unknown index kind {kind!r}")
    return HNSW_KIND if kind == HNSW_KIND else FLAT_KIND


def index_class(kind: IndexKind) -> type[VectorIndex] | type[FlatIndex]:
    """The class that builds and loads indexes of `kind`."""
    return FlatIndex if kind == FLAT_KIND else VectorIndex


def load_index(directory: Path, *, ef: int, threads: int = 1, kind: IndexKind | None = None) -> SearchIndex:
    """Load a saved index of whichever kind its `index.json` names (`kind`: also require that one).

    `ef` and `threads` apply to hnswlib indexes (the manifest holds `ef`); a flat index ignores them.
    """
    found = index_kind(directory)
    if kind is not None and found != kind:
        raise IndexFormatError(f"{directory}: a {found!r} index, the manifest says {kind!r}")
    if found == FLAT_KIND:
        return FlatIndex.load(directory)
    return VectorIndex.load(directory, ef=ef, threads=threads)
