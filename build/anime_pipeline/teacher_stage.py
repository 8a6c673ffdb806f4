"""`anime-build teacher`: all-pairs V2 top-K neighbour lists for the whole catalogue.

Reads `BuildPaths.catalogue`, writes `BuildPaths.neighbours` (`NeighbourLists` .npz) and prints
pairs, pairs/s, time, peak RSS and a few example lists so a reader can judge the teacher.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from anime_pipeline.paths import BuildPaths
from anime_pipeline.progress import progress_bar
from anime_recommender.catalogue import Catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import TeacherConfig, TeacherFeatures, top_k_neighbours

# Cowboy Bebop, Fullmetal Alchemist: Brotherhood, K-On! (MyAnimeList ids).
EXAMPLE_IDS: tuple[int, ...] = (1, 5114, 5680)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class TeacherResult:
    """What the teacher stage computed and how fast."""

    lists: NeighbourLists
    n_anime: int
    pairs: int
    seconds: float
    peak_rss_mb: float
    output: Path | None = None

    @property
    def pairs_per_second(self) -> float:
        """Scored pairs per wall-clock second."""
        return self.pairs / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class TeacherStageConfig:
    """Inputs of the teacher stage."""

    catalogue: Path
    output: Path
    k: int = 100
    block_size: int = 1024
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    show_progress: bool = True


def compute_neighbours(
    catalogue: Catalogue,
    k: int = 100,
    block_size: int = 1024,
    config: TeacherConfig | None = None,
    show_progress: bool = False,
) -> TeacherResult:
    """All-pairs V2 top-k of a catalogue, timed."""
    started = time.perf_counter()
    features = TeacherFeatures.from_catalogue(catalogue, config or TeacherConfig())
    with progress_bar(total=len(catalogue), desc="teacher", unit="anime", disable=not show_progress) as bar:
        lists = top_k_neighbours(features, k=k, block_size=block_size, progress=bar.update)
    seconds = time.perf_counter() - started
    n = len(catalogue)
    return TeacherResult(
        lists=lists, n_anime=n, pairs=n * (n - 1), seconds=seconds, peak_rss_mb=peak_rss_mb()
    )


def run_teacher(config: TeacherStageConfig) -> TeacherResult:
    """Load the catalogue, compute the lists, save them."""
    catalogue = Catalogue.load(config.catalogue)
    result = compute_neighbours(catalogue, config.k, config.block_size, config.teacher, config.show_progress)
    result.lists.save(config.output)
    return TeacherResult(
        lists=result.lists,
        n_anime=result.n_anime,
        pairs=result.pairs,
        seconds=result.seconds,
        peak_rss_mb=result.peak_rss_mb,
        output=config.output,
    )


def format_examples(catalogue: Catalogue, lists: NeighbourLists, ids: tuple[int, ...], k: int = 10) -> str:
    """Human-readable top-k lists of the given anime (those present in both catalogue and lists)."""
    lines: list[str] = []
    for anime_id in ids:
        anime = catalogue.get(anime_id)
        if anime is None or anime_id not in lists:
            continue
        lines.append(f"{anime.title} [{anime.id}, {anime.type}, score {anime.score}, year {anime.year}]")
        for rank, (nid, score) in enumerate(lists.for_id(anime_id, k), start=1):
            other = catalogue.by_id(nid)
            lines.append(
                f"  {rank:2d}. {score:.3f}  {other.title} ({other.type}, {other.score}, {other.year})"
            )
    return "\n".join(lines)


def config_from_args(args: argparse.Namespace) -> TeacherStageConfig:
    """The teacher-stage configuration the CLI arguments describe."""
    return TeacherStageConfig(
        catalogue=args.catalogue,
        output=args.output,
        k=args.k,
        block_size=args.block_size,
        teacher=TeacherConfig(tag_measure=args.tag_measure),
        show_progress=not args.quiet,
    )


def default_config(paths: BuildPaths) -> TeacherStageConfig:
    """`anime-build teacher` without arguments."""
    return TeacherStageConfig(catalogue=paths.catalogue, output=paths.neighbours)


def run_and_report(config: TeacherStageConfig, example_ids: tuple[int, ...] = EXAMPLE_IDS) -> TeacherResult:
    """Compute and save the lists, then print the timing and the example anime's top-10."""
    result = run_teacher(config)
    catalogue = Catalogue.load(config.catalogue)
    out = sys.stdout
    out.write(
        f"V2 teacher: {result.n_anime:,} anime, top-{result.lists.k}, {result.pairs:,} pairs in "
        f"{result.seconds:.2f} s = {result.pairs_per_second / 1e6:.1f} M pairs/s; "
        f"peak RSS {result.peak_rss_mb:.0f} MiB\n"
    )
    out.write(f"neighbour lists: {config.output}\n")
    examples = format_examples(catalogue, result.lists, example_ids)
    if examples:
        out.write(examples + "\n")
    return result


def run_default(paths: BuildPaths) -> TeacherResult:
    """The teacher stage with its defaults (what `anime-build all` runs)."""
    return run_and_report(default_config(paths))


def run(args: argparse.Namespace) -> int:
    """CLI entry point."""
    config = config_from_args(args)
    if not config.catalogue.is_file():
        sys.stderr.write(f"catalogue not found: {config.catalogue} (run `anime-build ingest` first)\n")
        return 2
    run_and_report(config, tuple(args.example))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `teacher` subcommand."""
    paths = BuildPaths.from_env()
    parser = subparsers.add_parser(
        "teacher",
        help="compute every anime's top-K V2 neighbours (all pairs)",
        description="V2 teacher: tags 60%% (IDF-weighted Jaccard), score 20%%, year 15%% (recency-narrowed "
        "tolerance), type 5%% (compatibility matrix); a missing score/year/type drops its weight for the "
        "pair. Computes the top-K of every anime over the whole catalogue, blockwise, and writes "
        "the neighbour lists (.npz).",
    )
    parser.add_argument("--catalogue", type=Path, default=paths.catalogue, help="input catalogue (.jsonl.gz)")
    parser.add_argument("--output", type=Path, default=paths.neighbours, help="output neighbour lists (.npz)")
    defaults = TeacherStageConfig(catalogue=paths.catalogue, output=paths.neighbours)
    parser.add_argument("-k", type=int, default=defaults.k, help="neighbours per anime (default 100)")
    parser.add_argument(
        "--block-size", type=int, default=defaults.block_size, help="rows per vectorised block (memory knob)"
    )
    parser.add_argument(
        "--tag-measure",
        choices=("jaccard", "cosine"),
        default=defaults.teacher.tag_measure,
        help="IDF-weighted tag similarity",
    )
    parser.add_argument(
        "--example",
        type=int,
        action="append",
        default=list(EXAMPLE_IDS),
        help="anime id whose top-10 to print (repeatable; default Cowboy Bebop, FMA:B, K-On!)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
