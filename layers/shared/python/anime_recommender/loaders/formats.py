"""Reading a catalogue file's bytes into text and records, whatever its container.

Compression is detected by magic bytes: zstandard (`.zst`), gzip (`.gz`) or zip (one member); the
content must be UTF-8. Manami's JSON release (`{"$schema", "license", "repository", "lastUpdate",
"data": [...]}`, pretty or minified) and its JSONL form (an optional metadata object on the first
line, then one anime per line) are told apart by content, the file name only breaks ties. A malformed
*file* raises `CatalogueFormatError` naming the file and the position.

`zstandard` is imported lazily: only needed for `.zst` input, which only the offline build reads.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from anime_recommender.loaders.report import LoadReport
from anime_recommender.source_format import CatalogueFormatError

MAX_DECOMPRESSED_BYTES: Final = 1 << 30  # a full manami release is ~100 MB; more is a bomb


def _read_capped(stream: io.BufferedIOBase | Any, path: Path, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_DECOMPRESSED_BYTES:
            raise CatalogueFormatError(
                path,
                f"decompressed byte {MAX_DECOMPRESSED_BYTES}",
                f"{what} expands beyond the size cap",
                "size",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress_zstd(raw: bytes, path: Path) -> bytes:
    import zstandard  # build-time only: Lambda never reads .zst

    # decompressobj, not stream_reader: the reader returns short data on a truncated frame
    # without raising, and `eof` is the only way to tell a complete frame from a cut one.
    chunks: list[bytes] = []
    total = 0
    pending = raw
    try:
        while pending:
            dobj = zstandard.ZstdDecompressor().decompressobj()
            for start in range(0, len(pending), 1 << 20):
                out = dobj.decompress(pending[start : start + (1 << 20)])
                total += len(out)
                if total > MAX_DECOMPRESSED_BYTES:
                    raise CatalogueFormatError(
                        path, f"decompressed byte {total}", "zstd stream expands beyond the size cap"
                    )
                chunks.append(out)
                if dobj.eof:
                    break
            if not dobj.eof:
                raise CatalogueFormatError(
                    path,
                    f"zstd stream, byte {len(raw)}",
                    "corrupt or truncated: frame not finished",
                    "compression",
                )
            pending = dobj.unused_data + pending[start + (1 << 20) :]
    except zstandard.ZstdError as exc:
        raise CatalogueFormatError(
            path, "zstd stream", f"corrupt or truncated: {exc}", "compression"
        ) from exc
    return b"".join(chunks)


def _decompress(raw: bytes, path: Path) -> tuple[bytes, str | None, str]:
    """(content, compression, inner name) for raw file bytes, by magic number."""
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        return _decompress_zstd(raw, path), "zstd", path.name.removesuffix(".zst")
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                data = _read_capped(gz, path, "gzip stream")
        except (EOFError, OSError, zlib.error) as exc:
            raise CatalogueFormatError(
                path, "gzip stream", f"corrupt or truncated: {exc}", "compression"
            ) from exc
        return data, "gzip", path.name.removesuffix(".gz")
    if raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) != 1:
                    names = ", ".join(m.filename for m in members[:5])
                    raise CatalogueFormatError(
                        path, "zip directory", f"expected exactly one member, found {len(members)}: {names}"
                    )
                member = members[0]
                if member.file_size > MAX_DECOMPRESSED_BYTES:
                    raise CatalogueFormatError(path, member.filename, "member exceeds the size cap", "size")
                with zf.open(member) as fh:
                    data = _read_capped(fh, path, "zip member")
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise CatalogueFormatError(
                path, "zip archive", f"corrupt or truncated: {exc}", "compression"
            ) from exc
        return data, "zip", member.filename
    return raw, None, path.name


def _decode(data: bytes, path: Path, compression: str | None) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "decompressed byte" if compression else "byte"
        raise CatalogueFormatError(
            path, f"{where} offset {exc.start}", "not valid UTF-8", "encoding"
        ) from exc
    return text.removeprefix("\ufeff")


@dataclass(frozen=True, slots=True)
class CatalogueText:
    """A catalogue file's content: decompressed, decoded and without a BOM."""

    path: Path
    text: str
    compression: str | None
    inner_name: str  # the content's own name (less `.zst`/`.gz`, or the zip member's): breaks ties


def read_catalogue_file(path: Path) -> CatalogueText:
    """Read, decompress (by magic bytes) and decode a catalogue file.

    Raises:
        CatalogueFormatError: a corrupt or oversized compressed stream, or content that is not UTF-8.
    """
    data, compression, inner_name = _decompress(path.read_bytes(), path)
    return CatalogueText(path, _decode(data, path, compression), compression, inner_name)


def _json_error(exc: json.JSONDecodeError, compression: str | None) -> str:
    prefix = "decompressed " if compression else ""
    return f"{prefix}line {exc.lineno}, column {exc.colno} (char {exc.pos})"


def manami_items(
    text: str, path: Path, inner_name: str, report: LoadReport
) -> Iterator[tuple[str, object | json.JSONDecodeError]]:
    """(position, raw record or its per-line decode error) for manami JSON or JSONL text."""
    start = first_nonspace(text)
    first_nl = text.find("\n", start)
    first_line = text[start : first_nl if first_nl >= 0 else len(text)].strip()
    more_lines = first_nl >= 0 and _NONSPACE.search(text, first_nl) is not None
    is_jsonl = inner_name.endswith((".jsonl", ".ndjson"))
    if not is_jsonl and more_lines and first_line.startswith("{"):
        # Several complete objects on separate lines → JSONL; a pretty release's first line is just "{".
        try:
            is_jsonl = isinstance(json.loads(first_line), dict)
        except json.JSONDecodeError:
            is_jsonl = False
    if is_jsonl:
        report.format = "manami-jsonl"
        yield from _jsonl_items(text, report)
        return

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueFormatError(path, _json_error(exc, report.compression), exc.msg) from exc
    except (ValueError, RecursionError) as exc:
        # Hostile but syntactically valid JSON: a 5,000-digit integer, or nesting deeper than the stack.
        raise CatalogueFormatError(path, "document", f"unparseable JSON: {exc}") from exc
    report.format = "manami-json"
    if isinstance(doc, list):
        data: object = doc
    elif isinstance(doc, dict) and "data" in doc:
        report.metadata = _metadata(doc)
        data = doc["data"]
    elif isinstance(doc, dict) and ("title" in doc or "sources" in doc):
        report.format = "manami-jsonl"  # a one-line JSONL file without header
        data = [doc]
    else:
        raise CatalogueFormatError(path, "top level", "expected a manami release object with a 'data' array")
    if not isinstance(data, list):
        raise CatalogueFormatError(path, "$.data", f"expected an array, got {type(data).__name__}")
    for index, item in enumerate(data):
        yield f"data[{index}]", item


def _jsonl_items(text: str, report: LoadReport) -> Iterator[tuple[str, object | json.JSONDecodeError]]:
    first = True
    # split on "\n" only: JSON strings may legally hold U+2028 etc., which splitlines() would cut at.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj: object = json.loads(line)
        except json.JSONDecodeError as exc:
            obj = exc
        except (ValueError, RecursionError) as exc:
            obj = json.JSONDecodeError(f"unparseable JSON ({type(exc).__name__})", line, 0)
        if first and _is_metadata(obj):
            assert isinstance(obj, dict)
            report.metadata = _metadata(obj)
            first = False
            continue
        first = False
        yield f"line {lineno}", obj


_NONSPACE = re.compile(r"\S")


def first_nonspace(text: str) -> int:
    """Index of the first non-whitespace character (len(text) when there is none)."""
    match = _NONSPACE.search(text)
    return len(text) if match is None else match.start()


def _is_metadata(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and "title" not in obj
        and "sources" not in obj
        and any(k in obj for k in ("$schema", "license", "repository", "lastUpdate", "data"))
    )


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    keep = ("$schema", "license", "repository", "lastUpdate", "scoreRange")
    return {k: obj[k] for k in keep if k in obj and len(json.dumps(obj[k])) < 2000}


def json_objects(text: str, path: Path) -> Iterator[tuple[str, object]]:
    """(position, value) of each element of a JSON array document, or of each JSON line (a line that
    does not parse gives its exception as the value); a broken array document is a file error."""
    if text[first_nonspace(text)] == "[":
        try:
            items = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CatalogueFormatError(path, "document", f"unparseable JSON: {exc}") from exc
        if not isinstance(items, list):
            raise CatalogueFormatError(path, "top level", "expected an array of objects")
        for index, element in enumerate(items):
            yield f"[{index}]", element
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item: object = json.loads(line)
        except (ValueError, RecursionError) as exc:
            item = exc
        yield f"line {lineno}", item
