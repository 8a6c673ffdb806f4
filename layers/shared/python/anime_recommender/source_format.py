"""What every source file shares: the file-level error and the bounds of an id and a year.

Shared by the catalogue loaders (`anime_recommender.loaders`) and the release dates
(`anime_recommender.release_dates`). A leaf module: `release_dates` is imported by `artifacts`, which
the API loads at cold start, and it must not pull the loaders in with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

SYNTHETIC_ID_BASE: Final = 1_000_000_000
SYNTHETIC_ID_SPAN: Final = 1_000_000_000
MAX_MAL_ID: Final = SYNTHETIC_ID_BASE - 1
YEAR_RANGE: Final = (1900, 2100)


#: What kind of wrong: a damaged compressed stream, bytes that are not UTF-8, a size cap, fields or
#: columns the format must have and lacks (schema drift), or anything else about the syntax.
FormatErrorKind = Literal["compression", "encoding", "size", "schema", "syntax"]


class CatalogueFormatError(ValueError):
    """The file as a whole cannot be read; names the file, where it went wrong and what `kind` of wrong."""

    def __init__(
        self, path: Path | str, position: str, reason: str, kind: FormatErrorKind = "syntax"
    ) -> None:
        self.path = str(path)
        self.position = position
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {position}: {reason}")
