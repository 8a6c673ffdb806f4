"""Hot swap for warm API containers: follow the store's pointer and swap the backend by reference.

`RefreshingBundleProvider` is the `bundle_provider` `create_app` calls on every request. At most every
`check_seconds` one request (the one that finds the check due; concurrent ones do not wait) reads the
pointer; when it names a new version, that request downloads it into the cache dir (reusing unchanged
files such as the model from the layer; a local store's version is used in place), loads it (the loader
verifies every checksum of what it loads: a version with any failure is not swapped in) and replaces
the reference.
Requests already running keep the backend object they got; the next ones get the new one. Anything
failing keeps the current backend (logged; the same broken version is not retried until the pointer
moves), so a bad publish can never take a container down. Cache keys contain the data version, so a
swap also moves every request to fresh cache entries.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from anime_recommender.artifacts import Manifest
from anime_recommender.runtime import paused_gc
from anime_recommender.settings import StoreSettings
from anime_recommender.similarity import SimilarityBackend
from anime_recommender.store import ArtifactStore, Pointer, servable, version_id

log = logging.getLogger(__name__)

B = TypeVar("B", bound=SimilarityBackend)

TIER_RANK = {"v4": 3, "v3": 2, "v2": 1}
# Downloaded versions kept in the cache dir (the serving one and its predecessor; /tmp is small).
KEEP_VERSIONS = 2


@dataclass(frozen=True)
class SwapEvent:
    """One completed swap (for logs, metrics and the benchmark)."""

    from_version: str
    to_version: str
    seconds: float


class RefreshingBundleProvider(Generic[B]):
    """`() -> SimilarityBackend` that follows an artifact store's pointer (see module docstring)."""

    def __init__(
        self,
        layer_dir: Path,
        load: Callable[[Path], B],
        store: ArtifactStore | None = None,
        *,
        check_seconds: float = 60.0,
        cache_dir: Path = Path("/tmp/anime-artifacts"),
        clock: Callable[[], float] = time.monotonic,
        on_swap: Callable[[SwapEvent], None] | None = None,
    ) -> None:
        """Load the starting backend: the pointer's version when usable, else the layer's bundle."""
        self._layer_dir = layer_dir
        self._load = load
        self._store = store
        self._check_seconds = check_seconds
        self._cache_dir = cache_dir
        self._clock = clock
        self._on_swap = on_swap
        self._lock = threading.Lock()
        self._layer_model = Manifest.read(layer_dir).model_version if store is not None else ""
        self._failed: str | None = None
        self.last_error: str | None = None
        self.swaps: list[SwapEvent] = []
        backend, version = None, version_id(Manifest.read(layer_dir))
        if store is not None:
            try:
                pointer = store.read_pointer()
                if servable(pointer, self._layer_model):
                    backend, version = self._load_version(pointer), pointer.version
            except Exception as exc:  # any store or load failure at cold start: serve the layer
                self._record_failure(None, exc)
        self._backend: B = backend if backend is not None else load(layer_dir)
        self._version = version
        self._next_check = clock() + check_seconds

    @classmethod
    def from_settings(cls, settings: StoreSettings, load: Callable[[Path], B]) -> RefreshingBundleProvider[B]:
        """Provider for the configured store (none configured: the layer's bundle, never refreshed)."""
        return cls(
            settings.artifacts_dir,
            load,
            settings.store(),
            check_seconds=settings.pointer_check_seconds,
            cache_dir=settings.artifacts_cache_dir,
        )

    @property
    def backend(self) -> B:
        """The backend served now."""
        return self._backend

    @property
    def version(self) -> str:
        """The store version (or the layer's `<data>-<model>` id) served now."""
        return self._version

    def __call__(self) -> B:
        if self._store is not None and self._clock() >= self._next_check:
            # Non-blocking: while one request refreshes, the others keep serving the current backend.
            if self._lock.acquire(blocking=False):
                try:
                    self._next_check = self._clock() + self._check_seconds
                    self.refresh()
                finally:
                    self._lock.release()
        return self._backend

    def renew_store(self, store: ArtifactStore | None) -> None:
        """Use a new store client (after a SnapStart restore) and check the pointer at the next call."""
        self._store = store
        self._next_check = self._clock()

    def refresh(self) -> bool:
        """Check the pointer now; swap when it names a new usable version. True when swapped."""
        if self._store is None:
            return False
        started = time.perf_counter()
        pointer: Pointer | None = None
        try:
            pointer = self._store.read_pointer()
            if (
                pointer is None
                or pointer.version in (self._version, self._failed)
                or not servable(pointer, self._layer_model)
            ):
                return False
            backend = self._load_version(pointer)
            new_tier, old_tier = backend.info.tier, self._backend.info.tier
            if TIER_RANK[new_tier] < TIER_RANK[old_tier]:
                raise RuntimeError(
                    f"version {pointer.version} loads only tier {new_tier} (serving {old_tier})"
                )
            if backend.info.failures:
                # A fresh publish is complete; a file failing verification means a broken copy.
                raise RuntimeError(
                    f"version {pointer.version} failed verification: {'; '.join(backend.info.failures[:3])}"
                )
        except Exception as exc:  # a bad version must never take the container down
            self._record_failure(pointer, exc)
            return False
        event = SwapEvent(self._version, pointer.version, time.perf_counter() - started)
        self._backend, self._version = backend, pointer.version  # the swap: one reference assignment
        self.swaps.append(event)
        log.info(
            "artifacts hot-swapped",
            extra={"from": event.from_version, "to": event.to_version, "seconds": round(event.seconds, 3)},
        )
        if self._on_swap is not None:
            self._on_swap(event)
        self._prune()
        return True

    def _load_version(self, pointer: Pointer) -> B:
        assert self._store is not None
        directory = self._store.fetch(pointer, self._cache_dir, reuse=[self._layer_dir])
        with paused_gc():  # the catalogue parse beside a serving backend's heap
            return self._load(directory)

    def _record_failure(self, pointer: Pointer | None, exc: Exception) -> None:
        self._failed = None if pointer is None else pointer.version
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.error("artifact refresh failed; keeping version %s: %s", self._version, self.last_error)

    def _prune(self) -> None:
        if not self._cache_dir.is_dir():
            return
        versions = sorted(
            (p for p in self._cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        keep = {self._version}
        for old in versions[:-KEEP_VERSIONS]:
            if old.name not in keep:
                # Loaded objects do not need their files (the index view is an mmap: the inode lives on).
                shutil.rmtree(old, ignore_errors=True)
