"""Reading catalogue files: every manami form and compression, found by content; bad files."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest
from loaders_support import COMPRESSORS, FORMS, RECORDS, check_fixture, jsonl, load, pretty, write, zipped

from anime_recommender.loaders import CatalogueFormatError


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("form", list(FORMS))
def test_manami_every_form_and_compression(tmp_path: Path, form: str, suffix: str) -> None:
    name, encode, fmt = FORMS[form]
    path = write(tmp_path, name + suffix, COMPRESSORS[suffix](encode(RECORDS)))
    result = load(path)
    check_fixture(result)
    assert result.report.format == fmt
    assert result.report.compression == {"": None, ".gz": "gzip", ".zst": "zstd"}[suffix]
    if form != "jsonl-bare":
        assert result.report.metadata["lastUpdate"] == "2025-01-03"


@pytest.mark.parametrize("form", list(FORMS))
def test_manami_zip_single_member(tmp_path: Path, form: str) -> None:
    name, encode, _ = FORMS[form]
    check_fixture(load(write(tmp_path, "download.zip", zipped(name, encode(RECORDS)))))


def test_format_found_by_content_not_name(tmp_path: Path) -> None:
    # A gzipped JSONL file with a misleading name still loads (magic bytes + first-line sniffing).
    check_fixture(load(write(tmp_path, "catalogue.dat", gzip.compress(jsonl(RECORDS)))))


def test_zip_with_two_members_is_a_file_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a.json", pretty(RECORDS))
        zf.writestr("b.json", pretty(RECORDS))
    path = write(tmp_path, "two.zip", buffer.getvalue())
    with pytest.raises(CatalogueFormatError, match="exactly one member") as info:
        load(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("form", ["pretty", "minified"])
def test_truncated_json_names_file_and_position(tmp_path: Path, form: str) -> None:
    name, encode, _ = FORMS[form]
    data = encode(RECORDS)
    path = write(tmp_path, name, data[: len(data) // 2])
    with pytest.raises(CatalogueFormatError) as info:
        load(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    assert "line" in err.position and "column" in err.position
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_truncated_compressed_stream_is_a_file_error(tmp_path: Path, suffix: str) -> None:
    data = COMPRESSORS[suffix](pretty(RECORDS * 50))
    path = write(tmp_path, "release.json" + suffix, data[: len(data) // 2])
    with pytest.raises(CatalogueFormatError, match="truncated") as info:
        load(path)
    assert info.value.path == str(path)


def test_invalid_utf8_reports_byte_offset(tmp_path: Path) -> None:
    data = pretty(RECORDS)
    bad = data[:100] + b"\xff\xfe" + data[100:]
    with pytest.raises(CatalogueFormatError) as info:
        load(write(tmp_path, "r.json", bad))
    assert info.value.position == "byte offset 100"


def test_unrecognised_and_wrong_shape_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="unrecognised format"):
        load(write(tmp_path, "x.txt", b"hello world\n"))
    with pytest.raises(CatalogueFormatError, match="'data' array"):
        load(write(tmp_path, "x.json", b'{"lastUpdate": "2025-01-01"}'))
    with pytest.raises(CatalogueFormatError, match=r"\$\.data"):
        load(write(tmp_path, "y.json", b'{"data": {"not": "a list"}}'))


def test_jsonl_bad_line_is_a_skipped_record(tmp_path: Path) -> None:
    data = jsonl(RECORDS) + b'{"title": "cut off'
    result = load(write(tmp_path, "r.jsonl", data))
    assert len(result.catalogue) == 3
    [skip] = result.report.skipped
    assert skip.position == "line 5" and skip.reason.startswith("json:")


def test_hostile_json_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(CatalogueFormatError, match="unparseable JSON"):
        load(write(tmp_path, "deep.json", deep))
    huge_int = b'{"data": [{"title": "x", "sources": [], "episodes": ' + b"9" * 5000 + b"}]}"
    with pytest.raises(CatalogueFormatError, match="unparseable JSON"):
        load(write(tmp_path, "int.json", huge_int))
    # In JSONL the same line only costs its own record.
    result = load(write(tmp_path, "deep.jsonl", jsonl(RECORDS) + deep + b"\n"))
    assert len(result.catalogue) == 3
    assert [s.position for s in result.report.skipped] == ["line 5"]
