"""Shared fixtures: a tiny but realistic catalogue, and the bundle, AWS and handler fixtures of every tier.

Everything is real: the tiny ONNX model and bundle come from `anime_pipeline.tiny_model` (real ONNX
graph, hnswlib indexes, V2 teacher lists, checksummed manifest), AWS is moto in server mode over HTTP,
and handlers are the real `functions/*/app.py` imported fresh (tests/handler_support.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from handler_support import import_api_handler, invoke, load_event

from anime_pipeline.bench.loadgen import LOOPBACK, free_port
from anime_pipeline.deploy_check import table_key_schema
from anime_pipeline.tiny_model import make_tiny_bundle, make_tiny_model
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.text import anime_text

_T = AnimeType

# (id, title, type, year, score, members, tags) — a few real titles with their franchises,
# so tests can assert behaviour a user would notice (sequels near, unrelated far).
# fmt: off
_TINY: list[tuple[int, str, AnimeType, int | None, float | None, int | None, tuple[str, ...]]] = [
    (1, "Cowboy Bebop", _T.TV, 1998, 8.78, 1251960, ("action", "adventure", "comedy", "drama", "sci-fi", "space")),
    (5, "Cowboy Bebop: Tengoku no Tobira", _T.MOVIE, 2001, 8.39, 273145, ("action", "drama", "mystery", "sci-fi", "space")),
    (6, "Trigun", _T.TV, 1998, 8.24, 558913, ("action", "sci-fi", "adventure", "comedy", "drama", "shounen")),
    (7, "Witch Hunter Robin", _T.TV, 2002, 7.27, 94683, ("action", "mystery", "police", "supernatural", "drama", "magic")),
    (20, "Naruto", _T.TV, 2002, 7.91, 2717330, ("action", "adventure", "comedy", "super power", "martial arts", "shounen")),
    (1735, "Naruto: Shippuuden", _T.TV, 2007, 8.16, 2229964, ("action", "adventure", "comedy", "super power", "martial arts", "shounen")),
    (5114, "Fullmetal Alchemist: Brotherhood", _T.TV, 2009, 9.19, 2248456, ("action", "military", "adventure", "comedy", "drama", "magic", "fantasy", "shounen")),
    (121, "Fullmetal Alchemist", _T.TV, 2003, 8.11, 1087587, ("action", "adventure", "comedy", "drama", "fantasy", "magic", "military", "shounen")),
    (5680, "K-On!", _T.TV, 2009, 7.86, 684364, ("slice of life", "comedy", "music", "school")),
    (7791, "K-On!!", _T.TV, 2010, 8.21, 389012, ("slice of life", "comedy", "music", "school")),
    (2167, "Clannad", _T.TV, 2007, 8.02, 927425, ("comedy", "drama", "romance", "school", "slice of life", "supernatural")),
    (4181, "Clannad: After Story", _T.TV, 2008, 8.96, 852716, ("slice of life", "comedy", "supernatural", "drama", "romance")),
    (1535, "Death Note", _T.TV, 2006, 8.63, 3271185, ("mystery", "police", "psychological", "supernatural", "thriller", "shounen")),
    (9253, "Steins;Gate", _T.TV, 2011, 9.11, 2107154, ("thriller", "sci-fi")),
    (16498, "Shingeki no Kyojin", _T.TV, 2013, 8.53, 3302112, ("action", "military", "mystery", "super power", "drama", "fantasy", "shounen")),
    (30276, "One Punch Man", _T.TV, 2015, 8.52, 2457106, ("action", "sci-fi", "comedy", "parody", "super power", "supernatural", "seinen")),
    (199, "Sen to Chihiro no Kamikakushi", _T.MOVIE, 2001, 8.83, 1491718, ("adventure", "supernatural", "drama")),
    (431, "Howl no Ugoku Shiro", _T.MOVIE, 2004, 8.67, 1050000, ("adventure", "drama", "fantasy", "romance")),
    (32281, "Kimi no Na wa.", _T.MOVIE, 2016, 8.91, 1910000, ("romance", "supernatural", "school", "drama")),
    (1575, "Code Geass: Hangyaku no Lelouch", _T.TV, 2006, 8.70, 1720000, ("action", "military", "sci-fi", "super power", "drama", "mecha", "school")),
    (2904, "Code Geass: Hangyaku no Lelouch R2", _T.TV, 2008, 8.91, 1390000, ("action", "military", "sci-fi", "super power", "drama", "mecha")),
    (30, "Neon Genesis Evangelion", _T.TV, 1995, 8.35, 1080000, ("action", "sci-fi", "mecha", "psychological", "drama")),
    (32, "Neon Genesis Evangelion: The End of Evangelion", _T.MOVIE, 1997, 8.55, 590000, ("sci-fi", "dementia", "psychological", "drama", "mecha")),
    (11061, "Hunter x Hunter (2011)", _T.TV, 2011, 9.04, 2000000, ("action", "adventure", "fantasy", "shounen", "super power")),
    (820, "Ginga Eiyuu Densetsu", _T.OVA, 1988, 9.03, 240000, ("military", "sci-fi", "space", "drama")),
    (467, "Ghost in the Shell: Stand Alone Complex", _T.TV, 2002, 8.42, 300000, ("action", "mecha", "police", "sci-fi", "seinen")),
    (43, "Koukaku Kidoutai", _T.MOVIE, 1995, 8.27, 300000, ("action", "mecha", "police", "psychological", "sci-fi", "seinen")),
    (2001, "Tengen Toppa Gurren Lagann", _T.TV, 2007, 8.63, 900000, ("action", "adventure", "comedy", "mecha", "sci-fi")),
]
# fmt: on
# Two entries with unknowns, so every stage meets missing score/year/members.
_TINY += [
    (40000, "Mystery Short Without Data", _T.SPECIAL, None, None, None, ("comedy",)),
    (40001, "Idol Music Clip", _T.MUSIC, 2019, None, 1200, ("music",)),
]


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach a real AWS account."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def tiny_catalogue() -> Catalogue:
    """~30 real-titled anime (with franchises) plus two with missing fields."""
    return Catalogue(
        Anime(
            id=aid,
            title=title,
            type=atype,
            year=year,
            score=score,
            members=members,
            tags=tags,
            episodes=1 if atype is AnimeType.MOVIE else None,
            sources=(f"https://myanimelist.net/anime/{aid}",),
        )
        for aid, title, atype, year, score, members, tags in _TINY
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny two-output (v4, v3) ONNX encoder over the tiny catalogue's vocabulary."""
    return make_tiny_model(tmp_path_factory.mktemp("model"), [anime_text(a) for a in tiny_catalogue])


@pytest.fixture(scope="session")
def bundle_template(
    tiny_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A complete, checksummed bundle for the tiny catalogue (built once; copy it with `bundle_dir`)."""
    return make_tiny_bundle(tiny_catalogue, tmp_path_factory.mktemp("bundle"), model_dir=tiny_model_dir)


@pytest.fixture
def bundle_dir(bundle_template: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of the bundle (tests corrupt it to force fallback tiers)."""
    return Path(shutil.copytree(bundle_template, tmp_path / "anime-artifacts"))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Every AWS service moto has (DynamoDB, S3), in server mode over real HTTP on a free local port.

    Shared by the whole session: tests create uniquely named tables and buckets.
    """
    # Imported here: moto's server takes about a second to import, and most test runs need none.
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()


@pytest.fixture
def cache_table(moto_endpoint: str) -> str:
    """A fresh cache table on the moto server, built from template.yaml's own key schema."""
    schema = table_key_schema()
    ttl_attribute = schema.pop("ttl_attribute")
    name = f"cache-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_table(TableName=name, **schema)
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
    )
    return name


@pytest.fixture
def handler_env() -> dict[str, str]:
    """Environment every `load_handler` cold start gets besides its own (a folder may override this)."""
    return {}


HandlerFactory = Callable[..., ModuleType]


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch, handler_env: dict[str, str]) -> Iterator[HandlerFactory]:
    """`load_handler(artifacts_dir, **env)`: import functions/api/app.py fresh, as a cold start would."""
    loaded: list[str] = []

    def _load(artifacts_dir: Path, **env: str) -> ModuleType:
        module = import_api_handler(artifacts_dir, handler_env | env, monkeypatch)
        loaded.append(module.__name__)
        return module

    yield _load
    for name in loaded:
        sys.modules.pop(name, None)


Invoke = Callable[[ModuleType, "str | dict[str, Any]"], tuple[int, dict[str, str], Any]]


@pytest.fixture
def call() -> Invoke:
    """`call(handler_module, event_name_or_dict)` → (status, headers, JSON body) via the real handler."""

    def _call(module: ModuleType, event: str | dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        status, headers, raw = invoke(module, load_event(event) if isinstance(event, str) else event)
        return status, headers, json.loads(raw) if raw else None

    return _call


@pytest.fixture
def event() -> Callable[[str], dict[str, Any]]:
    """`event(name)`: a fresh copy of an events/ file, for tests that tweak it."""
    return load_event
