"""Apply a `DeltaPlan` to a bundle: embed only what changed, update the indexes and V2 lists in place.

The source bundle is never modified: the result is written to a fresh directory (unchanged files, e.g.
the model and `release_dates.json`, are hard-linked or copied) with a new manifest whose
`data_version` is the new catalogue's. What is read from the base is verified first (`base`). The
model and the indexes are an `IndexWorker`'s (`indexer`): it embeds the added anime and the changed
ones whose encoder text changed (`DeltaPlan.to_embed`; the others keep their vectors) and updates
the indexes through `VectorIndex`, which keeps hnswlib's pitfalls away: removed anime are marked
deleted first, so new anime reuse their slots (`replace_deleted`) before the index is
resized; a changed anime keeps its label and gets its vector replaced by a plain `add_items`; new
anime always get fresh labels (never a deleted label again). A base's story index (`index_story/`)
is kept in step with the synopses (`indexer`); a base without one gets none. Meanwhile this process
writes the catalogue, merges the V2 lists (`lists`) and saves the catalogue's lookup tables
(`catalogue_tables`), and a `LexicalBuild` (`lexical`, a forked child) rebuilds the new catalogue's
BM25 index for /search, so it is published with the version.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from anime_recommender.artifacts import (
    CATALOGUE,
    CONTENT_HASHES,
    NEIGHBOURS,
    STORY,
    FileEntry,
    Manifest,
    save_content_hashes,
    write_manifest,
)
from anime_recommender.catalogue_tables import TABLES_FILE, CatalogueTables, save_tables
from anime_recommender.delta.base import DeltaBase, carried_files, load_delta_base
from anime_recommender.delta.indexer import IndexJob, IndexJobResult, IndexWorker
from anime_recommender.delta.lexical import LexicalBuild
from anime_recommender.delta.lists import NeighbourUpdate, update_neighbours
from anime_recommender.delta.plan import DeltaApplyError, DeltaPlan
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.store import link_or_copy
from anime_recommender.teacher import TeacherConfig
from anime_recommender.timing import timed

# A delta writes its catalogue with gzip level 1: ~50 ms faster than level 6 for ~20 % more bytes. The
# layer's bundle (size-bound) is written by the build at the default level.
DELTA_COMPRESSLEVEL = 1


@dataclass
class ApplyResult:
    """The new bundle and what it took to build it."""

    out_dir: Path
    manifest: Manifest
    lists_recomputed: int
    lists_merged: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)


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
) -> NeighbourUpdate:
    """Update the V2 lists and save them uncompressed (a delta writes speed, not bytes)."""
    update = update_neighbours(base.neighbours(), plan.catalogue, plan, teacher)
    update.lists.save(path, compress=False)
    return update


def _write_catalogue(plan: DeltaPlan, out_dir: Path) -> None:
    """Save the new catalogue (its lines as planned, gzip level 1) and its content hashes."""
    plan.catalogue.save(out_dir / CATALOGUE, compresslevel=DELTA_COMPRESSLEVEL, lines=plan.lines)
    save_content_hashes(out_dir / CONTENT_HASHES, plan.hashes)


def _write_new_manifest(
    base: DeltaBase,
    plan: DeltaPlan,
    update: NeighbourUpdate,
    indexed: IndexJobResult,
    lexical: dict[str, FileEntry],
    out_dir: Path,
    job: IndexJob,
) -> Manifest:
    """Link the carried files into `out_dir` and write its manifest: the base's, with the new data."""
    # Carried files were verified (release dates by `load_delta_base`, the model by the worker); the
    # index and lexical files were hashed by the processes that wrote them.
    known = {**_link_unchanged(base, out_dir, carried_files(base.manifest)), **indexed.files, **lexical}
    old = base.manifest
    return write_manifest(
        out_dir,
        data_version=plan.new_version,
        model_version=old.model_version,
        dims=old.dims,
        indexes=indexed.infos,
        quantization=old.quantization,
        counts={
            **old.counts,
            "anime": len(plan.catalogue),
            "neighbours": len(update.lists),
            "neighbours_k": update.lists.k,
        },
        extra={
            **old.extra,
            "delta": {
                "base_version": plan.base_version,
                **plan.counts(),
                "embedded": len(plan.to_embed),
                **({"story_embedded": len(job.story_ids)} if STORY in old.indexes else {}),
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
    with timed(timings, "load_base"):
        if base is None:
            base = load_delta_base(bundle_dir)
        if base.root != bundle_dir:
            raise DeltaApplyError(f"base was loaded from {base.root}, not {bundle_dir}")
        if base.data_version != plan.base_version:
            raise DeltaApplyError(
                f"plan is for data version {plan.base_version}, bundle is {base.data_version}"
            )

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    own_worker = worker is None
    if worker is None:
        worker = IndexWorker(bundle_dir, threads=threads, encoder=encoder)
    lexical_build: LexicalBuild | None = None
    try:
        # The worker embeds and updates the indexes (its own process where it can) and a child
        # rebuilds the lexical index while this process writes the catalogue and updates the V2
        # lists; they all write different files.
        job = IndexJob.from_plan(plan, out_dir, batch_size, story=STORY in base.manifest.indexes)
        worker.submit(job)
        lexical_build = LexicalBuild(plan.catalogue, out_dir)
        with timed(timings, "catalogue"):
            _write_catalogue(plan, out_dir)
        with timed(timings, "neighbours"):
            update = _write_lists(base, plan, teacher, out_dir / NEIGHBOURS)
        with timed(timings, "tables"):
            # Saved so the API's cold start on this version reads them instead of building them.
            save_tables(out_dir / TABLES_FILE, CatalogueTables.build(plan.catalogue), plan.new_version)
        with timed(timings, "wait_index"):
            indexed = worker.result()  # IndexWorkerError (a DeltaApplyError) when it failed
        with timed(timings, "wait_lexical"):
            lexical = lexical_build.result()  # LexicalBuildError (a DeltaApplyError) when it failed
    finally:
        if lexical_build is not None:
            lexical_build.close()
        if own_worker:
            worker.close()
    # The worker's own steps ran beside this process's (loading even beside validation): not additive.
    timings.update({f"worker_{k}_background": v for k, v in indexed.timings_s.items()})

    with timed(timings, "write"):
        manifest = _write_new_manifest(base, plan, update, indexed, lexical, out_dir, job)
    return ApplyResult(
        out_dir=out_dir,
        manifest=manifest,
        lists_recomputed=update.recomputed,
        lists_merged=update.merged,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
