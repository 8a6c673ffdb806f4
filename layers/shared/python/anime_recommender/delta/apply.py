"""Apply a `DeltaPlan` to a bundle: embed only what changed, update the indexes and V2 lists in place.

The source bundle is never modified: the result is written to a fresh directory (unchanged files,
e.g. the model, are hard-linked or copied) with a new manifest whose `data_version` is the new
catalogue's. Index updates go through `VectorIndex`, which keeps hnswlib's pitfalls away: removed
anime are marked deleted first, so new anime reuse their slots (`replace_deleted`) before the index
is resized; a changed anime keeps its label and gets its vector replaced by a plain `add_items`;
new anime always get fresh labels (never a deleted label again).

V2 lists recomputed (over the whole new catalogue, only for these rows): added and changed anime;
anime whose list contained a removed or changed anime; anime whose list an added or changed anime
now enters (its score beats the list's last one). Every other list is kept as it was: tag IDF
weights drift a little with the catalogue, which a full rebuild corrects.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anime_recommender.artifacts import (
    CATALOGUE,
    MODEL_FILES,
    NEIGHBOURS,
    IndexInfo,
    Manifest,
    index_dir,
    load_bundle,
    write_manifest,
)
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.plan import DeltaPlan
from anime_recommender.delta.store import link_or_copy
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import TeacherConfig, TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text


class DeltaApplyError(RuntimeError):
    """The base bundle cannot take a delta (degraded, or the plan does not match it)."""


@dataclass
class ApplyResult:
    """The new bundle and what it took to build it."""

    out_dir: Path
    manifest: Manifest
    lists_recomputed: int
    timings_s: dict[str, float] = field(default_factory=dict)


def affected_lists(
    old: NeighbourLists, catalogue: Catalogue, features: TeacherFeatures, plan: DeltaPlan
) -> set[int]:
    """Ids whose V2 list must be recomputed (see the module docstring)."""
    touched = set(plan.added) | set(plan.changed)
    gone = np.array(sorted(set(plan.removed) | set(plan.changed)), dtype=np.int64)
    affected = set(touched)
    kept = np.isin(old.ids, np.array(catalogue.ids, dtype=np.int64))
    if gone.size:
        mask = np.isin(old.neighbour_ids, gone).any(axis=1) & kept
        affected.update(int(i) for i in old.ids[mask])
    if touched and old.k:
        rows = np.array(sorted(catalogue.row(i) for i in touched), dtype=np.int64)
        sim = features.block_scores(rows)
        sim[np.arange(rows.size), rows] = -np.inf  # self-pairs
        best = sim.max(axis=0)  # per catalogue row: the best score any touched anime reaches
        old_rows = np.flatnonzero(kept)
        cat_rows = np.array([catalogue.row(int(i)) for i in old.ids[old_rows]], dtype=np.int64)
        last = old.scores[old_rows, -1].astype(np.float32)
        enters = best[cat_rows] > last
        affected.update(int(i) for i in old.ids[old_rows[enters]])
    return affected


def update_neighbours(
    old: NeighbourLists, catalogue: Catalogue, plan: DeltaPlan, config: TeacherConfig | None = None
) -> tuple[NeighbourLists, int]:
    """V2 lists for the new catalogue, recomputing only affected rows; returns (lists, rows recomputed)."""
    features = TeacherFeatures.from_catalogue(catalogue, config or TeacherConfig())
    k = old.k
    if len(catalogue) - 1 < k or len(old) == 0:
        # The lists cannot keep their length (tiny catalogues only): recompute everything.
        return top_k_neighbours(features, k=k), len(catalogue)
    ids = sorted(affected_lists(old, catalogue, features, plan))
    fresh = top_k_neighbours(features, k=k, rows=[catalogue.row(i) for i in ids])
    lists = old.without_ids(plan.removed).with_lists(fresh)
    if not np.array_equal(lists.ids, np.array(catalogue.ids, dtype=np.int64)):
        raise DeltaApplyError(
            "neighbour lists do not cover the new catalogue (base bundle and plan disagree)"
        )
    return lists, len(ids)


def apply_delta(
    bundle_dir: Path,
    plan: DeltaPlan,
    encoder: OnnxEncoder | None,
    out_dir: Path,
    *,
    threads: int = 1,
    teacher: TeacherConfig | None = None,
    batch_size: int = 32,
) -> ApplyResult:
    """Write the bundle for `plan.catalogue` into `out_dir`, starting from the bundle in `bundle_dir`.

    Args:
        bundle_dir: the serving bundle the plan was computed against (left untouched).
        plan: from `plan_delta(current catalogue, new catalogue)`.
        encoder: the bundle's int8 ONNX encoder (None: use the one `load_bundle` loads from the bundle).
        out_dir: where the new bundle goes (replaced if it exists).
        threads: onnxruntime / hnswlib threads.
        teacher: V2 formula configuration (must match the build's).
        batch_size: encoder batch size.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bundle = load_bundle(bundle_dir, threads=threads, all_tiers=True)
    spaces = list(bundle.manifest.indexes)
    if bundle.failures or set(bundle.indexes) != set(spaces):
        problems = "; ".join(f"{f.path}: {f.reason}" for f in bundle.failures) or "index missing"
        raise DeltaApplyError(f"base bundle is degraded (tier {bundle.tier}): {problems}; rebuild it")
    if bundle.data_version != plan.base_version:
        raise DeltaApplyError(
            f"plan is for data version {plan.base_version}, bundle is {bundle.data_version}"
        )
    encoder = encoder or bundle.encoder
    if encoder is None or any(encoder.dims.get(s) != bundle.manifest.indexes[s].dim for s in spaces):
        raise DeltaApplyError(
            f"encoder outputs {None if encoder is None else encoder.dims} do not match the indexes"
        )
    timings["load_base"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    catalogue = plan.catalogue
    to_embed = list(plan.to_embed)
    vectors = encoder.encode([anime_text(catalogue.by_id(i)) for i in to_embed], batch_size=batch_size)
    timings["embed"] = time.perf_counter() - t0

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    infos: dict[str, IndexInfo] = {}
    for space in spaces:
        index = bundle.indexes[space]
        # Delete first: new anime then reuse the freed slots instead of growing the index.
        index.mark_deleted(plan.removed)
        if to_embed:
            index.add(to_embed, vectors[space], threads=threads)
        if len(index) != len(catalogue):
            raise DeltaApplyError(f"index {space} holds {len(index)} anime, catalogue {len(catalogue)}")
        index.save(out_dir / index_dir(space))
        infos[space] = bundle.manifest.indexes[space].model_copy(update={"count": len(index)})
    timings["index"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lists, recomputed = update_neighbours(bundle.neighbours, catalogue, plan, teacher)
    lists.save(out_dir / NEIGHBOURS)
    timings["neighbours"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    catalogue.save(out_dir / CATALOGUE)
    for rel in MODEL_FILES:
        link_or_copy(bundle_dir / rel, out_dir / rel)
    old = bundle.manifest
    manifest = write_manifest(
        out_dir,
        data_version=plan.new_version,
        model_version=old.model_version,
        dims=old.dims,
        indexes=infos,
        quantization=old.quantization,
        counts={**old.counts, "anime": len(catalogue), "neighbours": len(lists), "neighbours_k": lists.k},
        extra={
            **old.extra,
            "delta": {
                "base_version": plan.base_version,
                **plan.counts(),
                "lists_recomputed": recomputed,
                "recall_at_10_measured_on": old.extra.get("delta", {}).get(
                    "recall_at_10_measured_on", old.data_version
                ),
            },
        },
    )
    timings["write"] = time.perf_counter() - t0
    return ApplyResult(
        out_dir=out_dir,
        manifest=manifest,
        lists_recomputed=recomputed,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
