"""A bundle's files read, hashed and inflated in background threads while the API handler imports.

The handler spends ~0.4 s importing FastAPI, pydantic, numpy and onnxruntime before it can load
anything, all of it GIL-bound Python on the main thread. Hashing (sha256 of a memory map) and
inflating (zlib) release the GIL, so started first they run beside those imports wherever a second
core is free (this module imports only the standard library, to start before the rest). Under one
vCPU they just take their turn: the work is the same, only earlier.

`prefetch_bundle` only gathers facts about the files (size, sha256, the catalogue's inflated bytes);
`artifacts.load_bundle` takes them (`take`) and still decides everything against its own reading of
the manifest. A file whose prefetched digest does not match is checked again from disk, and bytes
are only ever used with the digest computed from those same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import mmap
import os
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: Where the artifacts layer puts the bundle on Lambda (`StoreSettings.artifacts_dir`'s default).
DEFAULT_ARTIFACTS_DIR = Path("/opt/anime-artifacts")
MANIFEST_FILE = "manifest.json"
# Files kept inflated in memory: the catalogue is the first thing init needs, and its inflate (~50 ms
# at 27.6k anime with synopses) otherwise runs on the main thread.
INFLATED_FILES = frozenset({"catalogue.jsonl.gz"})
# Read first: what init waits for first (the catalogue, its lookup tables, the neighbour lists).
_FIRST = ("catalogue.jsonl.gz", "catalogue_tables.marshal", "neighbours_v2.npz")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, hashed from a read-only memory map in one call.

    hashlib releases the GIL for the whole file: read in chunks, each chunk had to win the GIL back
    from the thread parsing the catalogue (up to a 5 ms switch interval each), which made background
    verification ~6x slower whenever the main thread was busy in Python.
    """
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return hashlib.sha256().hexdigest()  # an empty file cannot be mapped
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return hashlib.sha256(view).hexdigest()


@dataclass(frozen=True)
class FileRead:
    """One file as the prefetch found it: its size, sha256 and, for `INFLATED_FILES`, the inflated
    bytes of exactly the bytes hashed (None when they are not gzip)."""

    size: int
    sha256: str
    inflated: bytes | None = None


def read_file(path: Path, inflate: bool) -> FileRead:
    """Size and sha256 of `path`, and its inflated content when `inflate` (OSError when unreadable)."""
    if not inflate:
        return FileRead(path.stat().st_size, sha256_file(path))
    raw = path.read_bytes()
    try:
        inflated: bytes | None = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        inflated = None  # the loader reads the file itself and reports what is wrong with it
    return FileRead(len(raw), hashlib.sha256(raw).hexdigest(), inflated)


class BundlePrefetch:
    """Background reads of every file a bundle's manifest lists (two threads, critical files first)."""

    def __init__(self, directory: Path, files: list[str]) -> None:
        self.directory = directory
        order = sorted(files, key=lambda rel: _FIRST.index(rel) if rel in _FIRST else len(_FIRST))
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._reads: dict[str, Future[FileRead]] = {
            rel: pool.submit(read_file, directory / rel, rel in INFLATED_FILES) for rel in order
        }
        pool.shutdown(wait=False)  # the threads end when the reads are done

    def read(self, rel: str) -> Future[FileRead] | None:
        """The pending read of `rel`; None when the manifest the prefetch saw did not list it."""
        return self._reads.get(rel)


_pending: dict[Path, BundlePrefetch] = {}
_lock = threading.Lock()


def prefetch_bundle(directory: Path | str | None = None) -> None:
    """Start reading the bundle in `directory` (default: `ARTIFACTS_DIR`, else the layer's folder).

    Does nothing when its manifest cannot be read: the loader reports that itself.
    """
    if directory is None:
        directory = os.environ.get("ARTIFACTS_DIR") or DEFAULT_ARTIFACTS_DIR
    root = Path(directory).resolve()
    try:
        files = json.loads((root / MANIFEST_FILE).read_bytes())["files"]
        names = [str(rel) for rel in files]
    except (OSError, ValueError, KeyError, TypeError):
        return
    with _lock:
        if root not in _pending:
            _pending[root] = BundlePrefetch(root, names)


def take(directory: Path) -> BundlePrefetch | None:
    """The prefetch started for `directory`, once (a later load of the same folder reads it afresh)."""
    with _lock:
        return _pending.pop(Path(directory).resolve(), None)


def discard() -> None:
    """Drop every prefetch nobody took (init loaded a store's version instead): its reads finish on
    their threads and their bytes are freed."""
    with _lock:
        _pending.clear()
