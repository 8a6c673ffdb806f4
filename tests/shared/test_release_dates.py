"""bangumi-data release dates: read with JST seasons, fill only missing years, bad files are errors."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from loaders_support import BEBOP, RECORDS, fake_bangumi, pretty, write

from anime_recommender.loaders import CatalogueFormatError, load_catalogue
from anime_recommender.release_dates import (
    load_bangumi_dates,
    load_release_dates,
    local_release_dates,
    save_release_dates,
)


def test_bangumi_fills_missing_years_only(tmp_path: Path) -> None:
    dates = load_bangumi_dates(fake_bangumi(tmp_path))
    csv_text = (
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        "1,Cowboy Bebop,8.78,Action,TV,26,1\n5114,FMA:B,9.19,Action,TV,64,1\n6,Trigun,8.24,Action,TV,26,1\n"
    )
    result = load_catalogue(write(tmp_path, "a.csv", csv_text.encode()), release_dates=dates)
    cat = result.catalogue
    assert (cat.by_id(1).year, cat.by_id(1).season) == (1998, "spring")
    assert (cat.by_id(5114).year, cat.by_id(5114).season) == (2009, "winter")
    assert cat.by_id(6).year is None
    enrichment = result.report.enrichment
    assert enrichment is not None
    assert (enrichment.years_filled, enrichment.seasons_filled, enrichment.version) == (2, 2, "0.3.999")
    assert enrichment.licence == "CC-BY-4.0" and "bangumi-data" in enrichment.attribution
    assert "bangumi-data" in result.report.summary()
    # A year the source already has is never overwritten.
    manami = load_catalogue(write(tmp_path, "m.json", pretty([BEBOP])), release_dates=dates)
    assert manami.catalogue.by_id(1).year == 1998 and manami.catalogue.by_id(1).season == "spring"
    assert manami.report.enrichment is not None and manami.report.enrichment.years_filled == 0


def test_local_bangumi_absent_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(tmp_path / "missing.json"))
    with caplog.at_level(logging.INFO, logger="anime_recommender.release_dates"):
        absent = local_release_dates()
    result = load_catalogue(write(tmp_path, "m.json", pretty(RECORDS)), release_dates=absent)
    assert result.report.enrichment is None
    assert any("bangumi-data not found" in record.getMessage() for record in caplog.records)
    monkeypatch.setenv("ANIME_BANGUMI_DATA", str(fake_bangumi(tmp_path)))
    found = local_release_dates()
    assert load_catalogue(write(tmp_path, "m.json", pretty(RECORDS)), release_dates=found).report.enrichment


def test_shipped_release_dates_enrich_exactly_like_their_file(tmp_path: Path) -> None:
    # Given the dates extracted from a bangumi-data file, and the same dates as a bundle ships them
    bangumi = fake_bangumi(tmp_path)
    dates = load_bangumi_dates(bangumi)
    assert dates.dates[1] == (1998, "spring") and dates.version == "0.3.999"
    assert dates.source == str(bangumi) and dates.licence == "CC-BY-4.0"
    save_release_dates(tmp_path / "release_dates.json", dates)
    shipped = load_release_dates(tmp_path / "release_dates.json")
    csv_text = b"anime_id,Name,Score,Genres,Type,Episodes,Members\n1,Cowboy Bebop,8.78,Action,TV,26,1\n"
    source = write(tmp_path, "a.csv", csv_text)

    # When a catalogue is loaded with the shipped dates instead of the file's
    from_dates = load_catalogue(source, release_dates=shipped)
    from_file = load_catalogue(source, release_dates=dates)

    # Then the anime and the enrichment report are the same (but for where the dates were read)
    assert list(from_dates.catalogue) == list(from_file.catalogue)
    assert from_dates.catalogue.by_id(1).year == 1998
    assert from_dates.report.enrichment is not None and from_file.report.enrichment is not None
    assert from_dates.report.enrichment.source == str(tmp_path / "release_dates.json")
    assert replace(from_dates.report.enrichment, source=str(bangumi)) == from_file.report.enrichment


def test_malformed_bangumi_file_is_a_file_error(tmp_path: Path) -> None:
    bad = write(tmp_path, "data.json", b'{"items": [')
    with pytest.raises(CatalogueFormatError) as info:
        load_bangumi_dates(bad)
    assert info.value.path == str(bad)
