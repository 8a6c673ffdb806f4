"""The cold-start prefetch: what it read is used once, and never decides whether a file is sound."""

from __future__ import annotations

from pathlib import Path

import pytest

from anime_pipeline.tiny_model import CorruptMode, corrupt_file
from anime_recommender import prefetch
from anime_recommender.artifacts import ArtifactIntegrityError, load_bundle
from anime_recommender.catalogue import Catalogue


@pytest.fixture(autouse=True)
def _no_leftovers() -> None:
    prefetch.discard()


def _forbid_reading_the_catalogue_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(cls: type[Catalogue], path: Path) -> Catalogue:
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(Catalogue, "load", classmethod(refuse))


def test_a_prefetched_bundle_loads_as_one_read_from_disk(
    bundle_dir: Path, tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_bundle(bundle_dir, all_tiers=True)
    prefetch.prefetch_bundle(bundle_dir)
    _forbid_reading_the_catalogue_file(monkeypatch)  # the inflated bytes come from the prefetch
    fetched = load_bundle(bundle_dir, all_tiers=True)
    assert list(fetched.catalogue) == list(plain.catalogue) == list(tiny_catalogue)
    assert (fetched.tier, set(fetched.indexes), fetched.failures) == (plain.tier, set(plain.indexes), [])
    # Taken once: the next load of the folder (a hot swap back to it) reads the files afresh.
    assert prefetch.take(bundle_dir) is None


@pytest.mark.parametrize("mode", ["flip", "truncate", "delete"])
def test_a_file_corrupt_before_the_prefetch_fails_as_without_it(bundle_dir: Path, mode: CorruptMode) -> None:
    corrupt_file(bundle_dir / "index_v4" / "index.bin", mode)
    prefetch.prefetch_bundle(bundle_dir)
    bundle = load_bundle(bundle_dir)
    assert bundle.tier == "v3"
    reasons = " ".join(f.reason for f in bundle.failures if f.path == "index_v4/index.bin")
    assert {"flip": "sha256 mismatch", "truncate": "size", "delete": "missing"}[mode] in reasons


def test_a_catalogue_corrupt_before_the_prefetch_is_refused(bundle_dir: Path) -> None:
    corrupt_file(bundle_dir / "catalogue.jsonl.gz", "flip")
    prefetch.prefetch_bundle(bundle_dir)
    with pytest.raises(ArtifactIntegrityError, match="catalogue"):
        load_bundle(bundle_dir)


def test_a_file_repaired_after_the_prefetch_is_checked_again_from_disk(bundle_dir: Path) -> None:
    original = (bundle_dir / "catalogue.jsonl.gz").read_bytes()
    corrupt_file(bundle_dir / "catalogue.jsonl.gz", "flip")
    prefetch.prefetch_bundle(bundle_dir)
    (bundle_dir / "catalogue.jsonl.gz").write_bytes(original)
    # The prefetched digest does not match the manifest, so the file is hashed and read again.
    assert load_bundle(bundle_dir).failures == []


def test_no_manifest_starts_nothing(tmp_path: Path) -> None:
    prefetch.prefetch_bundle(tmp_path)
    assert prefetch.take(tmp_path) is None


def test_an_untaken_prefetch_is_discarded(bundle_dir: Path) -> None:
    prefetch.prefetch_bundle(bundle_dir)
    prefetch.discard()
    assert prefetch.take(bundle_dir) is None
