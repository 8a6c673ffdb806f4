"""The base bundle a delta starts from: what it reads, each file checked against the manifest first.

`load_base_records` reads the base's content hashes and saved catalogue lines (not parsed: what the
diff needs first) and the story text in them (the only part of a line parsed, and only where there
is some: a delta's source has none, so the new catalogue takes the base's story fields);
`load_delta_base` the V2 lists and the release dates, `load_base_release_dates` the build's
enrichment. Every file is checked against the manifest's sha256 before it is read
(`verified_manifest`); a missing or corrupt file raises `DeltaApplyError`, so nothing is published
from a degraded base. The model and the indexes are an `IndexWorker`'s to verify (`indexer`).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from anime_recommender.artifacts import (
    CATALOGUE,
    CONTENT_HASHES,
    MODEL_FILES,
    NEIGHBOURS,
    RELEASE_DATES,
    ArtifactIntegrityError,
    Manifest,
    data_version,
    load_content_hashes,
    verify,
)
from anime_recommender.catalogue import STORY_FIELDS, Anime, Catalogue, saved_lines
from anime_recommender.delta.plan import BaseRecords, DeltaApplyError, story_fields
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.release_dates import ReleaseDates, load_release_dates
from anime_recommender.timing import timed


@dataclass
class DeltaBase:
    """The verified parts of the base bundle that a delta update reads."""

    root: Path
    manifest: Manifest
    records: BaseRecords
    seconds: float = 0.0

    @property
    def data_version(self) -> str:
        """The base catalogue's version (what a plan must have been made against)."""
        return self.manifest.data_version

    def neighbours(self) -> NeighbourLists:
        """The base's V2 lists (verified by `load_delta_base`).

        Read when needed rather than with the rest: `np.load` reads a .npz in 256 KiB chunks, each
        waiting for the GIL while the catalogue is being validated (0.05 s alone, up to 1 s beside it).
        """
        return NeighbourLists.load(self.root / NEIGHBOURS)


def verified_manifest(bundle_dir: Path, files: Callable[[Manifest], list[str]]) -> Manifest:
    """The base's manifest, once the files `files` names in it match their sha256.

    Raises:
        DeltaApplyError: the manifest is unreadable or a file is missing or corrupt.
    """
    try:
        manifest = Manifest.read(bundle_dir)
        failures = verify(bundle_dir, only=files(manifest))
    except (ArtifactIntegrityError, OSError, ValueError) as exc:
        raise DeltaApplyError(f"base bundle {bundle_dir} is unreadable: {exc}; rebuild it") from exc
    if failures:
        problems = "; ".join(f"{f.path}: {f.reason}" for f in failures[:5])
        raise DeltaApplyError(f"base bundle is degraded: {problems}; rebuild it")
    return manifest


def carried_files(manifest: Manifest) -> tuple[str, ...]:
    """Base files the new version takes over unchanged (older bundles lack `release_dates.json`)."""
    return (*MODEL_FILES, RELEASE_DATES) if RELEASE_DATES in manifest.files else MODEL_FILES


def _record_files(manifest: Manifest) -> list[str]:
    """Files `load_base_records` reads: the catalogue and its content hashes (older bundles lack them)."""
    return [CATALOGUE, CONTENT_HASHES] if CONTENT_HASHES in manifest.files else [CATALOGUE]


def _base_files(manifest: Manifest) -> list[str]:
    """Files `load_delta_base` checks besides the records: the V2 lists and the release dates (the model
    and the indexes are the `IndexWorker`'s to verify)."""
    return [NEIGHBOURS, *(rel for rel in carried_files(manifest) if rel not in MODEL_FILES)]


def load_base_release_dates(bundle_dir: Path) -> ReleaseDates | None:
    """The base's release dates (checked against the manifest first), or None when it has none.

    A delta validates the new catalogue with exactly these, so enriched years match the build's.

    Raises:
        DeltaApplyError: the file is listed but missing, corrupt or malformed.
    """
    manifest = verified_manifest(bundle_dir, lambda m: [RELEASE_DATES] if RELEASE_DATES in m.files else [])
    if RELEASE_DATES not in manifest.files:
        return None
    try:
        return load_release_dates(bundle_dir / RELEASE_DATES)
    except (OSError, ValueError) as exc:
        raise DeltaApplyError(f"base bundle is degraded: {exc}; rebuild it") from exc


# How a saved line without story text ends when the story fields are its last columns, in
# `STORY_FIELDS` order (as `Catalogue.save` writes them): each field's empty value (`,null,...,[]]`).
_EMPTY: Final = Anime(id=0, title="")
_NO_STORY_TAIL: Final = (
    "".join("," + json.dumps(getattr(_EMPTY, name)) for name in STORY_FIELDS) + "]"
).encode()


def saved_story_text(path: Path, lines: Mapping[int, bytes]) -> dict[int, dict[str, Any]]:
    """id → story fields (`story_fields`) of the anime that have some in `lines` (`saved_lines(path)`);
    {} when the file's header has no story columns.

    Only lines that can hold story text are parsed: with the story fields the last columns (as
    `Catalogue.save` writes them), a line without any ends in `_NO_STORY_TAIL`. A file `saved_lines`
    could not split (no `lines`: another format) is parsed whole.
    """
    if not lines:
        return {a.id: story for a in Catalogue.load(path) if (story := story_fields(a))}
    with gzip.open(path, "rb") as fh:
        header = json.loads(fh.readline() or b"null")
    names = header.get("fields") if isinstance(header, dict) else None
    if not isinstance(names, list) or not set(STORY_FIELDS).intersection(names):
        return {}
    columns = [(name, names.index(name)) for name in STORY_FIELDS if name in names]
    skip_plain = names[-len(STORY_FIELDS) :] == list(STORY_FIELDS)
    found: dict[int, dict[str, Any]] = {}
    for anime_id, line in lines.items():
        if skip_plain and line.endswith(_NO_STORY_TAIL):
            continue
        row = json.loads(line)
        story = {name: row[column] for name, column in columns if row[column]}
        if isinstance(story.get("studios"), list):
            story["studios"] = tuple(story["studios"])
        if story:
            found[anime_id] = story
    return found


def load_base_records(bundle_dir: Path) -> BaseRecords:
    """Verify and read the base's content hashes, saved catalogue lines and story text (what the diff
    needs first).

    Raises:
        DeltaApplyError: a file is missing or corrupt, or the content hashes do not give the
            manifest's data version.
    """
    manifest = verified_manifest(bundle_dir, _record_files)
    path = bundle_dir / CATALOGUE
    story: dict[int, dict[str, Any]] | None = None
    if CONTENT_HASHES in manifest.files:
        try:
            hashes = load_content_hashes(bundle_dir / CONTENT_HASHES)
        except ValueError as exc:
            raise DeltaApplyError(f"base bundle is degraded: {exc}; rebuild it") from exc
    else:
        catalogue = Catalogue.load(path)
        hashes = catalogue.content_hashes()
        story = {a.id: fields for a in catalogue if (fields := story_fields(a))}
    lines = saved_lines(path, ids=sorted(hashes))
    if story is None:
        try:
            story = saved_story_text(path, lines)
        except (ValueError, IndexError) as exc:
            raise DeltaApplyError(f"base bundle is degraded: {path.name}: {exc}; rebuild it") from exc
    version = data_version(hashes)
    if version != manifest.data_version:
        raise DeltaApplyError(
            f"content hashes of {bundle_dir} give data version {version}, "
            f"the manifest says {manifest.data_version}"
        )
    return BaseRecords(hashes=hashes, lines=lines, data_version=version, story=story)


def load_delta_base(bundle_dir: Path, *, records: BaseRecords | None = None) -> DeltaBase:
    """Verify (sha256 against the manifest) what the parent side of a delta reads from `bundle_dir`:
    its records, V2 lists and release dates (the model and indexes: `IndexWorker`).

    Args:
        bundle_dir: the serving bundle.
        records: `load_base_records(bundle_dir)` when the caller has them already.

    Raises:
        DeltaApplyError: a file is missing or corrupt, or the content hashes do not give the
            manifest's data version.
    """
    with timed() as took:
        if records is None:
            records = load_base_records(bundle_dir)
        manifest = verified_manifest(bundle_dir, _base_files)
        if records.data_version != manifest.data_version:
            raise DeltaApplyError(f"records of another version than {bundle_dir}'s {manifest.data_version}")
    return DeltaBase(root=bundle_dir, manifest=manifest, records=records, seconds=took.seconds)
