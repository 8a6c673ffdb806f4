"""What every source file shares: the file-level error and the bounds of an id and a year.

Shared by the catalogue loaders (`anime_recommender.loaders`) and the release dates
(`anime_recommender.release_dates`). A leaf module: `release_dates` is imported by `artifacts`, which
the API loads at cold start, and it must not pull the loaders in with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

SYNTHETIC_ID_BASE: Final = 1_000_000_000
SYNTHETIC_ID_SPAN: Final = 1_000_000_000
MAX_MAL_ID: Final = SYNTHETIC_ID_BASE - 1
YEAR_RANGE: Final = (1900, 2100)


class CatalogueFormatError(ValueError):
    """The file as a whole cannot be read; names the file and where it went wrong."""

    def __init__(self, path: Path | str, position: str, reason: str) -> None:
        self.path = str(path)
        self.position = position
        self.reason = reason
        super().__init__(f"{self.path}: {position}: {reason}")
