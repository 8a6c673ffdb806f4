"""Fetch a delta's inputs: `s3://bucket/key`, an `https://` URL (a manami release), or a local path.

`fetch_catalogue` for the new catalogue, `fetch_input` for any other file (the synopsis file).
"""

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
    """An input's location (the catalogue's, the synopsis file's) is malformed or could not be downloaded."""


def fetch_catalogue(
    location: str, dest_dir: Path, *, s3: Any = None, endpoint_url: str | None = None
) -> Path:
    """Download (or resolve) the catalogue at `location` into `dest_dir`; returns the local file.

    The file keeps its name, so the loaders' tie-breaking by suffix (.json/.jsonl/.zst/.gz) still works;
    the format itself is detected from content.
    """
    return fetch_input(location, dest_dir, what="catalogue file", s3=s3, endpoint_url=endpoint_url)


def fetch_input(
    location: str, dest_dir: Path, *, what: str, s3: Any = None, endpoint_url: str | None = None
) -> Path:
    """Download (or resolve) the file at `location` into `dest_dir`, keeping its name; returns it.

    `what` names the input in errors ("catalogue file", "synopsis file"); its first word names a
    download whose URL has no file name.
    """
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else location)
        if not path.is_file():
            raise CatalogueSourceError(f"{what} {path} does not exist")
        return path
    name = Path(parsed.path).name or what.split()[0]
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
    raise CatalogueSourceError(
        f"unsupported {what.split()[0]} location {location!r}: use s3://, https:// or a path"
    )
