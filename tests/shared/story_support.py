"""Helpers of the story-index tests: a catalogue with synopses, a tiny model that knows their words, and
its bundle as `anime-build index` writes it (story index included)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anime_pipeline.index_stage import IndexStageConfig, IndexStageResult, build_index_bundle
from anime_pipeline.tiny_model import make_tiny_model
from anime_recommender.catalogue import Catalogue
from anime_recommender.loaders import merge_synopses, read_synopses
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text, story_passage

DATA = Path(__file__).parent.parent / "data"


def with_synopses(catalogue: Catalogue) -> Catalogue:
    """`catalogue` with the fixture CSV's synopses (28 of the tiny catalogue's 32 anime have one)."""
    found, report = read_synopses(DATA / "synopses.csv")
    return merge_synopses(catalogue, found, report)


def story_ids(catalogue: Catalogue) -> list[int]:
    """The anime a story index of `catalogue` holds: those with a story passage, by id."""
    return sorted(a.id for a in catalogue if story_passage(a))


def story_model(model_dir: Path, catalogue: Catalogue, extra_texts: Iterable[str] = ()) -> Path:
    """A tiny model whose vocabulary holds the catalogue's texts and synopses (and `extra_texts`), so
    story vectors differ by their words rather than all being [UNK]."""
    texts = [anime_text(a) for a in catalogue] + [a.synopsis for a in catalogue if a.synopsis]
    return make_tiny_model(model_dir, [*texts, *extra_texts])


def build_bundle(catalogue: Catalogue, root: Path, model_dir: Path) -> tuple[Path, IndexStageResult]:
    """`catalogue`'s bundle written by the index stage (V2 lists k=5) under `root/anime-artifacts`."""
    root.mkdir(parents=True, exist_ok=True)
    catalogue.save(root / "catalogue.jsonl.gz")
    top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=5).save(root / "neighbours_v2.npz")
    config = IndexStageConfig(
        catalogue=root / "catalogue.jsonl.gz",
        neighbours=root / "neighbours_v2.npz",
        model_dir=model_dir,
        out_dir=root / "anime-artifacts",
        eval_queries=20,
        threads=1,
        # 16-dim toy vectors quantise coarser than the real 384-d ones (the story index: 0.985)
        target_recall=0.95,
    )
    return config.out_dir, build_index_bundle(config)
