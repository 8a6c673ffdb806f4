"""`anime-build all`: the whole offline build, stage after stage, with a timing summary."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from anime_pipeline.paths import BuildPaths
from anime_pipeline.stages import ALL_STAGES, Stage


def run_all(stages: Sequence[Stage] = ALL_STAGES, paths: BuildPaths | None = None) -> dict[str, float]:
    """Run each stage with its defaults, in order; return seconds per stage.

    A failing stage raises, so the build stops there.
    """
    paths = paths or BuildPaths.from_env()
    timings: dict[str, float] = {}
    for stage in stages:
        if stage.run is None:
            raise ValueError(f"stage {stage.name!r} is not part of `anime-build all`")
        print(f"\n=== anime-build {stage.name} ===", flush=True)
        started = time.perf_counter()
        stage.run(paths)
        timings[stage.name] = round(time.perf_counter() - started, 2)
    return timings


def run(args: argparse.Namespace) -> int:
    """CLI entry: run the stages and print/write the timing summary."""
    by_name = {stage.name: stage for stage in ALL_STAGES}
    stages = tuple(by_name[name] for name in args.stages) if args.stages else ALL_STAGES
    paths = BuildPaths.from_env()
    started = time.perf_counter()
    timings = run_all(stages, paths)
    summary: dict[str, Any] = {
        "stages_seconds": timings,
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    paths.work.mkdir(parents=True, exist_ok=True)
    (paths.work / "build_summary.json").write_text(json.dumps(summary, indent=2))
    print("\n=== build summary ===")
    print(json.dumps(summary, indent=2))
    print(f"artifacts layer: {paths.artifacts_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `all` subcommand."""
    names = [stage.name for stage in ALL_STAGES]
    parser = subparsers.add_parser(
        "all",
        help="run the whole offline build on the default catalogue",
        description="Runs, in order: " + " → ".join(names) + ". Each stage uses its defaults; "
        "run stages one by one for other options.",
    )
    parser.add_argument(
        "--stages", nargs="+", metavar="STAGE", choices=names, help="run only these stages, in this order"
    )
    parser.set_defaults(func=run)
