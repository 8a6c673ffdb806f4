"""Offline evaluation of free-text search on the descriptive query set (data/search_queries.jsonl).

Four systems on one bundle, each scored by hit@10 (a target in the top 10) and MRR@10:

* ``dense`` — today's search path (`similarity.backend_from_bundle(...).search_text`);
* ``lexical`` — BM25 alone (`search.lexical`) on the raw query;
* ``hybrid`` — `search.hybrid.HybridRanker` on the raw query (no query understanding);
* ``hybrid_understanding`` — the same ranker on `search.query.QueryParser`'s parse (genre boosts,
  filters, anchors, residual text).

`--tune` grid-searches the hybrid weights on the TUNE half only and reports both halves with the
chosen weights, so the HOLDOUT figures are untouched by tuning. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anime_pipeline.paths import BuildPaths
from anime_recommender.artifacts import load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.ranking import RankingConfig
from anime_recommender.search.dense import EncoderDense
from anime_recommender.search.hybrid import HybridRanker, HybridWeights, Scored, dense_query_text
from anime_recommender.search.lexical import LexicalIndex
from anime_recommender.search.query import ParsedQuery, QueryParser
from anime_recommender.similarity import backend_from_bundle

QUERIES_FILE = Path(__file__).resolve().parent / "data" / "search_queries.jsonl"
K = 10
SPLITS = ("tune", "holdout")
MODES = ("dense", "lexical", "hybrid", "hybrid_understanding")

# Tuning grid (weights of `HybridWeights`; the pool size stays at its default).
GRID: dict[str, tuple[float, ...]] = {
    "dense": (0.25, 0.5, 1.0),
    "lexical": (0.25, 0.5, 1.0),
    "tags": (0.5, 1.0, 2.0, 3.0),
    "anchor": (1.0, 2.0),
    "popularity": (3.0, 6.0, 9.0),
    "quality": (0.5, 1.0),
}


@dataclass(frozen=True, slots=True)
class EvalQuery:
    """One descriptive query and the MAL id(s) that count as a hit."""

    query: str
    targets: tuple[int, ...]
    split: str


def load_queries(path: Path = QUERIES_FILE) -> list[EvalQuery]:
    """Read the query set (JSON lines: query, targets, split)."""
    out: list[EvalQuery] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["split"] not in SPLITS:
                raise ValueError(f"{path}: split must be one of {SPLITS}, got {row['split']!r}")
            out.append(EvalQuery(str(row["query"]), tuple(int(t) for t in row["targets"]), row["split"]))
    return out


def score(ranked: Sequence[Sequence[int]], queries: Sequence[EvalQuery]) -> dict[str, float | int]:
    """hit@10 and MRR@10 of ranked id lists against the queries' targets."""
    hits = 0
    reciprocal = 0.0
    for ids, q in zip(ranked, queries, strict=True):
        ranks = [i for i, anime_id in enumerate(ids[:K]) if anime_id in q.targets]
        if ranks:
            hits += 1
            reciprocal += 1.0 / (ranks[0] + 1)
    n = len(queries)
    return {"n": n, "hit@10": round(hits / n, 4) if n else 0.0, "mrr": round(reciprocal / n, 4) if n else 0.0}


class SearchSystems:
    """The four systems over one bundle; dense pools are cached per query so tuning is cheap."""

    def __init__(self, bundle_dir: Path, threads: int = 1) -> None:
        bundle = load_bundle(bundle_dir, threads=threads, all_tiers=True)
        if bundle.encoder is None or bundle.index is None:
            raise SystemExit(
                f"{bundle_dir}: tier {bundle.tier} has no text encoder; search cannot be evaluated"
            )
        self.catalogue: Catalogue = bundle.catalogue
        self.backend = backend_from_bundle(bundle)
        started = time.perf_counter()
        self.lexical = LexicalIndex.build(self.catalogue)
        self.lexical_build_s = time.perf_counter() - started
        self.parser = QueryParser.for_catalogue(self.catalogue)
        self.ranker = HybridRanker(self.catalogue, self.lexical)
        secondary = bundle.indexes.get("v3") if bundle.tier == "v4" else None
        self.dense = EncoderDense(
            bundle.encoder,
            bundle.index,
            space=bundle.tier,
            secondary=secondary,
            w_v3=RankingConfig().text_w_v3,
        )
        self._pools: dict[tuple[str, str], tuple[Sequence[Scored], Sequence[Scored]]] = {}

    def parse(self, text: str, understand: bool) -> ParsedQuery:
        """The parse the hybrid ranks: the full parser, or the raw text as residual only."""
        return self.parser.parse(text) if understand else ParsedQuery(text=text, residual=text)

    def pools(self, text: str, understand: bool) -> tuple[Sequence[Scored], Sequence[Scored]]:
        """(dense pool, anchor pool) of a query, computed once."""
        key = (text, "u" if understand else "r")
        if key not in self._pools:
            parsed = self.parse(text, understand)
            mask = self.ranker.filter_mask(parsed)
            allowed = self.ranker.allowed_ids(mask)
            pool = self.ranker.weights.pool
            dense_text = dense_query_text(parsed)
            dense = self.dense(dense_text, pool, allowed) if dense_text else []
            anchors = self.dense.anchors(parsed.anchor_ids, pool, allowed) if parsed.anchor_ids else []
            self._pools[key] = (dense, anchors)
        return self._pools[key]

    def ranked(
        self, mode: str, text: str, weights: HybridWeights | None = None, explain: bool = True
    ) -> list[int]:
        """Top-10 ids of one system for one query."""
        if mode == "dense":
            return [a for a, _ in self.backend.search_text(text, K)]
        if mode == "lexical":
            return [h.anime_id for h in self.lexical.search(text, K)]
        understand = mode == "hybrid_understanding"
        parsed = self.parse(text, understand)
        dense, anchors = self.pools(text, understand)
        hits = self.ranker.rank(parsed, K, dense, anchors, weights=weights, explain=explain)
        return [h.anime_id for h in hits]


def _evaluate_mode(
    systems: SearchSystems, mode: str, queries: Sequence[EvalQuery], weights: HybridWeights | None
) -> dict[str, dict[str, float | int]]:
    ranked = [systems.ranked(mode, q.query, weights) for q in queries]
    out = {"all": score(ranked, queries)}
    for split in SPLITS:
        chosen = [(r, q) for r, q in zip(ranked, queries, strict=True) if q.split == split]
        out[split] = score([r for r, _ in chosen], [q for _, q in chosen])
    return out


def tune(systems: SearchSystems, mode: str, queries: Sequence[EvalQuery]) -> tuple[HybridWeights, float]:
    """Grid-search the weights on the TUNE queries: best hit@10, then MRR; returns (weights, hit@10)."""
    tune_queries = [q for q in queries if q.split == "tune"]
    names = list(GRID)
    best: tuple[float, float] = (-1.0, -1.0)
    best_weights = systems.ranker.weights
    for values in itertools.product(*(GRID[n] for n in names)):
        weights = systems.ranker.weights.model_copy(update=dict(zip(names, values, strict=True)))
        ranked = [systems.ranked(mode, q.query, weights, explain=False) for q in tune_queries]
        result = score(ranked, tune_queries)
        key = (float(result["hit@10"]), float(result["mrr"]))
        if key > best:
            best, best_weights = key, weights
    return best_weights, best[0]


def evaluate(
    bundle_dir: Path,
    queries: Sequence[EvalQuery],
    *,
    do_tune: bool = False,
    threads: int = 1,
    misses: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """hit@10 / MRR of the four systems on all/tune/holdout queries, as a JSON-ready dict."""
    systems = SearchSystems(bundle_dir, threads=threads)
    missing = sorted({t for q in queries for t in q.targets if t not in systems.catalogue})
    if missing:
        raise SystemExit(f"query targets not in the catalogue: {missing}")
    report: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "queries": len(queries),
        "k": K,
        "lexical_build_s": round(systems.lexical_build_s, 3),
        "modes": {},
    }
    weights: dict[str, HybridWeights | None] = {"hybrid": None, "hybrid_understanding": None}
    if do_tune:
        for mode in weights:
            started = time.perf_counter()
            chosen, _ = tune(systems, mode, queries)
            weights[mode] = chosen
            if log:
                log(f"tuned {mode} in {time.perf_counter() - started:.1f}s: {chosen.model_dump()}")
        report["tuned_weights"] = {m: w.model_dump() for m, w in weights.items() if w is not None}
    else:
        report["weights"] = systems.ranker.weights.model_dump()
    for mode in MODES:
        report["modes"][mode] = _evaluate_mode(systems, mode, queries, weights.get(mode))
    if misses:
        mode = "hybrid_understanding"
        report["misses"] = [
            {
                "query": q.query,
                "split": q.split,
                "top": [systems.catalogue.by_id(a).title for a in ranked[:5]],
            }
            for q in queries
            if not set(ranked := systems.ranked(mode, q.query, weights[mode])[:K]) & set(q.targets)
        ]
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m anime_pipeline.search_eval [--artifacts DIR] [--tune]`: print the JSON report."""
    parser = argparse.ArgumentParser(prog="anime_pipeline.search_eval", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--artifacts", type=Path, help="bundle folder (default: layers/artifacts/anime-artifacts)"
    )
    parser.add_argument("--queries", type=Path, default=QUERIES_FILE, help="query set (JSON lines)")
    parser.add_argument("--tune", action="store_true", help="grid-search hybrid weights on the tune half")
    parser.add_argument("--misses", action="store_true", help="list the queries hybrid+understanding misses")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    args = parser.parse_args(argv)
    bundle_dir = args.artifacts or BuildPaths.from_env().artifacts_dir
    report = evaluate(
        bundle_dir,
        load_queries(args.queries),
        do_tune=args.tune,
        threads=args.threads,
        misses=args.misses,
        log=lambda line: print(line, file=sys.stderr),  # noqa: T201 - progress to stderr
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))  # noqa: T201 - the report is the output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
