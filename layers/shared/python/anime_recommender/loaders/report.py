"""What a load tells its caller: the `LoadReport` of everything it did to its input, and the result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from anime_recommender.catalogue import Catalogue

#: Optional progress wrapper, e.g. `lambda it, total, desc: tqdm(it, total=total, desc=desc)`.
Progress = Callable[[Iterable[Any], int | None, str], Iterable[Any]]


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record that was not loaded, and why."""

    position: str
    reason: str
    id: int | None = None
    title: str | None = None


#: Skipped rows an enrichment report itemises (counts by reason are always complete): a MyAnimeList
#: export holds thousands of anime a catalogue may not have.
MAX_LISTED_SKIPS = 500


@dataclass(slots=True)
class SkipTally:
    """Rows an enrichment file (synopses, story text) did not use: counts by reason, the first few
    hundred itemised."""

    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    skipped: list[SkippedRecord] = field(default_factory=list)

    @property
    def skipped_count(self) -> int:
        """Rows not used, whatever the reason."""
        return sum(self.skipped_by_reason.values())

    def skip(self, position: str, reason: str, anime_id: int | None = None) -> None:
        """Count a skipped row under its kind (the text before ':'); itemise the first few hundred."""
        self.skipped_by_reason[reason.split(":", 1)[0]] += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append(SkippedRecord(position, reason, anime_id))

    def skips_dict(self) -> dict[str, Any]:
        """The skip part of a report's JSON."""
        return {
            "skipped_count": self.skipped_count,
            "skipped_by_reason": dict(self.skipped_by_reason.most_common()),
            "skipped_listed": len(self.skipped),
            "skipped": [asdict(s) for s in self.skipped],
        }


@dataclass(frozen=True, slots=True)
class DuplicateRecord:
    """A record dropped because another with the same id carried more information."""

    id: int
    kept_position: str
    dropped_position: str
    reason: str


@dataclass(frozen=True, slots=True)
class SanitisedRecord:
    """A loaded record whose text needed cleaning (fields like "title", "tags:dedup")."""

    position: str
    fields: list[str]
    id: int | None = None


@dataclass(slots=True)
class EnrichmentReport:
    """What bangumi-data contributed."""

    source: str
    version: str | None
    licence: str
    attribution: str
    mal_ids_available: int = 0
    years_filled: int = 0
    seasons_filled: int = 0


@dataclass(slots=True)
class LoadReport:
    """Counts and itemised lists of everything a load did to its input."""

    source: str
    format: str = "unknown"
    compression: str | None = None
    records_read: int = 0
    loaded: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)
    duplicates: list[DuplicateRecord] = field(default_factory=list)
    sanitised_records: int = 0
    sanitised_fields: Counter[str] = field(default_factory=Counter)
    sanitised: list[SanitisedRecord] = field(default_factory=list)
    derived_ids: int = 0
    derived_id_collisions: int = 0
    enrichment: EnrichmentReport | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        """Skip counts grouped by the reason's leading field name (e.g. 'score', 'title')."""
        return dict(Counter(s.reason.split(":", 1)[0] for s in self.skipped).most_common())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: counts first, then the itemised lists."""
        return {
            "source": self.source,
            "format": self.format,
            "compression": self.compression,
            "records_read": self.records_read,
            "loaded": self.loaded,
            "skipped_count": len(self.skipped),
            "skipped_by_reason": self.skipped_by_reason(),
            "duplicate_count": len(self.duplicates),
            "sanitised_records": self.sanitised_records,
            "sanitised_fields": dict(sorted(self.sanitised_fields.items())),
            "derived_ids": self.derived_ids,
            "derived_id_collisions": self.derived_id_collisions,
            "enrichment": None if self.enrichment is None else asdict(self.enrichment),
            "metadata": self.metadata,
            "notes": list(self.notes),
            "elapsed_s": round(self.elapsed_s, 4),
            "skipped": [asdict(s) for s in self.skipped],
            "duplicates": [asdict(d) for d in self.duplicates],
            "sanitised": [asdict(r) for r in self.sanitised],
        }

    def summary(self) -> str:
        """One paragraph for humans."""
        fmt = self.format + (f", {self.compression}" if self.compression else "")
        parts = [
            f"Loaded {self.loaded} anime from {self.source} ({fmt}) in {self.elapsed_s:.2f}s:",
            f"{self.records_read} records read, {len(self.skipped)} skipped",
        ]
        if self.skipped:
            reasons = ", ".join(f"{k} {v}" for k, v in list(self.skipped_by_reason().items())[:5])
            parts[-1] += f" ({reasons})"
        parts.append(f"{len(self.duplicates)} duplicate ids resolved")
        parts.append(f"{self.sanitised_records} records sanitised")
        if self.derived_ids:
            parts.append(f"{self.derived_ids} without a MyAnimeList id got derived ids")
        text = parts[0] + " " + ", ".join(parts[1:]) + "."
        if self.enrichment is not None:
            e = self.enrichment
            text += (
                f" bangumi-data {e.version or '?'} filled {e.years_filled} years and "
                f"{e.seasons_filled} seasons ({e.attribution})"
            )
        for note in self.notes:
            text += f" Note: {note}"
        return text


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A loaded catalogue and the report of how it was loaded."""

    catalogue: Catalogue
    report: LoadReport
