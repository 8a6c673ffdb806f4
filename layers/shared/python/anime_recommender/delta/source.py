"""Fetch the new catalogue: `s3://bucket/key`, an `https://` URL (a manami release), or a local path."""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from anime_recommender.store import s3_client

# A manami release is ~40 MB as JSON, ~5 MB zstd; anything far larger is not a catalogue.
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
HTTP_TIMEOUT_S = 60


class CatalogueSourceError(RuntimeError):
    """The catalogue location is malformed or could not be downloaded."""


def fetch_catalogue(
    location: str, dest_dir: Path, *, s3: Any = None, endpoint_url: str | None = None
) -> Path:
    """Download (or resolve) the catalogue at `location` into `dest_dir`; returns the local file.

    The file keeps its name, so the loaders' tie-breaking by suffix (.json/.jsonl/.zst/.gz) still works;
    the format itself is detected from content.
    """
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else location)
        if not path.is_file():
            raise CatalogueSourceError(f"catalogue file {path} does not exist")
        return path
    name = Path(parsed.path).name or "catalogue"
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    if parsed.scheme == "s3":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise CatalogueSourceError(f"{location!r} is not s3://bucket/key")
        client = s3 if s3 is not None else s3_client(endpoint_url)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client.download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
        except (BotoCoreError, ClientError) as exc:
            raise CatalogueSourceError(f"cannot download {location}: {exc}") from exc
        return target
    if parsed.scheme == "https":
        request = urllib.request.Request(location, headers={"User-Agent": "anime-recommender-delta/1"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response, target.open("wb") as fh:  # noqa: S310 - https only
                copied = 0
                while chunk := response.read(1 << 20):
                    copied += len(chunk)
                    if copied > MAX_DOWNLOAD_BYTES:
                        raise CatalogueSourceError(f"{location} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                    fh.write(chunk)
        except OSError as exc:
            raise CatalogueSourceError(f"cannot download {location}: {exc}") from exc
        return target
    raise CatalogueSourceError(f"unsupported catalogue location {location!r}: use s3://, https:// or a path")
