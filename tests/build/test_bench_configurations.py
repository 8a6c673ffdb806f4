"""The bench's `configurations`: the default and story-text builds' quality keys side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anime_pipeline.bench.cli import BenchConfig, configurations, full_config
from anime_pipeline.evaluation.quality import QUALITY_KEYS, storytext_paths
from anime_pipeline.paths import BuildPaths


def _config(tmp_path: Path, default: BuildPaths | None, storytext: BuildPaths | None) -> BenchConfig:
    return BenchConfig(
        mode="full",
        catalogue=tmp_path / "c",
        neighbours=tmp_path / "n",
        triplets_path=tmp_path / "t",
        artifacts=tmp_path / "default-layer" / "anime-artifacts",
        eval_report=tmp_path / "r",
        deps_dir=tmp_path / "d",
        default_paths=default,
        storytext_paths=storytext,
    )


def test_each_configuration_reads_its_own_report_or_says_it_is_missing(tmp_path: Path) -> None:
    # Given a default build with an evaluation report and no story-text build
    default = BuildPaths(work=tmp_path / "work", artifacts_layer=tmp_path / "default-layer")
    default.eval.mkdir(parents=True)
    report = {"baselines": {"tfidf": {"dev": {"recall_at_10": 0.15}, "prior_weight": 0.5}}}
    (default.eval / "report.json").write_text(json.dumps(report), encoding="utf-8")
    storytext = BuildPaths(work=tmp_path / "nowhere", artifacts_layer=tmp_path / "nowhere-layer")
    # When the configurations are collected (the quality section's search measurement reused)
    quality = {"status": "ok", "search": {"skipped": "no bundle"}}
    out = configurations(_config(tmp_path, default, storytext), quality)
    # Then default carries every quality key and storytext says why it is missing
    assert out["default"]["status"] == "ok" and set(QUALITY_KEYS) <= set(out["default"])
    assert out["default"]["baseline_tfidf_dev_recall_at_10"] == 0.15
    assert out["storytext"]["status"] == "missing" and "no work dir" in out["storytext"]["reason"]
    assert configurations(_config(tmp_path, None, None), None)["storytext"]["status"] == "missing"


def test_storytext_paths_default_to_their_own_folders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ANIME_STORYTEXT_WORK_DIR", raising=False)
    monkeypatch.delenv("ANIME_STORYTEXT_ARTIFACTS_LAYER_DIR", raising=False)
    paths = storytext_paths()
    assert paths.work.name == ".work-storytext" and paths.artifacts_layer.name == "artifacts-storytext"
    monkeypatch.setenv("ANIME_STORYTEXT_WORK_DIR", str(tmp_path / "st"))
    assert storytext_paths().work == tmp_path / "st"
    # Benchmarking the story-text build itself: `default` is the repository's own build
    cfg = full_config(BuildPaths(work=tmp_path / "st", artifacts_layer=tmp_path / "l"))
    assert cfg.default_paths is not None and cfg.default_paths.work.name == ".work"
