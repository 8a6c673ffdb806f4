"""Cold-start wiring shared by the Lambda handler and the local server.

`load_serving(settings)` loads the artifact bundle ONCE (verify checksums, degrade per tier),
adapts it to the API's backend and builds the app, timing the whole initialisation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from anime_recommender import prefetch
from anime_recommender.api.app import create_app
from anime_recommender.api.middleware import RequestObserver
from anime_recommender.api.refresh import RefreshingBundleProvider
from anime_recommender.artifacts import load_bundle
from anime_recommender.settings import ApiSettings
from anime_recommender.similarity import TieredBackend, backend_from_bundle

# Content types Mangum returns as text (anything else is base64-encoded for API Gateway).
TEXT_MIME_TYPES: tuple[str, ...] = (
    "text/",
    "application/json",
    "application/problem+json",
    "application/javascript",
    "application/vnd.oai.openapi",
    "image/svg+xml",
)


@dataclass(frozen=True)
class Serving:
    """The app and what /health and the metrics report about its cold start."""

    app: FastAPI
    backend: TieredBackend
    init_ms: float
    provider: RefreshingBundleProvider[TieredBackend]


def load_serving(settings: ApiSettings, observer: RequestObserver | None = None) -> Serving:
    """Load artifacts from `settings.artifacts_dir` and build the app (once per container)."""
    started = time.perf_counter()

    # all_tiers: the V4 re-ranking also uses V3 similarities, so both indexes are loaded.
    def load(directory: Path) -> TieredBackend:
        backend = backend_from_bundle(load_bundle(directory, threads=settings.onnx_threads, all_tiers=True))
        # Built here, inside init (or before a hot swap), so no request pays for it: the first
        # /similar used to spend ~0.2 s on it (franchise keys of every title).
        backend.rerank_features()
        return backend

    # Starts on the published version the store's pointer names (if a store is configured), else the
    # layer's bundle, and hot-swaps when the pointer moves (delta updates; see `api.refresh`).
    provider = RefreshingBundleProvider.from_settings(settings, load)
    backend = provider.backend
    app = create_app(settings, provider, observer=observer)
    # The title index etc. are built by the first provider call; do it now, inside the timed init.
    app.state.api.services()
    prefetch.discard()  # started for the layer's bundle, unused when the store's version was loaded
    init_ms = (time.perf_counter() - started) * 1000.0
    app.state.api.init_ms = init_ms
    return Serving(app=app, backend=backend, init_ms=init_ms, provider=provider)
