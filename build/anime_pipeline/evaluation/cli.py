"""`anime-build evaluate`: arguments, defaults, and the stage's run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from anime_pipeline.evaluation.devset import DEFAULT_DEV_CSV
from anime_pipeline.evaluation.report import EvaluateInputs, EvaluateResult, evaluate
from anime_pipeline.paths import BuildPaths
from anime_recommender.ranking import RankingConfig
from anime_recommender.similarity import SIMILAR_V2_POOL, SIMILAR_V3_POOL, SIMILAR_V4_POOL

# Vector files the embeddings stage writes (catalogue row order); missing ones are skipped.
# (the export stage writes them: v3/v4_int8 from the shipped int8 graph, *_fp32 for comparison).
DEFAULT_VECTOR_NAMES: tuple[str, ...] = ("v3_fp32", "v3", "v4_fp32", "v4_int8")


def _parse_vectors(items: Sequence[str], default_dir: Path) -> dict[str, Path]:
    vectors = {name: default_dir / f"{name}.npy" for name in DEFAULT_VECTOR_NAMES}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"--vectors expects NAME=PATH, got {item!r}")
        vectors[name] = Path(path)
    return vectors


def config_from_args(args: argparse.Namespace, paths: BuildPaths) -> EvaluateInputs:
    """The evaluation inputs the CLI arguments describe."""
    ranking = (
        RankingConfig.model_validate_json(Path(args.ranking_json).read_text(encoding="utf-8"))
        if args.ranking_json
        else None  # the ranking the catalogue is served with (`ranking.ranking_for`)
    )
    labels = dict(item.partition("=")[::2] for item in args.label)
    return EvaluateInputs(
        catalogue=Path(args.catalogue or paths.catalogue),
        out_dir=Path(args.out or paths.eval),
        vectors=_parse_vectors(args.vectors, paths.models / "vectors"),
        neighbours=Path(args.neighbours or paths.neighbours),
        triplets=Path(args.triplets or paths.triplets),
        dev_csv=Path(args.dev_csv),
        model_dir=Path(args.model_dir or paths.models / "runtime"),
        onnx_dir=paths.models / "onnx",
        final_v4=args.final_v4,
        final_v3=args.final_v3,
        ranking=ranking,
        tune=args.tune,
        pool=args.pool,
        v3_pool=args.v3_pool,
        v2_pool=args.v2_pool,
        labels=labels,
        bundle=paths.artifacts_dir,
    )


def default_config(paths: BuildPaths) -> EvaluateInputs:
    """`anime-build evaluate` without arguments: every earlier stage's output, the shared dev set."""
    return EvaluateInputs(
        catalogue=paths.catalogue,
        out_dir=paths.eval,
        vectors=_parse_vectors([], paths.models / "vectors"),
        neighbours=paths.neighbours,
        triplets=paths.triplets,
        dev_csv=DEFAULT_DEV_CSV,
        model_dir=paths.models / "runtime",
        onnx_dir=paths.models / "onnx",
        bundle=paths.artifacts_dir,
    )


def run_and_report(inputs: EvaluateInputs) -> EvaluateResult:
    """Write the report and print its Markdown."""
    result = evaluate(inputs)
    sys.stdout.write(result.md_path.read_text(encoding="utf-8"))
    sys.stdout.write(f"wrote {result.json_path} and {result.md_path}\n")
    return result


def run_default(paths: BuildPaths) -> EvaluateResult:
    """The evaluate stage with its defaults (what `anime-build all` runs)."""
    return run_and_report(default_config(paths))


def run(args: argparse.Namespace) -> int:
    """Run the `evaluate` stage from parsed CLI arguments."""
    run_and_report(config_from_args(args, BuildPaths.from_env()))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="write the evaluation report (triplet accuracy, teacher recall, dev recall, siblings)",
        description="Evaluate V1/V2/V3/V4 and the final ranking; write report.json and report.md to "
        ".work/eval/. Sections whose inputs are missing are skipped.",
    )
    p.add_argument("--catalogue", help="catalogue .jsonl.gz (default: the ingest stage's output)")
    p.add_argument(
        "--vectors",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="catalogue vectors (.npy in row order, or .npz with ids); defaults: "
        ".work/models/vectors/{v3_fp32,v3,v4_fp32,v4_int8}.npy from the export stage",
    )
    p.add_argument("--neighbours", help="V2 neighbour lists .npz (default: the teacher stage's output)")
    p.add_argument("--triplets", help="triplets .npz (default: the triplets stage's output)")
    p.add_argument(
        "--dev-csv",
        default=str(DEFAULT_DEV_CSV),
        help="MyAnimeList dev recommendations CSV (default: ../shared/eval/…); absent = section skipped",
    )
    p.add_argument(
        "--model-dir", help="runtime ONNX model dir for throughput and sizes (default: .work/models/runtime)"
    )
    p.add_argument("--final-v4", default="v4_int8", help="vectors NAME used as V4 by the final ranking")
    p.add_argument("--final-v3", default="v3", help="vectors NAME used as V3 by the final ranking")
    p.add_argument("--ranking-json", help="RankingConfig as JSON (default: the tuned defaults)")
    p.add_argument(
        "--tune", action="store_true", help="grid-search RankingConfig on the dev set (2-fold check)"
    )
    p.add_argument(
        "--pool",
        type=int,
        default=SIMILAR_V4_POOL,
        help="V4 candidates over-fetched per query before re-ranking (default: the API's)",
    )
    p.add_argument(
        "--v3-pool", type=int, default=SIMILAR_V3_POOL, help="V3 candidates added to the pool (0 = none)"
    )
    p.add_argument(
        "--v2-pool", type=int, default=SIMILAR_V2_POOL, help="V2 list entries added to the pool (0 = none)"
    )
    p.add_argument("--label", action="append", default=[], metavar="NAME=TEXT", help="describe a method")
    p.add_argument("--out", help="output folder (default: .work/eval)")
    p.set_defaults(func=run)
