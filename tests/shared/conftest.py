"""Fixtures for the shared package: the bundle variant its artifact tests pin, random V2 lists, and the
delta tests' base catalogue, its bundle and an S3 artifact store.

The tiny model and `bundle_dir` come from tests/conftest.py (`anime_pipeline.tiny_model`); the delta
tests' plain helpers (manami records, the weekly change, one run) from delta_support.py.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import pytest
from delta_support import write_manami

from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.plan import load_new_catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.store import S3ArtifactStore

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


# Built once per session (read-only templates): the delta tests of several files share them.
@pytest.fixture(scope="session")
def base_catalogue(tiny_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    """The tiny catalogue as the loaders read it back from a manami file (members etc. normalised)."""
    path = write_manami(tmp_path_factory.mktemp("cat") / "base.jsonl", list(tiny_catalogue))
    return load_new_catalogue(path, release_dates=None)[0]


@pytest.fixture(scope="session")
def layer_template(
    base_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A complete bundle (real teacher lists, k=5) for the base catalogue."""
    return make_tiny_bundle(base_catalogue, tmp_path_factory.mktemp("layer"), k=5, model_dir=tiny_model_dir)


@pytest.fixture
def layer(layer_template: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of `layer_template` (the deployed layer a delta starts from)."""
    return Path(shutil.copytree(layer_template, tmp_path / "layer"))


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    """A new, uniquely named bucket on the moto server."""
    name = f"artifacts-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(bucket: str, moto_endpoint: str) -> S3ArtifactStore:
    """An S3 artifact store on `bucket`."""
    return S3ArtifactStore(bucket, endpoint_url=moto_endpoint)
