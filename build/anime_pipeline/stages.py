"""The one list of `anime-build` subcommands: the CLI registers them, `anime-build all` runs its share.

Each entry names the module whose `register(subparsers)` adds the subcommand. The stages of the
default build carry `run`: the stage with its default arguments, a typed function of the build's
paths (what `anime-build all` calls, in this order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from anime_pipeline import export, index_stage, ingest, layers, teacher_stage, train, triplets
from anime_pipeline.evaluation import cli as evaluation_cli
from anime_pipeline.paths import BuildPaths


@dataclass(frozen=True)
class Stage:
    """One subcommand: its name, the module that registers it, and its default run if `all` runs it."""

    name: str
    module: str
    run: Callable[[BuildPaths], object] | None = None

    @property
    def in_all(self) -> bool:
        """Whether `anime-build all` runs this stage."""
        return self.run is not None


# In dependency order; `anime-build --help` lists them in this order too.
STAGES: tuple[Stage, ...] = (
    Stage("ingest", "ingest", ingest.run_default),
    Stage("teacher", "teacher_stage", teacher_stage.run_default),
    Stage("triplets", "triplets", triplets.run_default),
    Stage("train", "train", train.run_default),
    Stage("export", "export", export.run_default),
    Stage("index", "index_stage", index_stage.run_default),
    Stage("evaluate", "evaluation.cli", evaluation_cli.run_default),
    Stage("search-eval", "evaluation.search_eval"),
    Stage("list-eval", "evaluation.list_eval"),
    Stage("layers", "layers", layers.run_default),
    Stage("sam-size", "deploy_check"),
    Stage("delta", "delta_stage"),
    Stage("serve", "serve"),
    Stage("invoke", "local_invoke"),
    Stage("all", "pipeline"),
    Stage("bench", "bench.cli"),
    Stage("gpu-finetune", "gpu_finetune"),
)

#: The default build, in order.
ALL_STAGES: tuple[Stage, ...] = tuple(stage for stage in STAGES if stage.in_all)


def stage(name: str) -> Stage:
    """The stage called `name`; KeyError naming the known ones otherwise."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")
