"""Apply a `DeltaPlan` to a bundle: embed only what changed, update the indexes and V2 lists in place.

The source bundle is never modified: the result is written to a fresh directory (unchanged files, e.g.
the model and `release_dates.json`, are hard-linked or copied) with a new manifest whose
`data_version` is the new catalogue's. `load_base_records` reads the base's content hashes and saved
catalogue lines (not parsed), `load_delta_base` the V2 lists and release dates, each file checked
against the manifest's sha256 first. The model and the indexes are an `IndexWorker`'s (`indexer`):
it embeds the added and changed anime and updates the indexes through `VectorIndex`, which keeps
hnswlib's pitfalls away: removed anime are marked deleted first, so new anime reuse their slots
(`replace_deleted`) before the index is resized; a changed anime keeps its label and gets its vector
replaced by a plain `add_items`; new anime always get fresh labels (never a deleted label again).

V2 lists (`update_neighbours`): the scores of the added and changed ("touched") anime against the
whole new catalogue are one [touched × n] block (V2 is symmetric). The touched anime's own lists are
recomputed over the whole catalogue. Every other list that a touched anime enters or leaves is
*merged*: removed anime leave it, a changed anime in it gets its new score, touched anime score
above its old K-th entry enter, the top K is kept. Every anime outside the old list scored at most
that K-th score, so the merge is exact (up to ties) unless a changed anime now scores below it: then
an outside anime might deserve its place, but the changed anime keeps it (the approximation, counted
as `lists_approximate`; only the tail of such a list can differ). A list that lost a *removed* anime
and cannot refill the hole from the touched ones is recomputed. On the default catalogue (10 changed
+ 10 added) the merged lists overlap a full recompute's by 0.999 on average (recomputing the
approximate ones exactly instead: 0.9997, 0.5 s slower). Scores between two untouched anime are kept:
tag IDF weights drift a little with the catalogue, which a full rebuild corrects.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from anime_recommender.artifacts import (
    CATALOGUE,
    CONTENT_HASHES,
    MODEL_FILES,
    NEIGHBOURS,
    RELEASE_DATES,
    FileEntry,
    Manifest,
    data_version,
    load_content_hashes,
    load_release_dates,
    save_content_hashes,
    write_manifest,
)
from anime_recommender.catalogue import Catalogue, saved_lines
from anime_recommender.delta.indexer import IndexJob, IndexWorker, verified_manifest
from anime_recommender.delta.plan import BaseRecords, DeltaApplyError, DeltaPlan
from anime_recommender.delta.store import link_or_copy
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.loaders import ReleaseDates
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import TeacherConfig, TeacherFeatures, top_k_neighbours

# A delta writes its catalogue with gzip level 1: ~50 ms faster than level 6 for ~20 % more bytes. The
# layer's bundle (size-bound) is written by the build at the default level.
DELTA_COMPRESSLEVEL = 1


@dataclass
class DeltaBase:
    """The verified parts of the base bundle that a delta update reads."""

    root: Path
    manifest: Manifest
    records: BaseRecords
    seconds: float = 0.0

    @property
    def data_version(self) -> str:
        """The base catalogue's version (what a plan must have been made against)."""
        return self.manifest.data_version

    def neighbours(self) -> NeighbourLists:
        """The base's V2 lists (verified by `load_delta_base`).

        Read when needed rather than with the rest: `np.load` reads a .npz in 256 KiB chunks, each
        waiting for the GIL while the catalogue is being validated (0.05 s alone, up to 1 s beside it).
        """
        return NeighbourLists.load(self.root / NEIGHBOURS)


@dataclass
class ApplyResult:
    """The new bundle and what it took to build it."""

    out_dir: Path
    manifest: Manifest
    lists_recomputed: int
    lists_merged: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)


class NeighbourUpdate(NamedTuple):
    """`update_neighbours`' result: the lists, and how many were recomputed, merged, approximated."""

    lists: NeighbourLists
    recomputed: int
    merged: int
    approximate: int = 0


@dataclass
class _Merge:
    """Merged lists (all kept rows) and the catalogue rows that still need a full recompute."""

    neighbour_ids: np.ndarray
    scores: np.ndarray
    recompute_rows: np.ndarray
    merged: int
    approximate: int


def _record_files(manifest: Manifest) -> list[str]:
    """Files `load_base_records` reads: the catalogue and its content hashes (older bundles lack them)."""
    return [CATALOGUE, CONTENT_HASHES] if CONTENT_HASHES in manifest.files else [CATALOGUE]


def _base_files(manifest: Manifest) -> list[str]:
    """Files `load_delta_base` checks besides the records: the V2 lists and the release dates (the model
    and the indexes are the `IndexWorker`'s to verify)."""
    return [NEIGHBOURS, *(rel for rel in _carried_files(manifest) if rel not in MODEL_FILES)]


def _carried_files(manifest: Manifest) -> tuple[str, ...]:
    """Base files the new version takes over unchanged (older bundles lack `release_dates.json`)."""
    return (*MODEL_FILES, RELEASE_DATES) if RELEASE_DATES in manifest.files else MODEL_FILES


def load_base_release_dates(bundle_dir: Path) -> ReleaseDates | None:
    """The base's release dates (checked against the manifest first), or None when it has none.

    A delta validates the new catalogue with exactly these, so enriched years match the build's.

    Raises:
        DeltaApplyError: the file is listed but missing, corrupt or malformed.
    """
    manifest = verified_manifest(bundle_dir, lambda m: [RELEASE_DATES] if RELEASE_DATES in m.files else [])
    if RELEASE_DATES not in manifest.files:
        return None
    try:
        return load_release_dates(bundle_dir / RELEASE_DATES)
    except (OSError, ValueError) as exc:
        raise DeltaApplyError(f"base bundle is degraded: {exc}; rebuild it") from exc


def load_base_records(bundle_dir: Path) -> BaseRecords:
    """Verify and read the base's content hashes and saved catalogue lines (what the diff needs first).

    Raises:
        DeltaApplyError: a file is missing or corrupt, or the content hashes do not give the
            manifest's data version.
    """
    manifest = verified_manifest(bundle_dir, _record_files)
    if CONTENT_HASHES in manifest.files:
        try:
            hashes = load_content_hashes(bundle_dir / CONTENT_HASHES)
        except ValueError as exc:
            raise DeltaApplyError(f"base bundle is degraded: {exc}; rebuild it") from exc
    else:
        hashes = Catalogue.load(bundle_dir / CATALOGUE).content_hashes()
    lines = saved_lines(bundle_dir / CATALOGUE, ids=sorted(hashes))
    version = data_version(hashes)
    if version != manifest.data_version:
        raise DeltaApplyError(
            f"content hashes of {bundle_dir} give data version {version}, "
            f"the manifest says {manifest.data_version}"
        )
    return BaseRecords(hashes=hashes, lines=lines, data_version=version)


def load_delta_base(bundle_dir: Path, *, records: BaseRecords | None = None) -> DeltaBase:
    """Verify (sha256 against the manifest) what the parent side of a delta reads from `bundle_dir`:
    its records, V2 lists and release dates (the model and indexes: `IndexWorker`).

    Args:
        bundle_dir: the serving bundle.
        records: `load_base_records(bundle_dir)` when the caller has them already.

    Raises:
        DeltaApplyError: a file is missing or corrupt, or the content hashes do not give the
            manifest's data version.
    """
    started = time.perf_counter()
    if records is None:
        records = load_base_records(bundle_dir)
    manifest = verified_manifest(bundle_dir, _base_files)
    if records.data_version != manifest.data_version:
        raise DeltaApplyError(f"records of another version than {bundle_dir}'s {manifest.data_version}")
    return DeltaBase(
        root=bundle_dir, manifest=manifest, records=records, seconds=time.perf_counter() - started
    )


def _merge_rows(
    ids: np.ndarray, scores: np.ndarray, ranks: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (id, score) of the candidates, ties broken by the lower catalogue row."""
    order = np.lexsort((ranks, -scores), axis=1)[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _merge_touched(
    kept: NeighbourLists, cat_ids: np.ndarray, touched: np.ndarray, block: np.ndarray, plan: DeltaPlan
) -> _Merge:
    """Merge the touched anime (scores `block` [touched, n]) into the kept lists (module docstring)."""
    rows = np.searchsorted(cat_ids, kept.ids)  # catalogue row of each kept list
    old_scores = kept.scores.astype(np.float32)
    last = old_scores[:, -1:]
    gone = np.asarray(sorted(set(plan.removed) | set(plan.changed)), dtype=np.int64)
    dropped = np.isin(kept.neighbour_ids, gone)
    new_scores = block[:, rows].T  # [kept, touched]: V2 is symmetric
    enters = new_scores > last
    dirty = (dropped.any(axis=1) | enters.any(axis=1)) & ~np.isin(kept.ids, touched)
    d = np.flatnonzero(dirty)

    # A changed anime already in a list stays there at its new score; others enter above the old K-th.
    listed = np.zeros((d.size, touched.size), dtype=bool)
    nb = kept.neighbour_ids[d]
    r, c = np.nonzero(np.isin(nb, touched))
    listed[r, np.searchsorted(touched, nb[r, c])] = True
    t_scores = np.where(listed | enters[d], new_scores[d], -np.inf)
    cand_ids = np.concatenate([nb.astype(np.int64), np.broadcast_to(touched, (d.size, touched.size))], axis=1)
    cand_scores = np.concatenate([np.where(dropped[d], -np.inf, old_scores[d]), t_scores], axis=1)
    ranks = np.minimum(np.searchsorted(cat_ids, cand_ids), len(cat_ids) - 1)  # gone ids: -inf anyway
    merged_ids, merged_scores = _merge_rows(cand_ids, cand_scores, ranks, kept.k)

    complete = np.isfinite(merged_scores[:, -1])  # else a removed anime left a hole: recompute
    approximate = complete & (listed & (new_scores[d] < last[d])).any(axis=1)
    neighbour_ids, scores = kept.neighbour_ids.copy(), kept.scores.copy()
    neighbour_ids[d[complete]] = merged_ids[complete]
    scores[d[complete]] = merged_scores[complete].astype(np.float16)
    return _Merge(neighbour_ids, scores, rows[d[~complete]], int(complete.sum()), int(approximate.sum()))


def update_neighbours(
    old: NeighbourLists,
    catalogue: Catalogue,
    plan: DeltaPlan,
    config: TeacherConfig | None = None,
) -> NeighbourUpdate:
    """V2 lists for the new catalogue, merging or recomputing only affected rows (module docstring)."""
    features = TeacherFeatures.from_catalogue(catalogue, config or TeacherConfig())
    k = old.k
    if len(catalogue) - 1 < k or len(old) == 0:
        # The lists cannot keep their length (tiny catalogues only): recompute everything.
        return NeighbourUpdate(top_k_neighbours(features, k=k), len(catalogue), 0)
    cat_ids = np.asarray(catalogue.ids, dtype=np.int64)
    kept = old.without_ids(plan.removed)
    if not np.isin(kept.ids, cat_ids).all() or len(kept) + len(plan.added) != len(catalogue):
        raise DeltaApplyError(
            "neighbour lists do not cover the new catalogue (base bundle and plan disagree)"
        )
    touched = np.asarray(plan.to_embed, dtype=np.int64)
    t_rows = np.searchsorted(cat_ids, touched)
    block = features.block_scores(t_rows) if touched.size else np.empty((0, len(cat_ids)), np.float32)
    block[np.arange(touched.size), t_rows] = -np.inf  # self-pairs

    merge = _merge_touched(kept, cat_ids, touched, block, plan)
    recompute = np.union1d(t_rows, merge.recompute_rows)
    fresh = top_k_neighbours(features, k=k, rows=recompute)
    lists = NeighbourLists(kept.ids, merge.neighbour_ids, merge.scores).with_lists(fresh)
    if not np.array_equal(lists.ids, cat_ids):
        raise DeltaApplyError(
            "neighbour lists do not cover the new catalogue (base bundle and plan disagree)"
        )
    return NeighbourUpdate(lists, int(recompute.size), merge.merged, merge.approximate)


def _link_unchanged(base: DeltaBase, out_dir: Path, rels: tuple[str, ...]) -> dict[str, FileEntry]:
    """Hard-link (or copy) verified base files; the manifest entries of those that are true links."""
    known: dict[str, FileEntry] = {}
    for rel in rels:
        link_or_copy(base.root / rel, out_dir / rel)
        # Same inode as the file `load_delta_base` just verified: same bytes, no need to hash again.
        if os.path.samefile(base.root / rel, out_dir / rel):
            known[rel] = base.manifest.files[rel]
    return known


def _write_lists(
    base: DeltaBase, plan: DeltaPlan, teacher: TeacherConfig | None, path: Path
) -> tuple[NeighbourUpdate, float]:
    """Update the V2 lists and save them uncompressed (a delta writes speed, not bytes); with seconds."""
    started = time.perf_counter()
    update = update_neighbours(base.neighbours(), plan.catalogue, plan, teacher)
    update.lists.save(path, compress=False)
    return update, time.perf_counter() - started


def _write_catalogue(plan: DeltaPlan, out_dir: Path) -> float:
    """Save the new catalogue (its lines as planned, gzip level 1) and its content hashes; seconds."""
    started = time.perf_counter()
    plan.catalogue.save(out_dir / CATALOGUE, compresslevel=DELTA_COMPRESSLEVEL, lines=plan.lines)
    save_content_hashes(out_dir / CONTENT_HASHES, plan.hashes)
    return time.perf_counter() - started


def apply_delta(
    bundle_dir: Path,
    plan: DeltaPlan,
    encoder: OnnxEncoder | None,
    out_dir: Path,
    *,
    threads: int = 1,
    teacher: TeacherConfig | None = None,
    batch_size: int = 1,
    base: DeltaBase | None = None,
    worker: IndexWorker | None = None,
) -> ApplyResult:
    """Write the bundle for `plan.catalogue` into `out_dir`, starting from the bundle in `bundle_dir`.

    Args:
        bundle_dir: the serving bundle the plan was computed against (left untouched).
        plan: from `plan_delta(current records or catalogue, new catalogue)`.
        encoder: an encoder to embed with instead of the bundle's model (its worker then runs in a
            thread).
        out_dir: where the new bundle goes (replaced if it exists).
        threads: hnswlib threads.
        teacher: V2 formula configuration (must match the build's).
        batch_size: encoder batch size (see `IndexJob`).
        base: `load_delta_base(bundle_dir)` when the caller loaded it already (e.g. while validating).
        worker: an `IndexWorker` on `bundle_dir` started by the caller (it loads while the caller
            validates); it takes this plan's job. None: one is started here.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if base is None:
        base = load_delta_base(bundle_dir)
    if base.root != bundle_dir:
        raise DeltaApplyError(f"base was loaded from {base.root}, not {bundle_dir}")
    if base.data_version != plan.base_version:
        raise DeltaApplyError(f"plan is for data version {plan.base_version}, bundle is {base.data_version}")
    timings["load_base"] = time.perf_counter() - t0

    catalogue = plan.catalogue
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    own_worker = worker is None
    if worker is None:
        worker = IndexWorker(bundle_dir, threads=threads, encoder=encoder)
    try:
        # The worker embeds and updates the indexes (its own process where it can) while this
        # process writes the catalogue and updates the V2 lists; they write different files.
        worker.submit(IndexJob.from_plan(plan, out_dir, batch_size))
        timings["catalogue"] = _write_catalogue(plan, out_dir)
        update, timings["neighbours"] = _write_lists(base, plan, teacher, out_dir / NEIGHBOURS)
        t0 = time.perf_counter()
        indexed = worker.result()  # IndexWorkerError (a DeltaApplyError) when it failed
        timings["wait_index"] = time.perf_counter() - t0
    finally:
        if own_worker:
            worker.close()
    # The worker's own steps ran beside this process's (loading even beside validation): not additive.
    timings.update({f"worker_{k}_background": v for k, v in indexed.timings_s.items()})
    infos = indexed.infos

    t0 = time.perf_counter()
    # Carried files were verified (release dates here, the model by the worker); the index files were
    # hashed by the worker as it wrote them.
    known = {**_link_unchanged(base, out_dir, _carried_files(base.manifest)), **indexed.files}
    old = base.manifest
    manifest = write_manifest(
        out_dir,
        data_version=plan.new_version,
        model_version=old.model_version,
        dims=old.dims,
        indexes=infos,
        quantization=old.quantization,
        counts={
            **old.counts,
            "anime": len(catalogue),
            "neighbours": len(update.lists),
            "neighbours_k": update.lists.k,
        },
        extra={
            **old.extra,
            "delta": {
                "base_version": plan.base_version,
                **plan.counts(),
                "lists_recomputed": update.recomputed,
                "lists_merged": update.merged,
                "lists_approximate": update.approximate,
                "recall_at_10_measured_on": old.extra.get("delta", {}).get(
                    "recall_at_10_measured_on", old.data_version
                ),
            },
        },
        known=known,
    )
    timings["write"] = time.perf_counter() - t0
    return ApplyResult(
        out_dir=out_dir,
        manifest=manifest,
        lists_recomputed=update.recomputed,
        lists_merged=update.merged,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
