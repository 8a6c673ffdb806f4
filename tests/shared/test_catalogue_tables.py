"""Saved per-catalogue tables (`catalogue_tables`): same answers as built ones, never trusted blindly."""

from __future__ import annotations

import marshal
import zlib
from pathlib import Path

import pytest

from anime_recommender.artifacts import data_version, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.catalogue_tables import (
    TABLES_FILE,
    CatalogueTables,
    StaleTablesError,
    code_fingerprint,
    load_tables,
    read_tables,
    save_tables,
)
from anime_recommender.search.query import QueryParser

_REAL_BUNDLE = Path(__file__).parents[2] / "layers/artifacts/anime-artifacts"


def _version(catalogue: Catalogue) -> str:
    return data_version(catalogue.content_hashes())


def _assert_same_tables(loaded: CatalogueTables, built: CatalogueTables, catalogue: Catalogue) -> None:
    assert vars(loaded.titles) == vars(built.titles)
    assert vars(loaded.franchise) == vars(built.franchise)
    assert loaded.exact_titles == built.exact_titles
    for anime in catalogue:
        assert loaded.franchise.siblings(anime) == built.franchise.siblings(anime)


def test_saved_tables_load_as_the_ones_built(tiny_catalogue: Catalogue, tmp_path: Path) -> None:
    built = CatalogueTables.build(tiny_catalogue)
    save_tables(tmp_path / TABLES_FILE, built, _version(tiny_catalogue))
    loaded = load_tables(read_tables(tmp_path / TABLES_FILE), tiny_catalogue, _version(tiny_catalogue))
    _assert_same_tables(loaded, CatalogueTables.build(tiny_catalogue), tiny_catalogue)
    # What users see: autocomplete, franchise siblings and the parser's titles.
    for query in ("naruto", "shingeki", "fullmetal alchemist", "narto"):
        assert loaded.titles.search(query, 5) == built.titles.search(query, 5)
    plain = QueryParser.for_catalogue(tiny_catalogue, matcher=built.titles)
    saved = QueryParser.for_catalogue(tiny_catalogue, matcher=loaded.titles, exact_titles=loaded.exact_titles)
    for text in ("like naruto but darker", "anime like Fullmetal Alchemist", "a sad romance"):
        assert saved.parse(text) == plain.parse(text)


def test_tables_of_another_catalogue_or_other_code_are_stale(
    tiny_catalogue: Catalogue, tmp_path: Path
) -> None:
    path = tmp_path / TABLES_FILE
    save_tables(path, CatalogueTables.build(tiny_catalogue), "another-version")
    with pytest.raises(StaleTablesError, match="data version"):
        load_tables(read_tables(path), tiny_catalogue, _version(tiny_catalogue))
    document = marshal.loads(read_tables(path))
    document |= {"data_version": _version(tiny_catalogue), "code": "0" * 16}
    path.write_bytes(zlib.compress(marshal.dumps(document)))
    assert code_fingerprint() != "0" * 16
    with pytest.raises(StaleTablesError, match="other code"):
        load_tables(read_tables(path), tiny_catalogue, _version(tiny_catalogue))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00garbage",
        zlib.compress(b"\x00garbage"),
        zlib.compress(marshal.dumps([1, 2, 3])),
        zlib.compress(marshal.dumps({"format": "something else"})),
    ],
)
def test_unreadable_tables_raise_value_error(
    tiny_catalogue: Catalogue, tmp_path: Path, content: bytes
) -> None:
    (tmp_path / TABLES_FILE).write_bytes(content)
    with pytest.raises(ValueError):
        load_tables(read_tables(tmp_path / TABLES_FILE), tiny_catalogue, _version(tiny_catalogue))


def test_incomplete_tables_raise_value_error(tiny_catalogue: Catalogue, tmp_path: Path) -> None:
    path = tmp_path / TABLES_FILE
    save_tables(path, CatalogueTables.build(tiny_catalogue), _version(tiny_catalogue))
    document = marshal.loads(read_tables(path))
    del document["titles"]["words"]
    path.write_bytes(zlib.compress(marshal.dumps(document)))
    with pytest.raises(ValueError, match="incomplete"):
        load_tables(read_tables(path), tiny_catalogue, _version(tiny_catalogue))


def test_bundle_ships_and_loads_its_tables(bundle_dir: Path, tiny_catalogue: Catalogue) -> None:
    bundle = load_bundle(bundle_dir)
    assert TABLES_FILE in bundle.manifest.files
    assert bundle.tables is not None and not bundle.failures
    _assert_same_tables(bundle.tables, CatalogueTables.build(tiny_catalogue), tiny_catalogue)


@pytest.mark.skipif(not (_REAL_BUNDLE / TABLES_FILE).exists(), reason="no built bundle with tables here")
def test_real_bundle_tables_are_the_ones_this_code_builds() -> None:
    bundle = load_bundle(_REAL_BUNDLE)
    if bundle.tables is None:
        pytest.skip("the built bundle's tables are from other code (rebuild to refresh them)")
    _assert_same_tables(bundle.tables, CatalogueTables.build(bundle.catalogue), bundle.catalogue)
