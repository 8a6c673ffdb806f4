"""Stage `index`: embed the catalogue with the int8 ONNX model, build the V4 hnswlib index (the
smallest `ef` with recall@10 ≥ 0.99 against brute force) and the V3 flat int8 index (exact search
over quantised vectors, gated on the same recall against float brute force), write the bundle.

The catalogue is embedded with `OnnxEncoder` (the int8 model the API uses for queries), so catalogue
and query vectors come from one code path. Recall is measured with catalogue items as queries
(the by-id "similar" route), against exact inner-product top-10 over all items.

When the ingest filled years from bangumi-data (its report says so), the same dates go into the
bundle as `release_dates.json`: delta updates validate new catalogues with them.

A catalogue with story text also gets the story index (`index_story/`): the model's v3 vectors of each
synopsis' `story_passage`, flat int8 like V3 and gated on the same recall; a catalogue without any
synopsis (the default build) has none, and its bundle is what it was before the story index existed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from anime_pipeline.export import load_served_vectors
from anime_pipeline.ingest import release_dates_from_report
from anime_pipeline.paths import BuildPaths
from anime_pipeline.progress import progress
from anime_recommender.artifacts import (
    SPACE_KINDS,
    STORY,
    STORY_KIND,
    STORY_OUTPUT,
    bundle_sizes,
    write_bundle,
)
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.index import FLAT_KIND, HNSW_KIND, FlatIndex, SearchIndex, VectorIndex
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.text import anime_text, story_passage
from anime_recommender.topk import top_k_inner_products

EF_CANDIDATES: tuple[int, ...] = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass
class IndexStageConfig:
    """Inputs of `anime-build index`."""

    catalogue: Path
    neighbours: Path
    model_dir: Path
    out_dir: Path
    #: The ingest report of `catalogue` (None: ship no release dates).
    ingest_report: Path | None = None
    M: int = 16
    ef_construction: int = 200
    target_recall: float = 0.99
    k: int = 10
    eval_queries: int = 1000
    threads: int = 2
    # One text per run: dynamic int8 quantises activations per batch, so a text's vector depends on
    # its batch-mates; batch 1 makes catalogue vectors identical to query vectors (and measured as
    # fast on CPU, with no padding waste).
    batch_size: int = 1
    # Story passages are only ever compared with query vectors, never used as queries themselves (no
    # catalogue-vs-query identity to keep), so they may be embedded in batches: most fill the encoder's
    # 128-piece window, so little is padding (measured, shipped int8 model, 2 threads, ~97-word
    # synthetic passages: 7.3 ms a passage at 16 against 9.2 ms one at a time).
    story_batch_size: int = 16
    seed: int = 0
    #: Where export saved the shipped model's catalogue vectors (`export.load_served_vectors`); None
    #: embeds the catalogue here.
    vectors_dir: Path | None = None


@dataclass
class SpaceReport:
    """Per space: what was shipped and how it measured."""

    dim: int
    ef: int  # 0 for a flat index
    recall_at_10: float
    build_seconds: float
    query_p50_ms: float
    query_p95_ms: float
    recall_by_ef: dict[int, float] = field(default_factory=dict)
    kind: str = HNSW_KIND


@dataclass
class StoryReport:
    """The story index: how many anime it holds (those with a synopsis) and how it measured."""

    rows: int
    dim: int
    embed_seconds: float
    build_seconds: float
    recall_at_10: float
    query_p50_ms: float
    query_p95_ms: float
    kind: str = STORY_KIND


@dataclass
class IndexStageResult:
    """What the stage produced."""

    out_dir: Path
    embed_seconds: float
    spaces: dict[str, SpaceReport]
    sizes: dict[str, int]
    release_dates: str = "none"
    story: StoryReport | None = None  # None: no anime has a synopsis, no story index


def brute_force_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Row indices of the exact top-k inner products per query (ties broken by row)."""
    return top_k_inner_products(queries, vectors, k, block_size=chunk)[0]


def recall_at_k(index: SearchIndex, ids: np.ndarray, truth_rows: np.ndarray, queries: np.ndarray) -> float:
    """Mean |index top-k ∩ exact top-k| / k (at an hnswlib index's current ef)."""
    k = truth_rows.shape[1]
    found, _ = index.knn_batch(queries, k)
    truth = ids[truth_rows]
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def choose_ef(
    index: VectorIndex,
    ids: np.ndarray,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    target: float = 0.99,
    candidates: tuple[int, ...] = EF_CANDIDATES,
) -> tuple[int, float, dict[int, float]]:
    """The smallest candidate ef (≥ k) reaching `target` recall@k; sets it on the index."""
    truth = brute_force_top_k(vectors, queries, k)
    measured: dict[int, float] = {}
    for ef in (c for c in candidates if c >= k):
        index._index.set_ef(ef)
        measured[ef] = recall_at_k(index, ids, truth, queries)
        if measured[ef] >= target:
            break
    ef = max(measured, key=lambda e: (measured[e] >= target, -e if measured[e] >= target else e))
    index.params = type(index.params)(M=index.params.M, ef_construction=index.params.ef_construction, ef=ef)
    index._index.set_ef(ef)
    return ef, measured[ef], measured


def query_latency_ms(index: SearchIndex, queries: np.ndarray, k: int = 10) -> tuple[float, float]:
    """p50 and p95 of single-query `search(vector, k)` (the API's call), in milliseconds."""
    for q in queries[:20]:
        index.search(q, k)  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, k)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def embed_texts(encoder: OnnxEncoder, texts: list[str], batch_size: int, desc: str) -> dict[str, np.ndarray]:
    """Every encoder output of `texts`, in order, `batch_size` texts a run, with a progress bar."""
    chunks: dict[str, list[np.ndarray]] = {space: [] for space in encoder.dims}
    step = batch_size * 16
    for start in progress(range(0, len(texts), step), desc=desc, unit="chunk"):
        for space, vecs in encoder.encode(texts[start : start + step], batch_size=batch_size).items():
            chunks[space].append(vecs)
    return {space: np.concatenate(parts) for space, parts in chunks.items()}


def build_story_index(
    catalogue: Catalogue, encoder: OnnxEncoder, config: IndexStageConfig
) -> tuple[FlatIndex, StoryReport] | None:
    """The story index of the anime with a synopsis (None when none has one), gated on recall@k.

    Recall is measured as V3's: exact search over the int8 rows against exact float top-k, with
    sampled story vectors as queries (what is lost is the quantisation, whatever the query).
    """
    passages = [(anime.id, text) for anime in catalogue if (text := story_passage(anime))]
    if not passages:
        return None
    ids = np.array([anime_id for anime_id, _ in passages], dtype=np.int64)
    texts = [text for _, text in passages]
    t0 = time.perf_counter()
    vectors = embed_texts(encoder, texts, config.story_batch_size, "embed story passages")[STORY_OUTPUT]
    embed_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = FlatIndex.build(ids, vectors)
    build_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(config.seed)
    queries = vectors[rng.choice(len(ids), size=min(config.eval_queries, len(ids)), replace=False)]
    k = min(config.k, len(ids))
    recall = recall_at_k(index, ids, brute_force_top_k(vectors, queries, k), queries)
    if recall < config.target_recall:
        raise RuntimeError(f"{STORY}: {STORY_KIND} recall@{k} {recall:.4f} < {config.target_recall}")
    p50, p95 = query_latency_ms(index, queries[:300], k)
    return index, StoryReport(
        rows=len(index),
        dim=index.dim,
        embed_seconds=round(embed_seconds, 2),
        build_seconds=round(build_seconds, 2),
        recall_at_10=round(recall, 4),
        query_p50_ms=round(p50, 3),
        query_p95_ms=round(p95, 3),
    )


def build_index_bundle(config: IndexStageConfig) -> IndexStageResult:
    """Embed, index, gate on recall and write the bundle (see the module docstring)."""
    catalogue = Catalogue.load(config.catalogue)
    release_dates, release_note = (
        release_dates_from_report(config.ingest_report, config.catalogue)
        if config.ingest_report is not None
        else (None, "no ingest report given")
    )
    neighbours = NeighbourLists.load(config.neighbours)
    encoder = OnnxEncoder.load(config.model_dir, threads=config.threads)
    texts = [anime_text(a) for a in catalogue]
    t0 = time.perf_counter()
    # Export embedded the catalogue with this very model, one text per run as here: reuse its vectors
    # while they are for this graph and these texts (the longest step of a build otherwise).
    vectors = (
        load_served_vectors(config.vectors_dir, config.model_dir, texts)
        if config.vectors_dir is not None and config.batch_size == 1
        else None
    )
    if vectors is None:
        vectors = embed_texts(encoder, texts, config.batch_size, "embed (int8 onnx)")
    embed_seconds = time.perf_counter() - t0

    ids = np.array(catalogue.ids, dtype=np.int64)
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(len(ids), size=min(config.eval_queries, len(ids)), replace=False)
    indexes: dict[str, SearchIndex] = {}
    reports: dict[str, SpaceReport] = {}
    for space in progress(list(vectors), desc="indexes", unit="space"):
        kind = SPACE_KINDS.get(space, HNSW_KIND)
        queries = vectors[space][sample]
        t0 = time.perf_counter()
        index: SearchIndex
        if kind == FLAT_KIND:
            index = FlatIndex.build(ids, vectors[space])
            build_seconds = time.perf_counter() - t0
            # Exact search, so recall is lost only to int8 quantisation: measured against float truth.
            truth = brute_force_top_k(vectors[space], queries, config.k)
            ef, recall, by_ef = 0, recall_at_k(index, ids, truth, queries), dict[int, float]()
        else:
            params = {"M": config.M, "ef_construction": config.ef_construction, "threads": config.threads}
            hnsw = VectorIndex.build(ids, vectors[space], **params)
            build_seconds = time.perf_counter() - t0
            ef, recall, by_ef = choose_ef(hnsw, ids, vectors[space], queries, config.k, config.target_recall)
            index = hnsw
        if recall < config.target_recall:
            raise RuntimeError(f"{space}: {kind} recall@{config.k} {recall:.4f} < {config.target_recall}")
        p50, p95 = query_latency_ms(index, queries[:300], config.k)
        indexes[space] = index
        reports[space] = SpaceReport(
            dim=index.dim,
            ef=ef,
            recall_at_10=round(recall, 4),
            build_seconds=round(build_seconds, 2),
            query_p50_ms=round(p50, 3),
            query_p95_ms=round(p95, 3),
            recall_by_ef={e: round(r, 4) for e, r in by_ef.items()},
            kind=kind,
        )
    recalls = {space: r.recall_at_10 for space, r in reports.items()}
    story = build_story_index(catalogue, encoder, config)
    if story is not None:
        indexes[STORY], recalls[STORY] = story[0], story[1].recall_at_10
    write_bundle(
        config.out_dir,
        catalogue=catalogue,
        neighbours=neighbours,
        model_dir=config.model_dir,
        indexes=indexes,
        recall_at_10=recalls,
        release_dates=release_dates,
    )
    return IndexStageResult(
        out_dir=config.out_dir,
        embed_seconds=round(embed_seconds, 2),
        spaces=reports,
        sizes=bundle_sizes(config.out_dir),
        release_dates=release_note if release_dates is not None else f"none: {release_note}",
        story=None if story is None else story[1],
    )


def config_from_args(args: argparse.Namespace, paths: BuildPaths) -> IndexStageConfig:
    """The index-stage configuration the CLI arguments describe."""
    return IndexStageConfig(
        catalogue=Path(args.catalogue) if args.catalogue else paths.catalogue,
        neighbours=Path(args.neighbours) if args.neighbours else paths.neighbours,
        # The export stage's runtime folder (int8, x86 avx2): `anime_pipeline.export.runtime_model_dir`.
        model_dir=Path(args.model_dir) if args.model_dir else paths.models / "runtime",
        out_dir=Path(args.out_dir) if args.out_dir else paths.artifacts_dir,
        ingest_report=Path(args.ingest_report) if args.ingest_report else paths.ingest_report,
        vectors_dir=paths.models / "vectors",
        M=args.M,
        ef_construction=args.ef_construction,
        target_recall=args.target_recall,
        threads=args.threads,
    )


def default_config(paths: BuildPaths) -> IndexStageConfig:
    """`anime-build index` without arguments: the earlier stages' outputs into the artifacts layer."""
    return IndexStageConfig(
        catalogue=paths.catalogue,
        neighbours=paths.neighbours,
        # The export stage's runtime folder (int8, x86 avx2): `anime_pipeline.export.runtime_model_dir`.
        model_dir=paths.models / "runtime",
        out_dir=paths.artifacts_dir,
        ingest_report=paths.ingest_report,
        vectors_dir=paths.models / "vectors",
    )


def run_and_report(paths: BuildPaths, config: IndexStageConfig) -> IndexStageResult:
    """Build the bundle, write `.work/index_report.json` and print it."""
    result = build_index_bundle(config)
    report = json.dumps(asdict(result), indent=2, default=str)
    paths.work.mkdir(parents=True, exist_ok=True)
    (paths.work / "index_report.json").write_text(report + "\n")
    sys.stdout.write(report + "\n")
    return result


def run_default(paths: BuildPaths) -> IndexStageResult:
    """The index stage with its defaults (what `anime-build all` runs)."""
    return run_and_report(paths, default_config(paths))


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build index`."""
    paths = BuildPaths.from_env()
    run_and_report(paths, config_from_args(args, paths))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build index`."""
    p = subparsers.add_parser(
        "index",
        help="embed the catalogue (int8 ONNX), build the V4 hnswlib and V3 flat indexes, write the bundle",
        description="Embeds every anime with the int8 ONNX model (OnnxEncoder, as queries are), builds the "
        "v4 hnswlib 'ip' index (the smallest ef with recall@10 >= the target against brute force) and the v3 "
        "flat int8 index (exact search, gated on the same recall against float vectors), and, when "
        "anime have synopses, the flat int8 story index of their synopses (v3 vectors), and writes "
        "the bundle (catalogue, V2 neighbour lists, model, indexes, "
        "the ingest's bangumi-data release dates, manifest with sha256 per file) into the artifacts "
        "layer. Report: .work/index_report.json.",
    )
    p.add_argument("--catalogue", help="catalogue .jsonl.gz (default: the ingest stage's)")
    p.add_argument("--neighbours", help="V2 neighbour lists .npz (default: the teacher stage's)")
    p.add_argument(
        "--ingest-report",
        help="the catalogue's ingest report: its bangumi-data dates ship as release_dates.json "
        "(default: the ingest stage's; used only when it describes --catalogue)",
    )
    p.add_argument("--model-dir", help="runtime model folder (default: .work/models/runtime)")
    p.add_argument("--out-dir", help="bundle folder (default: layers/artifacts/anime-artifacts)")
    p.add_argument("--M", type=int, default=16, help="hnswlib M (default %(default)s)")
    p.add_argument(
        "--ef-construction", type=int, default=200, help="hnswlib ef_construction (default %(default)s)"
    )
    p.add_argument("--target-recall", type=float, default=0.99, help="recall@10 gate (default %(default)s)")
    p.add_argument(
        "--threads", type=int, default=2, help="threads for onnxruntime/hnswlib (default %(default)s)"
    )
    p.set_defaults(func=run)
