"""The stage registry: the CLI and `anime-build all` read one list, and `all` runs each stage's defaults."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from anime_pipeline import export, index_stage, ingest, layers, teacher_stage, train, triplets
from anime_pipeline.cli import build_parser
from anime_pipeline.evaluation import cli as evaluate
from anime_pipeline.paths import BuildPaths
from anime_pipeline.pipeline import run_all
from anime_pipeline.stages import ALL_STAGES, STAGES, Stage, stage


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def _parse(name: str) -> argparse.Namespace:
    return build_parser().parse_args([name])


def test_the_cli_offers_exactly_the_registered_stages_in_order() -> None:
    assert _subcommands(build_parser()) == [s.name for s in STAGES]


def test_all_runs_the_default_build_in_dependency_order() -> None:
    assert [s.name for s in ALL_STAGES] == [
        "ingest",
        "teacher",
        "triplets",
        "train",
        "export",
        "index",
        "evaluate",
        "layers",
    ]
    assert stage("index").module == "index_stage" and not stage("serve").in_all
    with pytest.raises(KeyError, match="unknown stage"):
        stage("nope")


def test_each_stage_default_run_uses_what_the_cli_parses_without_arguments() -> None:
    # Given the paths the CLI resolves from the environment
    paths = BuildPaths.from_env()

    # Then each stage's default configuration (what `all` runs) is the CLI's with no flags
    assert ingest.config_from_args(_parse("ingest"), paths) == ingest.default_config(paths)
    assert teacher_stage.config_from_args(_parse("teacher")) == teacher_stage.default_config(paths)
    assert triplets.config_from_args(_parse("triplets")) == triplets.default_config(paths)
    assert train.config_from_args(_parse("train")) == train.TrainConfig()
    assert export.config_from_args(_parse("export")) == export.ExportConfig()
    assert index_stage.config_from_args(_parse("index"), paths) == index_stage.default_config(paths)
    assert evaluate.config_from_args(_parse("evaluate"), paths) == evaluate.default_config(paths)
    assert layers.config_from_args(_parse("layers"), paths.artifacts_dir) == layers.default_config(paths)


def test_run_all_calls_the_typed_stage_functions_in_order(tmp_path: Path) -> None:
    # Given two stages whose default runs record the paths they were given
    paths = BuildPaths(work=tmp_path / "work", artifacts_layer=tmp_path / "layer")
    calls: list[tuple[str, BuildPaths]] = []
    stages = (
        Stage("first", "m", lambda p: calls.append(("first", p))),
        Stage("second", "m", lambda p: calls.append(("second", p))),
    )

    # When the pipeline runs them
    timings = run_all(stages, paths)

    # Then each ran once, in order, with the build's paths, and was timed
    assert calls == [("first", paths), ("second", paths)]
    assert list(timings) == ["first", "second"]


def test_run_all_stops_at_the_first_failing_stage(tmp_path: Path) -> None:
    paths = BuildPaths(work=tmp_path, artifacts_layer=tmp_path)
    ran: list[str] = []

    def fail(_: BuildPaths) -> None:
        raise FileNotFoundError("catalogue")

    stages = (Stage("broken", "m", fail), Stage("after", "m", lambda _: ran.append("after")))
    with pytest.raises(FileNotFoundError):
        run_all(stages, paths)
    assert ran == []
    with pytest.raises(ValueError, match="not part of"):
        run_all((Stage("serve", "serve"),), paths)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_no_stage_imports_a_benchmark() -> None:
    # Benchmarks import stages, never the other way (the CLI reaches `bench.cli` through the registry).
    root = Path(__file__).resolve().parents[2] / "build" / "anime_pipeline"
    offenders = {
        p.name: sorted(m for m in _imported_modules(p) if m.startswith("anime_pipeline.bench"))
        for p in root.glob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
