"""Per-catalogue lookup tables, built when a bundle is written and loaded at cold start.

Three structures are pure functions of the catalogue's titles and synonyms: the franchise index
(`ranking.FranchiseIndex`), the autocomplete index (`search.titles.TitleIndex`) and the search
parser's exact titles (`search.query.CatalogueTitles`). Building them means keying and normalising
every name, ~0.15 s of a 17.5k-anime cold start that holds the GIL. Their ~100k id lists and sets
are saved packed (`id_lists`: two byte strings per table), the names as lists of str: at 27.6k
anime the unmarshal takes 30 ms, where one object per id took 123 ms. `write_bundle` and the delta
update save them as `catalogue_tables.marshal` (zlib level 1, 4.5 MB at 27.6k anime, inflated on a
loader thread beside the catalogue parse), and `load_bundle` reads them back when they are certainly
the ones this code would build:

* the file is listed and hashed in the manifest like every bundle file, so it is verified before
  it is read (marshal is only ever fed bytes this project wrote);
* it records the bundle's data version and a fingerprint of this package's source: a file written
  for another catalogue, or by other code (a redeployed layer over an older bundle), is ignored.

Whatever is wrong with it, the tables are built from the catalogue as before, so a missing, stale or
unreadable file costs time, never an answer.
"""

from __future__ import annotations

import hashlib
import marshal
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from anime_recommender.catalogue import Catalogue
from anime_recommender.ranking import FranchiseIndex
from anime_recommender.search.query import CatalogueTitles
from anime_recommender.search.titles import TitleIndex

TABLES_FILE = "catalogue_tables.marshal"
TABLES_FORMAT = "anime-catalogue-tables/2"
# marshal's format 4 reads the same in every Python since 3.4 (the build venv and Lambda's may differ).
_MARSHAL_VERSION = 4
# Level 1: a delta update writes this file too, and level 6 saves only another 12 % of it.
_ZLIB_LEVEL = 1


@dataclass(frozen=True)
class CatalogueTables:
    """The catalogue's franchise index, title index and the parser's exact-title table."""

    franchise: FranchiseIndex
    titles: TitleIndex
    exact_titles: dict[str, int]

    @classmethod
    def build(cls, catalogue: Catalogue) -> CatalogueTables:
        """Build every table from the catalogue (what a bundle without a valid file costs)."""
        return cls(
            franchise=FranchiseIndex(catalogue),
            titles=TitleIndex(catalogue),
            exact_titles=CatalogueTitles(catalogue).exact_titles,
        )


class StaleTablesError(ValueError):
    """The file holds tables of another catalogue or of other code (not corrupt: just not ours)."""


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over this package's source files (path and bytes), 16 hex digits.

    Any change to the code that builds the tables gives other tables, so any change to the package
    invalidates saved ones (~2 ms to compute: 65 files, 0.5 MB).
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def save_tables(path: Path, tables: CatalogueTables, data_version: str) -> None:
    """Write `tables` for the catalogue of `data_version` (`artifacts.data_version`)."""
    document = {
        "format": TABLES_FORMAT,
        "code": code_fingerprint(),
        "data_version": data_version,
        "franchise": tables.franchise.state(),
        "titles": tables.titles.state(),
        "exact_titles": tables.exact_titles,
    }
    path.write_bytes(zlib.compress(marshal.dumps(document, _MARSHAL_VERSION), _ZLIB_LEVEL))


def read_tables(path: Path) -> bytes:
    """The file's marshalled tables, inflated (zlib releases the GIL: run it beside other work).

    Raises ValueError when the file is not zlib data, OSError when it cannot be read.
    """
    try:
        return zlib.decompress(path.read_bytes())
    except zlib.error as exc:
        raise ValueError(f"{path.name}: not a tables file ({exc})") from exc


def load_tables(raw: bytes, catalogue: Catalogue, data_version: str) -> CatalogueTables:
    """The tables in `raw` (`read_tables`) for this catalogue.

    Raises StaleTablesError when they were written for another data version or by other code, and
    ValueError when the bytes cannot be read as tables at all.
    """
    try:
        document: Any = marshal.loads(raw)
    except (EOFError, TypeError, ValueError) as exc:  # what marshal raises on bytes it did not write
        raise ValueError(f"not a marshal document ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != TABLES_FORMAT:
        raise ValueError(f"not a {TABLES_FORMAT} document")
    if document.get("code") != code_fingerprint():
        raise StaleTablesError(f"tables written by other code ({document.get('code')})")
    if document.get("data_version") != data_version:
        raise StaleTablesError(f"tables written for data version {document.get('data_version')}")
    try:
        return CatalogueTables(
            franchise=FranchiseIndex.from_state(catalogue, document["franchise"]),
            titles=TitleIndex.from_state(document["titles"]),
            exact_titles=dict(document["exact_titles"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete tables ({exc!r})") from exc
