"""One delta update, end to end: fetch → validate → diff → apply → publish → flip.

`run_delta_update` is the single call the Lambda handler and `anime-build delta` make. It never
changes what is served unless every step succeeded: a refused catalogue returns a summary with
`status="refused"`; any other failure raises, leaving the pointer where it was.

Enrichment: a base bundle with `release_dates.json` (the bangumi-data years the build's ingest
filled in) validates the new catalogue with exactly those dates, and the new version carries the
file on; a base without one falls back to `load_catalogue`'s default (a local bangumi-data file).
Without this, every enriched anime would look changed (year lost) wherever no bangumi-data is
installed, e.g. in Lambda.

Speed (a weekly 10 + 10 delta on 17.5k anime, ~1 s): an `IndexWorker` (a forked process) loads the
model and indexes while this process validates the new catalogue, then embeds and updates the
indexes while this process updates the V2 lists; the new catalogue is encoded once into saved lines,
and only anime whose line differs from the base's are hashed (the base's hashes come from its
`content_hashes.npz`); the lines are written as the new catalogue; the cyclic GC is paused for the
run. `timings_s` keys ending in `_background` ran beside the others (not additive).
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from anime_recommender.artifacts import Manifest, data_version
from anime_recommender.delta.apply import (
    DeltaBase,
    apply_delta,
    load_base_records,
    load_base_release_dates,
    load_delta_base,
)
from anime_recommender.delta.indexer import IndexWorker
from anime_recommender.delta.plan import (
    BaseRecords,
    DeltaPolicy,
    DeltaRefusedError,
    hash_new_catalogue,
    load_new_catalogue,
    plan_delta,
)
from anime_recommender.delta.runtime import paused_gc
from anime_recommender.delta.store import ArtifactStore, Pointer, version_id
from anime_recommender.loaders import DEFAULT_ENRICH

log = logging.getLogger(__name__)

Status = Literal["published", "unchanged", "refused", "adopted"]


@dataclass
class DeltaSummary:
    """What a delta update did (the handler's return value, logged and turned into metrics)."""

    status: Status
    base_version: str
    new_version: str | None = None
    published_version: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    refusal_code: str | None = None
    refusal_reason: str | None = None
    lists_recomputed: int = 0
    lists_merged: int = 0
    duration_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def serving_base(store: ArtifactStore, layer_dir: Path, cache_dir: Path) -> tuple[Path, Pointer | None]:
    """The bundle readers serve now (pointer's version, unless it was built with another model than the
    deployed layer: a deploy wins) and the pointer as read (the flip's precondition)."""
    pointer = store.read_pointer()
    layer_model = Manifest.read(layer_dir).model_version
    if pointer is not None and pointer.model_version == layer_model:
        return store.fetch(pointer, cache_dir, reuse=[layer_dir]), pointer
    if pointer is not None:
        log.warning(
            "pointer %s has model %s, layer has %s: basing on the layer",
            pointer.version,
            pointer.model_version,
            layer_model,
        )
    return layer_dir, pointer


def run_delta_update(
    catalogue_path: Path,
    store: ArtifactStore,
    *,
    layer_dir: Path,
    work_dir: Path,
    policy: DeltaPolicy | None = None,
    threads: int = 1,
) -> DeltaSummary:
    """Validate `catalogue_path` and publish the delta against what is served now (see module docstring).

    Args:
        catalogue_path: the new catalogue file (any format the loaders read).
        store: where versions and the pointer live.
        layer_dir: the deployed bundle (the base when nothing was published yet).
        work_dir: scratch space (downloaded base, new bundle); Lambda: under /tmp.
        policy: refusal thresholds.
        threads: hnswlib insert threads (the index worker embeds with one onnxruntime thread).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    base_dir, pointer = serving_base(store, layer_dir, work_dir / "base")
    base_manifest = Manifest.read(base_dir)
    summary = DeltaSummary(status="unchanged", base_version=version_id(base_manifest))
    timings["base"] = time.perf_counter() - t0

    # The model and the indexes load in an `IndexWorker` (a forked process: started first, while this
    # process runs no other thread), the base's records load and its lists are checked in a background
    # thread, all while the new catalogue is validated. Loading changes nothing; whatever the outcome, the worker and the
    # thread are done when this function returns.
    with (
        paused_gc(),
        IndexWorker(base_dir, threads=threads) as worker,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-base") as pool,
    ):
        records = pool.submit(load_base_records, base_dir)
        base = pool.submit(lambda: load_delta_base(base_dir, records=records.result()))
        status = _update(
            catalogue_path,
            store,
            pointer,
            base_manifest,
            base_dir,
            records,
            base,
            worker,
            policy or DeltaPolicy(),
            threads,
            work_dir,
            summary,
            timings,
        )
        base.cancel()
    summary.status = status
    summary.duration_s = round(time.perf_counter() - started, 3)
    summary.timings_s = {k: round(v, 3) for k, v in timings.items()}
    return summary


def _update(
    catalogue_path: Path,
    store: ArtifactStore,
    pointer: Pointer | None,
    base_manifest: Manifest,
    base_dir: Path,
    records: Future[BaseRecords],
    base: Future[DeltaBase],
    worker: IndexWorker,
    policy: DeltaPolicy,
    threads: int,
    work_dir: Path,
    summary: DeltaSummary,
    timings: dict[str, float],
) -> Status:
    """Validate → diff → apply → upload → flip; fills `summary` and `timings`, returns the status."""
    t0 = time.perf_counter()
    # The build's enrichment, verified against the base's manifest (DeltaApplyError when corrupt).
    release_dates = load_base_release_dates(base_dir)
    try:
        new_catalogue, _report = load_new_catalogue(
            catalogue_path, policy, enrich=DEFAULT_ENRICH if release_dates is None else release_dates
        )
    except DeltaRefusedError as exc:
        summary.refusal_code, summary.refusal_reason = exc.code, exc.reason
        return "refused"
    timings["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # Once: the version, the diff and the new bundle use them. Anime whose saved line is the base's
    # keep the base's hash (raises what loading the records raised: a degraded base).
    new_lines = new_catalogue.lines()
    base_records = records.result()
    new_hashes = hash_new_catalogue(new_catalogue, new_lines, base_records)
    new_data_version = data_version(new_hashes)
    new_version = f"{new_data_version}-{base_manifest.model_version}"
    timings["hash"] = time.perf_counter() - t0
    summary.new_version = new_version
    if new_version == summary.base_version:
        summary.counts = {"added": 0, "changed": 0, "removed": 0, "unchanged": len(new_catalogue)}
        return "unchanged"

    # A previous run may have uploaded this very version and crashed before the flip: adopt it.
    t0 = time.perf_counter()
    existing = store.find_version(new_version)
    if existing is not None:
        store.flip_pointer(existing, pointer)
        summary.published_version = new_version
        summary.counts = dict(existing.manifest.extra.get("delta", {}))
        timings["publish"] = time.perf_counter() - t0
        return "adopted"

    t0 = time.perf_counter()
    try:
        plan = plan_delta(
            base_records,
            new_catalogue,
            policy,
            new_hashes=new_hashes,
            new_lines=new_lines,
            new_version=new_data_version,
        )
    except DeltaRefusedError as exc:
        summary.refusal_code, summary.refusal_reason = exc.code, exc.reason
        return "refused"
    summary.counts = plan.counts()
    timings["plan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    loaded = base.result()  # raises what loading raised (a degraded base)
    timings["wait_base"] = time.perf_counter() - t0
    timings["load_base_background"] = loaded.seconds
    out_dir = work_dir / "new" / new_version
    result = apply_delta(base_dir, plan, None, out_dir, threads=threads, base=loaded, worker=worker)
    timings.update({f"apply_{k}": v for k, v in result.timings_s.items() if k != "load_base"})
    summary.lists_recomputed = result.lists_recomputed
    summary.lists_merged = result.lists_merged

    t0 = time.perf_counter()
    ref = store.upload_version(out_dir)
    timings["upload"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.flip_pointer(ref, pointer)
    timings["flip"] = time.perf_counter() - t0
    summary.published_version = ref.version
    shutil.rmtree(out_dir, ignore_errors=True)
    return "published"
