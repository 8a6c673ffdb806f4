"""Artifact bundle: manifest contents, checksum verification and the v4 → v3 → v2 degradation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.tiny_model import V3_DIM, V4_DIM, CorruptMode, corrupt_file, make_tiny_model
from anime_recommender.artifacts import (
    RELEASE_DATES,
    ArtifactIntegrityError,
    Manifest,
    data_version,
    load_bundle,
    sha256_file,
    verify,
    write_bundle,
)
from anime_recommender.catalogue import Catalogue
from anime_recommender.index import VectorIndex
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.release_dates import ReleaseDates, load_release_dates, save_release_dates
from anime_recommender.text import anime_text


def test_manifest_describes_the_bundle(bundle_dir: Path, tiny_catalogue: Catalogue) -> None:
    manifest = Manifest.read(bundle_dir)
    assert manifest.data_version == data_version(tiny_catalogue.content_hashes())
    assert len(manifest.model_version) == 16
    assert manifest.dims == {"v4": V4_DIM, "v3": V3_DIM}
    assert manifest.indexes["v4"].ef == 20 and manifest.indexes["v4"].count == len(tiny_catalogue)
    assert manifest.quantization == {"mode": "none", "note": "test model"}
    assert manifest.counts["anime"] == len(tiny_catalogue)
    on_disk = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()}
    assert set(manifest.files) == on_disk - {"manifest.json"}
    assert {"catalogue.jsonl.gz", "neighbours_v2.npz", "model/model.onnx", "index_v4/index.bin"} <= on_disk
    for rel, entry in manifest.files.items():
        assert entry.bytes == (bundle_dir / rel).stat().st_size
    assert verify(bundle_dir) == []


def test_data_version_is_stable_and_content_sensitive(tiny_catalogue: Catalogue) -> None:
    hashes = tiny_catalogue.content_hashes()
    assert data_version(hashes) == data_version(dict(reversed(list(hashes.items()))))
    changed = dict(hashes) | {1: "0" * 16}
    assert data_version(changed) != data_version(hashes)


def test_intact_bundle_serves_v4(bundle_dir: Path, tiny_catalogue: Catalogue) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.tier == "v4" and bundle.failures == []
    assert bundle.encoder is not None and bundle.index is bundle.indexes["v4"]
    assert "v3" not in bundle.indexes  # the fallback is not loaded when v4 is fine (cold start)
    assert len(bundle.catalogue) == len(tiny_catalogue) and len(bundle.neighbours) == len(tiny_catalogue)
    anime = tiny_catalogue.by_id(5114)
    query = bundle.encoder.encode_one(anime_text(anime))["v4"]
    assert bundle.index.search(query, 1)[0][0] == 5114
    assert bundle.timings_ms["total"] > 0


def test_all_tiers_loads_both_indexes(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir, all_tiers=True)
    assert bundle.tier == "v4" and set(bundle.indexes) == {"v4", "v3"}


def test_lexical_index_is_a_component_of_its_own(bundle_dir: Path, tiny_catalogue: Catalogue) -> None:
    # Given an intact bundle: its lexical index is listed with checksums and loads for the catalogue
    listed = [rel for rel in Manifest.read(bundle_dir).files if rel.startswith("lexical/")]
    assert "lexical/lexical.json" in listed and "lexical/ids.npy" in listed
    bundle = load_bundle(bundle_dir)
    assert bundle.lexical is not None and bundle.lexical.ids.tolist() == list(tiny_catalogue.ids)
    assert bundle.lexical.search("cowboy bebop", 1)[0].anime_id == 1
    assert bundle.timings_ms["lexical"] >= 0
    # When one of its files is corrupt, the tier stays V4 and the failure is reported
    corrupt_file(bundle_dir / "lexical" / "ids.npy", "flip")
    bundle = load_bundle(bundle_dir)
    assert bundle.tier == "v4" and bundle.lexical is None
    assert [(f.component, f.path) for f in bundle.failures] == [("lexical", "lexical/ids.npy")]
    # And a bundle built before the lexical index (no files listed) loads the same way
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"] = {rel: e for rel, e in manifest["files"].items() if not rel.startswith("lexical/")}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(bundle_dir)
    assert bundle.tier == "v4" and bundle.lexical is None
    assert [f.reason for f in bundle.failures] == ["not listed in the manifest"]


@pytest.mark.parametrize("mode", ["flip", "truncate", "delete"])
@pytest.mark.parametrize(
    ("targets", "tier"),
    [
        (["index_v4/index.bin"], "v3"),
        (["index_v4/ids.npy"], "v3"),
        (["index_v4/index.json"], "v3"),
        (["model/model.onnx"], "v2"),
        (["model/tokenizer.json"], "v2"),
        (["index_v4/index.bin", "index_v3/index.bin"], "v2"),
    ],
)
def test_corruption_degrades_to_the_right_tier(
    bundle_dir: Path, targets: list[str], tier: str, mode: CorruptMode
) -> None:
    for rel in targets:
        corrupt_file(bundle_dir / rel, mode)
    bundle = load_bundle(bundle_dir)
    assert bundle.tier == tier
    assert {f.path for f in bundle.failures} >= set(targets)
    reasons = " ".join(f.reason for f in bundle.failures)
    assert {"flip": "sha256 mismatch", "truncate": "size", "delete": "missing"}[mode] in reasons
    if tier == "v2":
        assert bundle.encoder is None and bundle.index is None
        assert bundle.neighbours.for_id(1, 3)  # by-id lists still serve
    else:
        assert bundle.encoder is not None and set(bundle.indexes) == {"v3"}
    assert {f.path for f in verify(bundle_dir)} >= set(targets)


@pytest.mark.parametrize("mode", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("target", ["catalogue.jsonl.gz", "neighbours_v2.npz", "manifest.json"])
def test_nothing_to_serve_raises(bundle_dir: Path, target: str, mode: CorruptMode) -> None:
    corrupt_file(bundle_dir / target, mode)
    with pytest.raises(ArtifactIntegrityError) as info:
        load_bundle(bundle_dir)
    assert info.value.failures and info.value.failures[0].path == target


def test_fallback_index_corruption_is_found_when_loaded(bundle_dir: Path) -> None:
    corrupt_file(bundle_dir / "index_v3" / "index.bin", "flip")
    assert load_bundle(bundle_dir).tier == "v4"  # not hashed on the cold path: v4 is fine
    bundle = load_bundle(bundle_dir, all_tiers=True)
    assert bundle.tier == "v4" and [f.path for f in bundle.failures] == ["index_v3/index.bin"]


def test_manifest_edited_without_files_is_caught(bundle_dir: Path) -> None:
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["files"]["index_v4/index.bin"]["sha256"] = "0" * 64
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    assert load_bundle(bundle_dir).tier == "v3"
    data["schema_version"] = 99
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactIntegrityError):
        load_bundle(bundle_dir)


def test_model_without_v4_output_serves_v3(
    tiny_catalogue: Catalogue,
    tmp_path: Path,
    neighbours_factory: Callable[..., NeighbourLists],
) -> None:
    texts = [anime_text(a) for a in tiny_catalogue]
    v3_only = make_tiny_model(tmp_path / "model", texts, outputs=("v3",))
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((len(tiny_catalogue), V3_DIM)).astype(np.float32)
    write_bundle(
        tmp_path / "b",
        catalogue=tiny_catalogue,
        neighbours=neighbours_factory(tiny_catalogue),
        model_dir=v3_only,
        indexes={"v3": VectorIndex.build(tiny_catalogue.ids, vecs, M=8, ef_construction=50, ef=20)},
    )
    bundle = load_bundle(tmp_path / "b")
    assert bundle.tier == "v3" and bundle.encoder is not None


def test_write_bundle_rejects_dim_mismatch(
    tiny_catalogue: Catalogue,
    tiny_model_dir: Path,
    tmp_path: Path,
    neighbours_factory: Callable[..., NeighbourLists],
) -> None:
    vecs = np.random.default_rng(0).standard_normal((len(tiny_catalogue), V3_DIM + 1)).astype(np.float32)
    with pytest.raises(ValueError, match="dim"):
        write_bundle(
            tmp_path / "b",
            catalogue=tiny_catalogue,
            neighbours=neighbours_factory(tiny_catalogue),
            model_dir=tiny_model_dir,
            indexes={"v3": VectorIndex.build(tiny_catalogue.ids, vecs)},
        )


# ---------------------------------------------------------------------------------------------
# release dates (the ingest's bangumi-data enrichment, shipped for delta updates)
# ---------------------------------------------------------------------------------------------

RELEASE = ReleaseDates(
    dates={5114: (2009, "spring"), 1: (1998, "spring"), 20: (2002, "fall"), 21: (1999, "fall")},
    version="0.3.208",
    source="/build/machine/node_modules/bangumi-data/dist/data.json",
)


def test_release_dates_round_trip_in_stable_bytes(tmp_path: Path) -> None:
    save_release_dates(tmp_path / "a.json", RELEASE)
    shuffled = ReleaseDates(dict(reversed(list(RELEASE.dates.items()))), RELEASE.version, "elsewhere")
    save_release_dates(tmp_path / "b.json", shuffled)
    # Same dates, same bytes, whatever the order or the machine they were read on.
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert b"/build/machine" not in (tmp_path / "a.json").read_bytes()
    back = load_release_dates(tmp_path / "a.json")
    assert back.dates == RELEASE.dates and back.version == "0.3.208"
    assert back.source == str(tmp_path / "a.json")
    assert (back.licence, back.attribution) == (RELEASE.licence, RELEASE.attribution)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b'{"format": 2, "by_season": {}}',
        b'{"format": 1, "licence": "x", "attribution": "y", "count": 1, "by_season": {"1998": [1]}}',
        b'{"format": 1, "licence": "x", "attribution": "y", "count": 1, "by_season": '
        b'{"1998-spring": [true]}}',
        b'{"format": 1, "licence": "x", "attribution": "y", "count": 2, "by_season": '
        b'{"1998-spring": [1], "1999-fall": [1]}}',
        b'{"format": 1, "licence": "x", "attribution": "y", "count": 9, "by_season": {"1998-spring": [1]}}',
    ],
    ids=["json", "utf8", "format", "key", "id", "twice", "count"],
)
def test_malformed_release_dates_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / RELEASE_DATES
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)):
        load_release_dates(path)


def test_bundle_lists_and_verifies_its_release_dates(
    tmp_path: Path, tiny_catalogue: Catalogue, tiny_model_dir: Path, bundle_template: Path
) -> None:
    # Given a bundle written with the ingest's release dates
    bundle = load_bundle(bundle_template, all_tiers=True)
    out = tmp_path / "bundle"
    write_bundle(
        out,
        catalogue=bundle.catalogue,
        neighbours=bundle.neighbours,
        model_dir=tiny_model_dir,
        indexes=bundle.indexes,
        release_dates=RELEASE,
    )
    # Then the file is listed with its size and sha256 like every other file, and reads back
    manifest = Manifest.read(out)
    assert manifest.files[RELEASE_DATES].bytes == (out / RELEASE_DATES).stat().st_size
    assert manifest.counts["release_dates"] == len(RELEASE.dates)
    assert verify(out) == [] and load_release_dates(out / RELEASE_DATES).dates == RELEASE.dates
    # A damaged copy is reported, and serving (which never reads it) is unaffected
    corrupt_file(out / RELEASE_DATES, "flip")
    assert [(f.path, f.reason) for f in verify(out)] == [(RELEASE_DATES, "sha256 mismatch (corrupt)")]
    assert load_bundle(out).tier == "v4"
    # A bundle written without dates has no such file
    assert RELEASE_DATES not in Manifest.read(bundle_template).files


def _replace_and_resign(bundle_dir: Path, rel: str, content: bytes) -> None:
    """Overwrite a bundle file and make the manifest vouch for it (a broken build, not corruption)."""
    (bundle_dir / rel).write_bytes(content)
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["files"][rel] = {"sha256": sha256_file(bundle_dir / rel), "bytes": len(content)}
    (bundle_dir / "manifest.json").write_text(json.dumps(data))


def test_verified_but_unreadable_neighbour_lists_raise(bundle_dir: Path) -> None:
    # Given lists that pass their checksum but are no .npz (read in a loader thread)
    _replace_and_resign(bundle_dir, "neighbours_v2.npz", b"not a zip file")
    # Then nothing is served, exactly as when they were read on the main thread
    with pytest.raises(ArtifactIntegrityError) as info:
        load_bundle(bundle_dir, all_tiers=True)
    assert info.value.failures[0].component == "catalogue"
    assert "failed to load" in info.value.failures[0].reason


@pytest.mark.parametrize(("space", "tier", "kept"), [("v3", "v4", {"v4"}), ("v4", "v3", {"v3"})])
def test_index_read_in_the_background_degrades_before_serving(
    bundle_dir: Path, space: str, tier: str, kept: set[str]
) -> None:
    # Given a verified index file that hnswlib cannot read, and another that fails its checksum
    _replace_and_resign(bundle_dir, f"index_{space}/index.bin", b"\0" * 64)
    # When both tiers load (indexes are read beside the catalogue parse)
    bundle = load_bundle(bundle_dir, all_tiers=True)
    # Then the broken index is never part of the bundle and its failure is reported
    assert bundle.tier == tier and set(bundle.indexes) == kept
    assert [f.component for f in bundle.failures if f.component.startswith("index")] == [f"index_{space}"]
