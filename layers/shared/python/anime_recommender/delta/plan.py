"""Validate a new catalogue and diff it against the serving one (added / changed / removed).

Validation happens before anything is written: the new file goes through the same loaders (and
`LoadReport`) as the offline build, and a catalogue that fails to load, is empty, lost too many
records to malformation, or removes more than `DeltaPolicy.max_removed_share` of the current
entries is refused with a `DeltaRefusedError` naming the reason. The diff is by `Anime.content_hash`;
of the changed anime, only those whose encoder text (`anime_text`) differs from the base's are
re-embedded (`DeltaPlan.to_embed`): a new content rating or studio updates the record, not its vector.
The story index's rows follow `story_passage` the same way (`DeltaPlan.story_to_embed`): the encoder
text holds only a snippet of the synopsis, so a synopsis can change the passage and not the text.

Story text: a catalogue source (manami's) has none, so the new catalogue takes it, where a record has
none of its own, from a story-text file when one is configured (`load_new_catalogue`, through the
ingest's `read_storytext` / `merge_storytext`), then field by field from the base bundle
(`BaseRecords.story`, `carry_base_story_text`). An anime the source did not change thus keeps its
saved line and content hash, and is not re-embedded; a changed one keeps its story text in its new
encoder text and in the lexical index. Tags, synonyms and relations a story-text file merged into
the base are not carried: a weekly update keeps them by reading the same file again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from anime_recommender.artifacts import data_version
from anime_recommender.catalogue import STORY_FIELDS, Anime, Catalogue, with_fields
from anime_recommender.loaders import CatalogueFormatError, LoadReport, load_catalogue
from anime_recommender.loaders.storytext import StoryTextReport, merge_storytext, read_storytext
from anime_recommender.release_dates import ReleaseDates
from anime_recommender.text import anime_text, story_passage

RefusalCode = Literal[
    "invalid",
    "truncated",
    "invalid_utf8",
    "too_large",
    "schema_drift",
    "duplicates",
    "invalid_storytext",
    "storytext_mismatch",
    "empty",
    "malformed_records",
    "shrink",
]
# A file the loaders cannot read at all, by what is wrong with it (`CatalogueFormatError.kind`).
_FORMAT_REFUSALS: Final[dict[str, RefusalCode]] = {
    "compression": "truncated",
    "encoding": "invalid_utf8",
    "size": "too_large",
    "schema": "schema_drift",
    "syntax": "invalid",
}

# The columns of a saved catalogue line (`saved_lines` only returns lines of these two layouts): every
# field of `Anime`, or every field but the story fields (a catalogue saved without story text).
_LINE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Anime))
_LINE_FIELDS_NO_STORY: Final = tuple(name for name in _LINE_FIELDS if name not in STORY_FIELDS)


class DeltaRefusedError(ValueError):
    """The new catalogue is not acceptable; nothing was changed. `code` is a stable reason name."""

    def __init__(self, code: RefusalCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class DeltaApplyError(RuntimeError):
    """The base bundle cannot take a delta (degraded, or the plan does not match it)."""


@dataclass(frozen=True)
class DeltaPolicy:
    """Guards against publishing a broken or truncated catalogue.

    Args:
        max_removed_share: refuse when more than this share of the current anime would be removed.
        max_skipped_share: refuse when more than this share of the file's records was malformed.
        max_duplicate_share: refuse when more than this share of the file's records repeat an id (a few
            are resolved: the most complete record wins; more means a broken export).
        max_source_bytes: refuse a larger file before reading it (a full manami release is ~100 MB
            uncompressed, ~10 MB compressed; the file is never loaded whole when larger).
        min_storytext_match: refuse a story-text file when fewer than this share of the catalogue's
            anime are in it *and* fewer than this share of its records are in the catalogue (a file
            for another catalogue; a small file about our anime still merges).
    """

    max_removed_share: float = 0.10
    max_skipped_share: float = 0.05
    max_duplicate_share: float = 0.01
    max_source_bytes: int = 150 * 1024 * 1024
    min_storytext_match: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_removed_share", "max_skipped_share", "max_duplicate_share", "min_storytext_match"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")


def story_fields(anime: Anime) -> dict[str, Any]:
    """The story fields (`STORY_FIELDS`) `anime` has, name → value; {} for a record without story text."""
    return {name: value for name in STORY_FIELDS if (value := getattr(anime, name))}


def record_from_line(line: bytes) -> Anime | None:
    """The `Anime` of a saved catalogue line (`saved_lines`), or None when it is not one.

    The layout is told by the row's length: `saved_lines` only returns lines of a file whose header
    names every field of `Anime`, or every field but the story fields.
    """
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, list):
        return None
    names = {len(_LINE_FIELDS): _LINE_FIELDS, len(_LINE_FIELDS_NO_STORY): _LINE_FIELDS_NO_STORY}.get(len(row))
    if names is None:
        return None
    try:
        return Anime.from_dict(dict(zip(names, row, strict=True)))
    except (TypeError, ValueError, KeyError):
        return None


@dataclass(frozen=True)
class BaseRecords:
    """What the serving version says of each anime: content hash, saved catalogue line and story text.

    `lines` is empty for a catalogue saved in an older format (nothing can then be reused);
    `data_version` is `data_version(hashes)`; `story` holds, for each anime that has some, its story
    fields (`story_fields`).
    """

    hashes: dict[int, str]
    lines: dict[int, bytes]
    data_version: str
    story: dict[int, dict[str, Any]] = field(default_factory=dict)

    def record(self, anime_id: int) -> Anime | None:
        """The base's record of `anime_id`, parsed from its saved line; None without one."""
        line = self.lines.get(anime_id)
        return None if line is None else record_from_line(line)


def carry_base_story_text(catalogue: Catalogue, base: BaseRecords) -> tuple[Catalogue, int]:
    """`catalogue` with each story field an anime lacks taken from the base's record of it, and how
    many anime took at least one.

    The same catalogue when the base has none to give. Call before `catalogue.lines()`: the lines
    (and content hashes) of anime that keep their text then equal the base's. Field by field, so that
    a file carrying only synopses (the synopsis CSV) keeps the English titles, ratings and studios a
    fuller file gave the base.
    """
    if not base.story:
        return catalogue, 0
    items: list[Anime] = []
    carried = 0
    for anime in catalogue:
        story = base.story.get(anime.id)
        missing = {name: value for name, value in (story or {}).items() if not getattr(anime, name)}
        if missing:
            anime = with_fields(anime, **missing)
            carried += 1
        items.append(anime)
    return (Catalogue(items), carried) if carried else (catalogue, 0)


def hash_new_catalogue(catalogue: Catalogue, lines: Sequence[bytes], base: BaseRecords) -> dict[int, str]:
    """id → content hash of `catalogue`, hashing only anime whose saved line differs from the base's.

    `lines` is `catalogue.lines()`. An equal line is the same field values, hence the same content hash:
    a weekly delta hashes its few dozen touched anime instead of the whole catalogue (~0.2 s saved).
    """
    if len(lines) != len(catalogue):
        raise ValueError(f"{len(lines)} lines for {len(catalogue)} anime")
    old_lines, old_hashes = base.lines, base.hashes
    hashes: dict[int, str] = {}
    for anime, line in zip(catalogue, lines, strict=True):
        anime_id = anime.id
        known = old_hashes.get(anime_id) if old_lines.get(anime_id) == line else None
        hashes[anime_id] = known or anime.content_hash()
    return hashes


@dataclass(frozen=True)
class DeltaPlan:
    """What a delta update changes: ids by kind, both data versions, the new catalogue and its hashes.

    `text_changed`: the changed anime whose encoder text differs from the base's (None: unknown, all
    of them); the others keep their vectors. `story_changed`: likewise for their story passage (the
    story index's rows).
    """

    base_version: str
    new_version: str
    added: tuple[int, ...]
    changed: tuple[int, ...]
    removed: tuple[int, ...]
    unchanged: int
    catalogue: Catalogue = field(repr=False)
    hashes: Mapping[int, str] = field(repr=False)
    lines: Sequence[bytes] | None = field(default=None, repr=False)  # `catalogue.lines()`, when known
    text_changed: tuple[int, ...] | None = None
    story_changed: tuple[int, ...] | None = None

    @property
    def is_empty(self) -> bool:
        """True when the new catalogue has the same content as the current one."""
        return not (self.added or self.changed or self.removed)

    @property
    def touched(self) -> tuple[int, ...]:
        """Ids whose records are new or changed (their V2 lists are recomputed), sorted."""
        return tuple(sorted(self.added + self.changed))

    @property
    def to_embed(self) -> tuple[int, ...]:
        """Ids whose vectors must be (re)computed, sorted: added, and changed in their encoder text.

        Only what the encoder reads makes a vector stale: an anime changed in its score, studios or
        content rating alone keeps its vector (and its index label).
        """
        changed = self.changed if self.text_changed is None else self.text_changed
        return tuple(sorted(self.added + changed))

    @property
    def story_to_embed(self) -> tuple[int, ...]:
        """Ids whose story passage is new or changed, sorted: added, and changed in `story_passage`
        (gained, lost or edited a synopsis). Those now without a passage leave the story index."""
        changed = self.changed if self.story_changed is None else self.story_changed
        return tuple(sorted(self.added + changed))

    def counts(self) -> dict[str, int]:
        """Counts per kind (for logs, metrics and the summary)."""
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "total": len(self.catalogue),
        }


def load_new_catalogue(
    path: Path,
    policy: DeltaPolicy | None = None,
    release_dates: ReleaseDates | None = None,
    storytext: Path | None = None,
    *,
    storytext_adds: bool = False,
) -> tuple[Catalogue, LoadReport]:
    """Load a candidate catalogue with the build's loaders; `DeltaRefusedError` when unusable.

    `release_dates` are passed to `load_catalogue`: the build's bangumi-data enrichment must match, or
    every enriched anime would look changed; `run_delta_update` passes the base bundle's dates.
    `storytext`: a story-text file (`read_storytext`'s formats: the story-text JSONL or the synopsis
    CSV, as `anime-build ingest --storytext` reads) merged as the ingest merges it, except that story
    fields the source has win; `storytext_adds`: the anime only the file has join (as
    `--storytext-adds`). What it merged and skipped is in `LoadReport.notes`.
    """
    policy = policy or DeltaPolicy()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DeltaRefusedError("invalid", f"catalogue could not be read: {exc}") from exc
    if size > policy.max_source_bytes:
        raise DeltaRefusedError(
            "too_large",
            f"{path.name} is {size:,} bytes, more than the {policy.max_source_bytes:,} a catalogue release "
            "may be; not read",
        )
    try:
        result = load_catalogue(path, release_dates=release_dates)
    except CatalogueFormatError as exc:
        raise DeltaRefusedError(_FORMAT_REFUSALS[exc.kind], f"catalogue failed validation: {exc}") from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise DeltaRefusedError("invalid", f"catalogue could not be read: {exc}") from exc
    report = result.report
    if len(result.catalogue) == 0:
        raise DeltaRefusedError("empty", f"{path.name}: no anime loaded ({report.summary()})")
    if report.records_read:
        share = len(report.skipped) / report.records_read
        if share > policy.max_skipped_share:
            raise DeltaRefusedError(
                "malformed_records",
                f"{path.name}: {len(report.skipped)} of {report.records_read} records malformed "
                f"({share:.1%} > {policy.max_skipped_share:.1%}); by reason {report.skipped_by_reason()}",
            )
        duplicates = len(report.duplicates) / report.records_read
        if duplicates > policy.max_duplicate_share:
            raise DeltaRefusedError(
                "duplicates",
                f"{path.name}: {len(report.duplicates)} of {report.records_read} records repeat an id "
                f"({duplicates:.1%} > {policy.max_duplicate_share:.1%}); a broken export",
            )
    catalogue = result.catalogue
    if storytext is not None:
        catalogue, merged = _merge_storytext_file(catalogue, storytext, adds=storytext_adds, policy=policy)
        report.notes.append(merged.summary())
    return catalogue, report


def _merge_storytext_file(
    catalogue: Catalogue, path: Path, *, adds: bool, policy: DeltaPolicy
) -> tuple[Catalogue, StoryTextReport]:
    """`catalogue` with `path`'s story text merged (the source's own story fields win);
    `DeltaRefusedError` for a bad file, or one without a usable record (a delta that silently dropped a
    configured file would publish stale text)."""
    try:
        stories, report = read_storytext(path)
    except CatalogueFormatError as exc:
        raise DeltaRefusedError("invalid_storytext", f"story-text file failed validation: {exc}") from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise DeltaRefusedError("invalid_storytext", f"story-text file could not be read: {exc}") from exc
    if not stories:
        raise DeltaRefusedError(
            "invalid_storytext", f"story-text file {path.name} has no usable record ({report.summary()})"
        )
    matched = sum(anime_id in catalogue for anime_id in stories)
    covers, belongs = matched / len(catalogue), matched / len(stories)
    if covers < policy.min_storytext_match and belongs < policy.min_storytext_match:
        raise DeltaRefusedError(
            "storytext_mismatch",
            f"story-text file {path.name} covers {covers:.1%} of the catalogue's anime and {belongs:.1%} of "
            f"its {len(stories)} records are in the catalogue (both under {policy.min_storytext_match:.0%}): "
            "a file for another catalogue",
        )
    return merge_storytext(catalogue, stories, report, adds=adds, keep_existing=True), report


def encoder_text_changed(
    changed: Sequence[int],
    new: Catalogue,
    old_record: Callable[[int], Anime | None],
    text: Callable[[Anime], str | None] = anime_text,
) -> tuple[int, ...]:
    """The ids of `changed` whose encoder text (`text`: `anime_text`, or `story_passage`) in `new`
    differs from their old record's (`old_record(id)`; None, e.g. a base saved in an older format,
    counts as differing)."""
    found: list[int] = []
    for anime_id in changed:
        old = old_record(anime_id)
        if old is None or text(old) != text(new.by_id(anime_id)):
            found.append(anime_id)
    return tuple(found)


def plan_delta(
    current: Catalogue | BaseRecords,
    new: Catalogue,
    policy: DeltaPolicy | None = None,
    *,
    new_hashes: Mapping[int, str] | None = None,
    new_lines: Sequence[bytes] | None = None,
    new_version: str | None = None,
) -> DeltaPlan:
    """Diff `new` against `current` (a catalogue, or the serving version's records); the shrink guard.

    `new_hashes`: `new.content_hashes()` when the caller computed them already (hashing a catalogue is
    the costly part of a plan) and `new_version` their `data_version`; `new_lines`: `new.lines()`, kept
    for writing the new catalogue. Each changed anime's encoder text is compared with its old record's
    (`encoder_text_changed`; from the base's saved line when `current` is its records): only those
    that differ are in `DeltaPlan.to_embed`; likewise their story passages (`DeltaPlan.story_to_embed`).

    Raises:
        DeltaRefusedError: `new` is empty or would remove more than `policy.max_removed_share`.
    """
    policy = policy or DeltaPolicy()
    old_record: Callable[[int], Anime | None]
    if isinstance(current, BaseRecords):
        old_hashes: Mapping[int, str] = current.hashes
        base_version = current.data_version
        old_record = current.record
    else:
        old_hashes = current.content_hashes()
        base_version = data_version(old_hashes)
        old_record = current.get
    new_hashes = new.content_hashes() if new_hashes is None else new_hashes
    if len(new_hashes) != len(new):
        raise ValueError(f"{len(new_hashes)} content hashes for {len(new)} anime")
    if not new_hashes:
        raise DeltaRefusedError("empty", "the new catalogue is empty")
    added = tuple(sorted(i for i in new_hashes if i not in old_hashes))
    removed = tuple(sorted(i for i in old_hashes if i not in new_hashes))
    changed = tuple(sorted(i for i, h in new_hashes.items() if i in old_hashes and old_hashes[i] != h))
    if old_hashes:
        share = len(removed) / len(old_hashes)
        if share > policy.max_removed_share:
            raise DeltaRefusedError(
                "shrink",
                f"the new catalogue removes {len(removed)} of {len(old_hashes)} anime ({share:.1%}), more "
                f"than the allowed {policy.max_removed_share:.1%}; refusing a suspicious shrink",
            )
    # Each changed anime's old record is parsed once (from its saved line) for both comparisons.
    old_records = {anime_id: old_record(anime_id) for anime_id in changed}
    return DeltaPlan(
        base_version=base_version,
        new_version=data_version(new_hashes) if new_version is None else new_version,
        added=added,
        changed=changed,
        removed=removed,
        unchanged=len(new_hashes) - len(added) - len(changed),
        catalogue=new,
        hashes=new_hashes,
        lines=new_lines,
        text_changed=encoder_text_changed(changed, new, old_records.__getitem__),
        story_changed=encoder_text_changed(changed, new, old_records.__getitem__, story_passage),
    )
