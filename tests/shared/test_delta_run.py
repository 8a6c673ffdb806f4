"""One delta run end to end (`delta/update.py`'s `run_delta_update`), published through S3 (moto server
over HTTP): idempotence, refusals, crash safety. (Not test_delta_update.py: tests/functions/ has one.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from delta_support import keys, run, serving_provider, weekly_change, write_manami

from anime_pipeline.bench.loadgen import LOOPBACK, free_port
from anime_recommender.catalogue import Catalogue
from anime_recommender.store import ArtifactStoreError, S3ArtifactStore


def test_delta_publishes_then_rerun_is_idempotent(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    catalogue = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))
    summary = run(store, layer, catalogue, tmp_path)
    assert summary.status == "published"
    assert summary.counts == {"added": 2, "changed": 1, "removed": 1, "unchanged": 28, "total": 31}
    pointer = store.read_pointer()
    assert pointer is not None and pointer.version == summary.published_version
    # One upload of the version, under a prefix of its own: what the pointer names
    assert pointer.prefix.startswith(f"versions/{pointer.version}/") and pointer.prefix.count("/") == 3
    objects = keys(store)
    assert [k for k in objects if k.endswith("manifest.json")] == [f"{pointer.prefix}manifest.json"]

    again = run(store, layer, catalogue, tmp_path)
    assert again.status == "unchanged" and again.published_version is None
    assert keys(store) == objects
    assert store.read_pointer() == pointer  # no flip: same version, same timestamp


def test_unchanged_catalogue_publishes_nothing(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    summary = run(store, layer, write_manami(tmp_path / "same.jsonl", list(base_catalogue)), tmp_path)
    assert summary.status == "unchanged"
    assert keys(store) == [] and store.read_pointer() is None


@pytest.mark.parametrize("content", [b'{"data": [', b"not a catalogue at all\n", b""])
def test_malformed_catalogue_is_refused_and_nothing_changes(
    content: bytes, base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    first = run(store, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    objects, pointer = keys(store), store.read_pointer()
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    summary = run(store, layer, bad, tmp_path)
    assert summary.status == "refused" and summary.refusal_code in ("invalid", "empty")
    assert summary.refusal_reason
    assert keys(store) == objects and store.read_pointer() == pointer
    assert first.status == "published"


def test_shrinking_catalogue_is_refused_end_to_end(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    summary = run(store, layer, write_manami(tmp_path / "half.jsonl", list(base_catalogue)[:15]), tmp_path)
    assert summary.status == "refused" and summary.refusal_code == "shrink"
    assert keys(store) == []


def test_crash_between_upload_and_flip_keeps_old_version_serving(
    base_catalogue: Catalogue,
    layer: Path,
    store: S3ArtifactStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a container serving the layer's bundle through the store's pointer (none yet)
    provider = serving_provider(layer, store, tmp_path / "cache", check_seconds=0)
    old_version = provider.backend.info.data_version
    catalogue = write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue))

    # When the delta crashes after uploading, before the pointer flip
    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("injected crash before the pointer flip")

    monkeypatch.setattr(store, "write_pointer", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        run(store, layer, catalogue, tmp_path)

    # Then the old version still serves and the bucket is consistent: no pointer, one complete orphan
    assert store.read_pointer() is None
    assert provider().info.data_version == old_version
    versions = {k.split("/")[1] for k in keys(store)}
    assert len(versions) == 1 and store.find_version(versions.pop()) is not None

    # And a re-run adopts the uploaded version (no re-upload) and flips
    monkeypatch.undo()
    objects = keys(store)
    summary = run(store, layer, catalogue, tmp_path)
    assert summary.status == "adopted" and keys(store) == sorted([*objects, "current.json"])
    assert provider().info.data_version != old_version
    assert 52991 in provider().catalogue


def test_s3_failing_during_upload_publishes_no_version(
    base_catalogue: Catalogue, layer: Path, store: S3ArtifactStore, tmp_path: Path
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def unavailable(**kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    store._client.meta.events.register("before-send.s3.PutObject", unavailable)
    with pytest.raises(ArtifactStoreError):
        run(store, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    assert store.read_pointer() is None
    assert not [k for k in keys(store) if k.endswith("manifest.json")]  # nothing complete, nothing served


def test_s3_unreachable_fails_fast_without_changes(
    base_catalogue: Catalogue, layer: Path, tmp_path: Path
) -> None:
    down = S3ArtifactStore("artifacts-down", endpoint_url=f"http://{LOOPBACK}:{free_port()}")
    with pytest.raises(ArtifactStoreError):
        run(down, layer, write_manami(tmp_path / "week.jsonl", weekly_change(base_catalogue)), tmp_path)
    assert not (tmp_path / "work" / "new").exists()
