"""`anime-build`: one command, one subcommand per pipeline stage.

The subcommands are `anime_pipeline.stages.STAGES`. Each stage module defines
`register(subparsers)`, which adds its subcommand and sets `func` to a callable taking the
parsed args and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from anime_pipeline.stages import STAGES


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every stage's subcommand."""
    parser = argparse.ArgumentParser(
        prog="anime-build",
        description="Offline build of the anime recommender: ingest → V1/V2 teacher → triplets → "
        "V3/V4 embeddings → int8 ONNX → hnswlib index → Lambda layers.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for stage in STAGES:
        importlib.import_module(f"anime_pipeline.{stage.module}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `anime-build` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
