"""Lambda SnapStart: what the API does before its snapshot is taken and after each restore.

With SnapStart (template.yaml's `SnapStart: ApplyOn: PublishedVersions`), Lambda initialises a
published version once, snapshots the memory, and starts containers from the snapshot. The runtime
calls the hooks registered with `snapshot_restore_py` (the library Lambda's Python runtime provides;
without it, as in a plain cold start or the emulator, nothing is registered and nothing changes):

- before the snapshot, `warm`: the first-request paths are taken once (a similar list, a search,
  recommendations, an imported list, autocomplete, one anime, each serialised), so a restored
  container answers its first request warm. Only there, so that a plain init does not grow. Nothing
  is cached: the paths are the service's, not the routes'.
- after each restore, `restore`: fresh AWS clients (a snapshot's connections and credentials are
  not reused), randomness reseeded (every restored container would otherwise draw the same
  numbers), the published data pointer re-read at once and the newer version swapped in when it
  moved, this container's cache entries dropped (they could belong to the snapshot's data version),
  and a `SnapStartRestore` metric emitted.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anime_recommender.api.deps import ApiState
from anime_recommender.api.models import ImportQuery, RecommendationRequest, SearchQuery, SimilarQuery
from anime_recommender.api.refresh import RefreshingBundleProvider
from anime_recommender.settings import ApiSettings
from anime_recommender.similarity import TieredBackend
from anime_recommender.viewer_list import ListEntry, ListStatus, ViewerList

log = logging.getLogger(__name__)


@dataclass
class RestoreReport:
    """What `restore` did: how long it took, and the data version served before and after."""

    seconds: float
    version_before: str
    version_after: str

    @property
    def swapped(self) -> bool:
        return self.version_before != self.version_after


def warm(state: ApiState) -> None:
    """Take every route's first-request path once, through the service (nothing is cached)."""
    service = state.services()
    ids = service.catalogue.ids
    first, second = ids[0], ids[len(ids) // 2]
    service.similar(first, SimilarQuery(k=10)).model_dump_json()
    service.recommend(RecommendationRequest(liked=[first, second], k=10)).model_dump_json()
    viewer = ViewerList({first: ListEntry(first, ListStatus.COMPLETED, 9)})
    service.recommend_for_list(viewer, ImportQuery(k=10)).model_dump_json()
    service.autocomplete(service.catalogue.by_id(first).title[:3], 8).model_dump_json()
    if service.search_engine.available:
        service.search(SearchQuery(q="space adventure with friends", k=10)).model_dump_json()


def restore(
    state: ApiState,
    provider: RefreshingBundleProvider[TieredBackend],
    settings: ApiSettings,
    emit: Callable[[RestoreReport], None],
) -> RestoreReport:
    """Make a restored container correct (see the module docstring); returns what it did."""
    started = time.perf_counter()
    before = provider.backend.info.data_version
    random.seed(os.urandom(32))
    np.random.seed(int.from_bytes(os.urandom(4), "little"))
    state.cache.renew()
    provider.renew_store(settings.store())
    provider.refresh()
    report = RestoreReport(time.perf_counter() - started, before, provider.backend.info.data_version)
    log.info(
        "restored from snapshot",
        extra={
            "seconds": round(report.seconds, 3),
            "from": report.version_before,
            "to": report.version_after,
        },
    )
    emit(report)
    return report


def register_hooks(
    state: ApiState,
    provider: RefreshingBundleProvider[TieredBackend],
    settings: ApiSettings,
    emit: Callable[[RestoreReport], None],
) -> bool:
    """Register `warm` and `restore` with the runtime's hooks; False where the library is absent."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(warm, state)
    register_after_restore(restore, state, provider, settings, emit)
    return True
