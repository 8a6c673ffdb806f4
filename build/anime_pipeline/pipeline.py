"""`anime-build all`: the whole offline build, stage after stage, with a timing summary."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from anime_pipeline.paths import BuildPaths

# The default main job, in dependency order. Each name is an `anime-build` subcommand
# run with its default arguments.
ALL_STAGES: tuple[str, ...] = (
    "ingest",
    "teacher",
    "triplets",
    "train",
    "export",
    "index",
    "evaluate",
    "layers",
)


def run_all(stages: tuple[str, ...] = ALL_STAGES) -> dict[str, float]:
    """Run each stage in order; return seconds per stage. Stops at the first failing stage."""
    from anime_pipeline.cli import main  # the CLI imports this module, so import lazily

    timings: dict[str, float] = {}
    for stage in stages:
        print(f"\n=== anime-build {stage} ===", flush=True)
        started = time.perf_counter()
        code = main([stage])
        timings[stage] = round(time.perf_counter() - started, 2)
        if code != 0:
            raise SystemExit(f"stage {stage!r} failed with exit code {code}")
    return timings


def run(args: argparse.Namespace) -> int:
    """CLI entry: run the stages and print/write the timing summary."""
    stages = tuple(args.stages) if args.stages else ALL_STAGES
    started = time.perf_counter()
    timings = run_all(stages)
    summary: dict[str, Any] = {
        "stages_seconds": timings,
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    paths = BuildPaths.from_env()
    paths.work.mkdir(parents=True, exist_ok=True)
    (paths.work / "build_summary.json").write_text(json.dumps(summary, indent=2))
    print("\n=== build summary ===")
    print(json.dumps(summary, indent=2))
    print(f"artifacts layer: {paths.artifacts_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `all` subcommand."""
    parser = subparsers.add_parser(
        "all",
        help="run the whole offline build on the default catalogue",
        description="Runs, in order: " + " → ".join(ALL_STAGES) + ". Each stage uses its defaults; "
        "run stages one by one for other options.",
    )
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help="run only these stages, in this order")
    parser.set_defaults(func=run)
