"""One delta update, end to end: fetch → validate → diff → apply → publish → flip.

`run_delta_update` is the single call the Lambda handler and `anime-build delta` make. It never
changes what is served unless every step succeeded: a refused catalogue returns a summary with
`status="refused"`; any other failure raises, leaving the pointer where it was.

Enrichment: a base bundle with `release_dates.json` (the bangumi-data years the build's ingest
filled in) validates the new catalogue with exactly those dates, and the new version carries the
file on; a base without one falls back to a local bangumi-data file (`local_release_dates`).
Without this, every enriched anime would look changed (year lost) wherever no bangumi-data is
installed, e.g. in Lambda.

Story text: a source without it (manami's) keeps the base bundle's story fields (synopsis, English
title, content rating, studios), and a configured story-text file (`storytext_path`: the story-text
JSONL or the synopsis CSV) is merged first, through the ingest's `read_storytext` /
`merge_storytext`; the source's own text wins over both (`plan`). `story_text_carried` counts the
anime that took some of the base's. Only the changed anime whose encoder text differs are
re-embedded (`embedded`).

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from anime_recommender.artifacts import Manifest, data_version
from anime_recommender.delta.apply import apply_delta
from anime_recommender.delta.base import (
    DeltaBase,
    load_base_records,
    load_base_release_dates,
    load_delta_base,
)
from anime_recommender.delta.indexer import IndexWorker
from anime_recommender.delta.plan import (
    BaseRecords,
    DeltaPlan,
    DeltaPolicy,
    DeltaRefusedError,
    carry_base_story_text,
    hash_new_catalogue,
    load_new_catalogue,
    plan_delta,
)
from anime_recommender.release_dates import local_release_dates
from anime_recommender.runtime import paused_gc
from anime_recommender.store import (
    ArtifactStore,
    ConcurrentPublishError,
    Pointer,
    VersionRef,
    servable,
    version_id,
)
from anime_recommender.timing import timed

log = logging.getLogger(__name__)

Status = Literal["published", "unchanged", "refused", "adopted", "superseded"]


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
    story_text_carried: int = 0
    embedded: int = 0
    duration_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class DeltaRun:
    """What the steps of one run share: its inputs, the base it is applied to, the loads beside them."""

    catalogue_path: Path
    storytext_path: Path | None
    storytext_adds: bool
    store: ArtifactStore
    pointer: Pointer | None  # as read when the run started: the flip's precondition
    base_dir: Path
    base_manifest: Manifest
    records: Future[BaseRecords]  # loading in a background thread
    base: Future[DeltaBase]  # verified in that thread once the records are in
    worker: IndexWorker  # loading the model and the indexes, a forked process where it can
    policy: DeltaPolicy
    threads: int
    work_dir: Path


def serving_base(store: ArtifactStore, layer_dir: Path, cache_dir: Path) -> tuple[Path, Pointer | None]:
    """The bundle readers serve now (pointer's version, unless it was built with another model than the
    deployed layer: a deploy wins) and the pointer as read (the flip's precondition)."""
    pointer = store.read_pointer()
    if servable(pointer, Manifest.read(layer_dir).model_version):
        return store.fetch(pointer, cache_dir, reuse=[layer_dir]), pointer
    return layer_dir, pointer


def run_delta_update(
    catalogue_path: Path,
    store: ArtifactStore,
    *,
    layer_dir: Path,
    work_dir: Path,
    policy: DeltaPolicy | None = None,
    threads: int = 1,
    storytext_path: Path | None = None,
    storytext_adds: bool = False,
) -> DeltaSummary:
    """Validate `catalogue_path` and publish the delta against what is served now (see module docstring).

    Args:
        catalogue_path: the new catalogue file (any format the loaders read).
        store: where versions and the pointer live.
        layer_dir: the deployed bundle (the base when nothing was published yet).
        work_dir: scratch space (downloaded base, new bundle); Lambda: under /tmp.
        policy: refusal thresholds.
        threads: hnswlib insert threads (the index worker embeds with one onnxruntime thread).
        storytext_path: a story-text file keyed by MAL id (the story-text JSONL or the synopsis
            CSV/TSV/JSONL, as `anime-build ingest --storytext`) to merge into the new catalogue; a bad
            one refuses the run (`invalid_storytext`). Without it the base's story fields are carried
            on.
        storytext_adds: the anime only the story-text file has join the catalogue (as the build's
            `--storytext-adds`; a base built with them would otherwise lose them, a refused shrink).
    """
    total = timed()
    timings: dict[str, float] = {}

    with timed(timings, "base"):
        base_dir, pointer = serving_base(store, layer_dir, work_dir / "base")
        base_manifest = Manifest.read(base_dir)
        summary = DeltaSummary(status="unchanged", base_version=version_id(base_manifest))

    # The model and the indexes load in an `IndexWorker` (a forked process: started first, while this
    # process runs no other thread), the base's records load and its lists are checked in a background
    # thread, all while the new catalogue is validated. Loading changes nothing; whatever the outcome,
    # the worker and the thread are done when this function returns.
    with (
        paused_gc(),
        IndexWorker(base_dir, threads=threads) as worker,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-base") as pool,
    ):
        records = pool.submit(load_base_records, base_dir)
        base = pool.submit(lambda: load_delta_base(base_dir, records=records.result()))
        run = DeltaRun(
            catalogue_path=catalogue_path,
            storytext_path=storytext_path,
            storytext_adds=storytext_adds,
            store=store,
            pointer=pointer,
            base_dir=base_dir,
            base_manifest=base_manifest,
            records=records,
            base=base,
            worker=worker,
            policy=policy or DeltaPolicy(),
            threads=threads,
            work_dir=work_dir,
        )
        status = _update(run, summary, timings)
        base.cancel()
    summary.status = status
    summary.duration_s = round(total.seconds, 3)
    summary.timings_s = {k: round(v, 3) for k, v in timings.items()}
    return summary


def _refused(summary: DeltaSummary, exc: DeltaRefusedError) -> Status:
    summary.refusal_code, summary.refusal_reason = exc.code, exc.reason
    return "refused"


def _update(run: DeltaRun, summary: DeltaSummary, timings: dict[str, float]) -> Status:
    """Validate → diff → apply → upload → flip; fills `summary` and `timings`, returns the status.

    A step's time is recorded once it completed: a refused catalogue has no "validate" or "plan".
    """
    try:
        with timed(timings, "validate"):
            # The build's enrichment, verified against the base's manifest (DeltaApplyError when corrupt).
            release_dates = load_base_release_dates(run.base_dir)
            if release_dates is None:
                release_dates = local_release_dates()
            new_catalogue, _report = load_new_catalogue(
                run.catalogue_path,
                run.policy,
                release_dates,
                run.storytext_path,
                storytext_adds=run.storytext_adds,
            )
    except DeltaRefusedError as exc:
        return _refused(summary, exc)
    with timed(timings, "hash"):
        # Once: the version, the diff and the new bundle use them. Anime whose saved line is the base's
        # keep the base's hash (raises what loading the records raised: a degraded base). The base's
        # story text goes in first: the source has none, and without it every anime that has some
        # would look changed (its line, hash and encoder text all lose the synopsis).
        base_records = run.records.result()
        new_catalogue, summary.story_text_carried = carry_base_story_text(new_catalogue, base_records)
        new_lines = new_catalogue.lines()
        new_hashes = hash_new_catalogue(new_catalogue, new_lines, base_records)
        new_data_version = data_version(new_hashes)
        new_version = f"{new_data_version}-{run.base_manifest.model_version}"
    summary.new_version = new_version
    if new_version == summary.base_version:
        summary.counts = {"added": 0, "changed": 0, "removed": 0, "unchanged": len(new_catalogue)}
        return "unchanged"

    # A previous run may have uploaded this very version and crashed before the flip: adopt it.
    adopting = timed()
    existing = run.store.find_version(new_version)
    if existing is not None:
        summary.counts = dict(existing.manifest.extra.get("delta", {}))
        if not _flipped(run, existing, summary):
            return "superseded"
        summary.published_version = new_version
        timings["publish"] = adopting.seconds
        return "adopted"

    try:
        with timed(timings, "plan"):
            plan = plan_delta(
                base_records,
                new_catalogue,
                run.policy,
                new_hashes=new_hashes,
                new_lines=new_lines,
                new_version=new_data_version,
            )
            summary.counts = plan.counts()
            summary.embedded = len(plan.to_embed)
    except DeltaRefusedError as exc:
        return _refused(summary, exc)
    return _publish(run, plan, new_version, summary, timings)


def _publish(
    run: DeltaRun, plan: DeltaPlan, new_version: str, summary: DeltaSummary, timings: dict[str, float]
) -> Status:
    """Apply `plan` to the base as `new_version`, upload it and flip the pointer to it."""
    with timed(timings, "wait_base"):
        loaded = run.base.result()  # raises what loading raised (a degraded base)
    timings["load_base_background"] = loaded.seconds
    out_dir = run.work_dir / "new" / new_version
    result = apply_delta(
        run.base_dir, plan, None, out_dir, threads=run.threads, base=loaded, worker=run.worker
    )
    timings.update({f"apply_{k}": v for k, v in result.timings_s.items() if k != "load_base"})
    summary.lists_recomputed = result.lists_recomputed
    summary.lists_merged = result.lists_merged

    with timed(timings, "upload"):
        ref = run.store.upload_version(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    with timed(timings, "flip"):
        if not _flipped(run, ref, summary):
            return "superseded"
    summary.published_version = ref.version
    return "published"


def _flipped(run: DeltaRun, ref: VersionRef, summary: DeltaSummary) -> bool:
    """Flip the pointer to `ref` unless another run moved it since this one read it.

    Both runs of a double delivery (EventBridge delivers at least once) get here; the conditional
    pointer write lets exactly one through. The other ends cleanly, saying so: no exception, hence
    no Lambda retry and no dead-letter message for a run that had nothing left to do.
    """
    try:
        run.store.flip_pointer(ref, run.pointer)
    except ConcurrentPublishError as exc:
        summary.refusal_code = "superseded"
        summary.refusal_reason = (
            f"another run moved the pointer after this one read it ({exc}); this run's version "
            f"{ref.version} stays unpublished"
        )
        log.info("delta run superseded: %s", summary.refusal_reason)
        return False
    return True
