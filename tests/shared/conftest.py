"""Fixtures for the shared package: the bundle variant its artifact tests pin, and random V2 lists.

The tiny model and `bundle_dir` come from tests/conftest.py (`anime_pipeline.tiny_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.neighbours import NeighbourLists

# The search-time ef of this folder's bundle, asserted in test_artifacts.py (the default is 32).
BUNDLE_EF = 20


def make_neighbours(catalogue: Catalogue, k: int = 5, seed: int = 0) -> NeighbourLists:
    """Random but well-formed V2 lists (descending scores, no self-neighbours)."""
    rng = np.random.default_rng(seed)
    ids = np.array(catalogue.ids, dtype=np.int64)
    nb = np.stack([rng.choice(ids[ids != i], size=k, replace=False) for i in ids])
    scores = np.sort(rng.random((len(ids), k)).astype(np.float16), axis=1)[:, ::-1]
    return NeighbourLists(ids=ids, neighbour_ids=nb, scores=scores)


@pytest.fixture(scope="session")
def bundle_template(
    tiny_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny catalogue's bundle with indexes searched at ef=20 (overrides the tests/ one)."""
    return make_tiny_bundle(
        tiny_catalogue, tmp_path_factory.mktemp("shared-bundle"), ef=BUNDLE_EF, model_dir=tiny_model_dir
    )


@pytest.fixture
def neighbours_factory() -> Callable[..., NeighbourLists]:
    """`make_neighbours(catalogue, k=5, seed=0)`: well-formed random V2 lists."""
    return make_neighbours
