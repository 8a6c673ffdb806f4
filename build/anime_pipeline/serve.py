"""`anime-build serve`: the API on localhost with uvicorn, from the built artifacts (same app as Lambda)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from anime_pipeline.paths import BuildPaths


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the API locally (uvicorn) from the artifact bundle",
        description="Load the artifact bundle once (checksums verified, tier fallback) and serve every API "
        "route with uvicorn. Without CACHE_TABLE_NAME an in-process LRU cache is used.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--artifacts", type=Path, default=None, help="bundle directory (default: the build's artifacts_dir)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the bundle and serve until interrupted."""
    import uvicorn

    from anime_pipeline.delta_stage import LOCAL_POINTER_CHECK_SECONDS, local_store_dir
    from anime_recommender.api.lambda_app import load_serving
    from anime_recommender.settings import ApiSettings

    paths = BuildPaths.from_env()
    artifacts = args.artifacts or paths.artifacts_dir
    # Follow `anime-build delta`'s local pointer so published deltas are served without a restart.
    os.environ.setdefault("ARTIFACTS_LOCAL_STORE", str(local_store_dir(paths)))
    os.environ.setdefault("POINTER_CHECK_SECONDS", str(LOCAL_POINTER_CHECK_SECONDS))
    os.environ["ARTIFACTS_DIR"] = str(artifacts)  # validated with the rest, as in Lambda
    settings = ApiSettings.from_env()
    logging.basicConfig(level=settings.log_level)
    serving = load_serving(settings)
    logging.getLogger(__name__).info(
        "serving tier %s from %s (init %.0f ms)", serving.backend.info.tier, artifacts, serving.init_ms
    )
    uvicorn.run(serving.app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0
