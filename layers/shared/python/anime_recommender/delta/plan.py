"""Validate a new catalogue and diff it against the serving one (added / changed / removed).

Validation happens before anything is written: the new file goes through the same loaders (and
`LoadReport`) as the offline build, and a catalogue that fails to load, is empty, lost too many
records to malformation, or removes more than `DeltaPolicy.max_removed_share` of the current
entries is refused with a `DeltaRefusedError` naming the reason. The diff is by `Anime.content_hash`.

Story text: a catalogue source (manami's) has no synopses, so the new catalogue takes them, where a
record has none of its own, from a synopsis file when one is configured (`load_new_catalogue`), then
from the base bundle (`BaseRecords.synopses`, `carry_base_synopses`). An anime the source did not
change thus keeps its saved line and content hash, and is not re-embedded; a changed one keeps its
story text in its new encoder text and in the lexical index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from anime_recommender.artifacts import data_version
from anime_recommender.catalogue import Catalogue
from anime_recommender.loaders import (
    CatalogueFormatError,
    LoadReport,
    SynopsisReport,
    fill_synopses,
    load_catalogue,
    merge_synopses,
    read_synopses,
)
from anime_recommender.release_dates import ReleaseDates

RefusalCode = Literal["invalid", "invalid_synopses", "empty", "malformed_records", "shrink"]


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
    """

    max_removed_share: float = 0.10
    max_skipped_share: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_removed_share", "max_skipped_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")


@dataclass(frozen=True)
class BaseRecords:
    """What the serving version says of each anime: content hash, saved catalogue line and story text.

    `lines` is empty for a catalogue saved in an older format (nothing can then be reused);
    `data_version` is `data_version(hashes)`; `synopses` holds the anime that have one.
    """

    hashes: dict[int, str]
    lines: dict[int, bytes]
    data_version: str
    synopses: dict[int, str] = field(default_factory=dict)


def carry_base_synopses(catalogue: Catalogue, base: BaseRecords) -> tuple[Catalogue, int]:
    """`catalogue` with the base's story text for each anime that has none, and how many got one.

    The same catalogue when the base has none to give. Call before `catalogue.lines()`: the lines
    (and content hashes) of anime that keep their text then equal the base's.
    """
    if not base.synopses:
        return catalogue, 0
    return fill_synopses(catalogue, base.synopses)


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
    """What a delta update changes: ids by kind, both data versions, the new catalogue and its hashes."""

    base_version: str
    new_version: str
    added: tuple[int, ...]
    changed: tuple[int, ...]
    removed: tuple[int, ...]
    unchanged: int
    catalogue: Catalogue = field(repr=False)
    hashes: Mapping[int, str] = field(repr=False)
    lines: Sequence[bytes] | None = field(default=None, repr=False)  # `catalogue.lines()`, when known

    @property
    def is_empty(self) -> bool:
        """True when the new catalogue has the same content as the current one."""
        return not (self.added or self.changed or self.removed)

    @property
    def to_embed(self) -> tuple[int, ...]:
        """Ids whose vectors must be (re)computed: added and changed, sorted."""
        return tuple(sorted(self.added + self.changed))

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
    synopses: Path | None = None,
) -> tuple[Catalogue, LoadReport]:
    """Load a candidate catalogue with the build's loaders; `DeltaRefusedError` when unusable.

    `release_dates` are passed to `load_catalogue`: the build's bangumi-data enrichment must match, or
    every enriched anime would look changed; `run_delta_update` passes the base bundle's dates.
    `synopses`: a synopsis file (`read_synopses`' formats) whose text is set on each anime that has
    none from the source; what it merged and skipped is in `LoadReport.notes`.
    """
    policy = policy or DeltaPolicy()
    try:
        result = load_catalogue(path, release_dates=release_dates)
    except CatalogueFormatError as exc:
        raise DeltaRefusedError("invalid", f"catalogue failed validation: {exc}") from exc
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
    catalogue = result.catalogue
    if synopses is not None:
        catalogue, merged = _merge_synopsis_file(catalogue, synopses)
        report.notes.append(merged.summary())
    return catalogue, report


def _merge_synopsis_file(catalogue: Catalogue, path: Path) -> tuple[Catalogue, SynopsisReport]:
    """`catalogue` with `path`'s story text where it has none; `DeltaRefusedError` for a bad file (a
    delta that silently dropped a configured file would publish stale text)."""
    try:
        found, report = read_synopses(path)
    except CatalogueFormatError as exc:
        raise DeltaRefusedError("invalid_synopses", f"synopsis file failed validation: {exc}") from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise DeltaRefusedError("invalid_synopses", f"synopsis file could not be read: {exc}") from exc
    return merge_synopses(catalogue, found, report, keep_existing=True), report


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
    for writing the new catalogue.

    Raises:
        DeltaRefusedError: `new` is empty or would remove more than `policy.max_removed_share`.
    """
    policy = policy or DeltaPolicy()
    if isinstance(current, BaseRecords):
        old_hashes: Mapping[int, str] = current.hashes
        base_version = current.data_version
    else:
        old_hashes = current.content_hashes()
        base_version = data_version(old_hashes)
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
    )
