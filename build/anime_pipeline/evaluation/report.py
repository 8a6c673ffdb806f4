"""`anime-build evaluate`: the evaluation report (and the tuning of the final ranking).

Writes `.work/eval/report.json` and `report.md` with, per method (V1 jaccard/cosine/tfidf,
V2 teacher, V3, V4 fp32, V4 int8, and the FINAL ranking):

* **test triplet accuracy** — share of held-out test triplets (split code 2 in the teacher's
  triplets file: the split is by anchor anime, so test anchors never occur as anchors in
  training; positives/negatives are drawn by the teacher from the anchor's V2 list) where
  sim(anchor, positive) > sim(anchor, negative); ties count ½ (V1's tag scores tie often);
* **teacher recall@10** — |top-10 ∩ V2 top-10| / |V2 top-10|, mean over unique test anchors;
* **dev recall@10** — on the development recommendations (if the CSV exists): over source
  anime, targets with ≥ 2 votes that are *not* the same franchise (`same_franchise`); hits of
  those targets in the source's top-10 divided by their number (micro average over pairs);
* **franchise siblings@10** — for each dev source anime with 1–10 franchise siblings
  (`FranchiseIndex.siblings`), the share of its siblings in its top-10 (micro average); 0 for
  the final ranking by design, whose `items` never hold a sibling;
* **franchise recall** — for the same sources (franchises of 2–11 entries), the share of their
  siblings found in the `franchise` list the API returns beside `items` (`franchise_entries`);
  `franchise_list_title_groups` judges the same lists against groups by the title rules alone (an
  index over the records with `related` emptied), so relation links are not judged by themselves;
  `franchise_groups` is the distribution of sibling counts over the whole catalogue;
* **baselines** — plain TF-IDF (tags 0.5 + synopsis words) + popularity on the dev set, and plain BM25
  + popularity in the search section (`text_baselines`), beside the served path;
* **quality** — the headline keys of all of this, flat (`quality.QUALITY_KEYS`; the bench's
  `configurations` entries carry the same keys).

Vectors come as `.npy` files in catalogue row order (or `.npz` with `ids` + a key of the
method's name, realigned by id): the embeddings stage writes them; `--vectors NAME=PATH` overrides.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.evaluation import search_eval
from anime_pipeline.evaluation.devset import (
    DevSet,
    K,
    build_dev_set,
    dev_metrics,
    read_dev_pairs,
    teacher_agreement,
    triplet_accuracy_ties,
)
from anime_pipeline.evaluation.embedding_eval import TripletSet
from anime_pipeline.evaluation.final_ranking import (
    STORY_TUNE_GRID,
    TUNE_GRID,
    CandidatePools,
    PoolDepths,
    RowSiblings,
    build_pools,
    rank_pools,
    story_vectors,
    tune_ranking,
)
from anime_pipeline.evaluation.franchise import (
    franchise_recall,
    franchise_recall_title_groups,
    group_sizes,
    title_rule_index,
)
from anime_pipeline.evaluation.markdown import render_markdown
from anime_pipeline.evaluation.methods import (
    PairScore,
    TopK,
    load_vectors,
    popularity_method,
    v1_methods,
    v2_list_rows,
    v2_method,
    vector_method,
)
from anime_pipeline.evaluation.quality import quality_summary
from anime_pipeline.evaluation.text_baselines import tfidf_dev_baseline
from anime_pipeline.progress import progress
from anime_recommender.catalogue import Catalogue
from anime_recommender.ranking import FranchiseIndex, RankingConfig, ranking_for
from anime_recommender.similarity import SIMILAR_V2_POOL, SIMILAR_V3_POOL, SIMILAR_V4_POOL


@dataclass
class EvaluateInputs:
    """Everything the report reads; optional inputs that are None or missing skip their section."""

    catalogue: Path
    out_dir: Path
    vectors: dict[str, Path] = field(default_factory=dict)
    neighbours: Path | None = None
    triplets: Path | None = None
    dev_csv: Path | None = None
    model_dir: Path | None = None
    onnx_dir: Path | None = None
    final_v4: str = "v4_int8"
    final_v3: str = "v3"
    #: None: the ranking the catalogue is served with (`ranking.ranking_for`).
    ranking: RankingConfig | None = None
    tune: bool = False
    pool: int = SIMILAR_V4_POOL
    v3_pool: int = SIMILAR_V3_POOL
    v2_pool: int = SIMILAR_V2_POOL
    seed: int = 13
    labels: dict[str, str] = field(default_factory=dict)
    #: The serving bundle whose free-text search is evaluated (`search_eval`); None skips it.
    bundle: Path | None = None


@dataclass
class EvaluateResult:
    """The report as a dict plus where it was written."""

    report: dict[str, Any]
    json_path: Path
    md_path: Path


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _model_stats(model_dir: Path, catalogue: Catalogue, n_texts: int = 512) -> dict[str, Any]:
    """File sizes of the model directory and int8 embedding throughput on this machine (2 threads)."""
    from anime_recommender.encoder import OnnxEncoder
    from anime_recommender.text import anime_text

    sizes = {p.name: p.stat().st_size for p in sorted(model_dir.glob("*")) if p.is_file()}
    encoder = OnnxEncoder.load(model_dir, threads=2)
    texts = [anime_text(a) for a in list(catalogue)[:n_texts]]
    encoder.encode(texts[:32])  # warm-up: session init and first-call allocations
    started = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - started
    return {
        "model_dir": str(model_dir),
        "file_bytes": sizes,
        "texts_per_s": len(texts) / seconds,
        "threads": 2,
    }


def _v2_pool(inputs: EvaluateInputs, catalogue: Catalogue) -> TopK | None:
    """The V2 lists the API's by-id pool includes (None without a neighbours file)."""
    if inputs.neighbours is None or not inputs.neighbours.is_file() or inputs.v2_pool <= 0:
        return None
    return v2_list_rows(inputs.neighbours, catalogue, inputs.v2_pool)


@dataclass
class _Methods:
    """Every compared method's pair scorer and top-k, and the vectors loaded for them."""

    pair: dict[str, PairScore] = field(default_factory=dict)
    topk: dict[str, TopK] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def _collect_methods(inputs: EvaluateInputs, catalogue: Catalogue) -> _Methods:
    """The V1 baselines, V2 when its lists exist, and one method per vector file that exists."""
    methods = _Methods()
    for name, (pair_fn, topk_fn) in v1_methods(catalogue).items():
        methods.pair[name], methods.topk[name] = pair_fn, topk_fn
    if inputs.neighbours is not None and inputs.neighbours.is_file():
        methods.pair["v2"], methods.topk["v2"] = v2_method(inputs.neighbours, catalogue)
    for name, path in inputs.vectors.items():
        if path.is_file():
            methods.vectors[name] = load_vectors(path, name, catalogue)
            methods.pair[name], methods.topk[name] = vector_method(methods.vectors[name])
    return methods


@dataclass(frozen=True)
class _FinalRanking:
    """The API's ranking on the evaluated vectors: candidate pools as the API builds them, then the rerank."""

    catalogue: Catalogue
    siblings: RowSiblings
    v4: np.ndarray
    v3: np.ndarray
    inputs: EvaluateInputs
    v2_top: TopK | None
    story: np.ndarray | None = None  # story-index vectors in row order (zero rows: no synopsis)

    def pools(self, rows: np.ndarray) -> CandidatePools:
        """The candidate pools of these query rows."""
        return build_pools(
            self.catalogue,
            self.siblings,
            self.v4,
            self.v3,
            rows,
            PoolDepths(self.inputs.pool, self.inputs.v3_pool),
            self.v2_top,
            self.story,
        )

    def topk(self, rows: np.ndarray, config: RankingConfig) -> np.ndarray:
        """The final top-k rows of these query rows under `config`."""
        return rank_pools(self.pools(rows), config)


def _ranking(inputs: EvaluateInputs) -> RankingConfig:
    assert inputs.ranking is not None  # `evaluate` resolves None to the catalogue's own ranking
    return inputs.ranking


def _choose_ranking(
    report: dict[str, Any], inputs: EvaluateInputs, pools: CandidatePools, dev: DevSet
) -> RankingConfig:
    """The ranking config to report: tuned on dev with `--tune` (and saved), else the given one."""
    if not inputs.tune:
        report["final"]["config_source"] = "RankingConfig defaults / --ranking-json"
        return _ranking(inputs)
    grid = {**TUNE_GRID, **STORY_TUNE_GRID} if pools.story is not None else TUNE_GRID
    tuning = tune_ranking(pools, dev, _ranking(inputs), grid=grid, seed=inputs.seed)
    report["tuning"] = tuning
    chosen = RankingConfig.model_validate(tuning["best"])
    report["final"]["config"] = chosen.model_dump()
    report["final"]["config_source"] = "tuned in this run (--tune)"
    # Reusable as `--ranking-json`, and what to copy into RankingConfig's defaults.
    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    (inputs.out_dir / "ranking_tuned.json").write_text(chosen.model_dump_json(indent=2) + "\n")
    return chosen


def _dev_section(
    report: dict[str, Any],
    inputs: EvaluateInputs,
    catalogue: Catalogue,
    franchise: FranchiseIndex,
    methods: _Methods,
    final: _FinalRanking | None,
) -> RankingConfig:
    """Development recommendations: recall of every method and of the final ranking; returns its config."""
    dev_csv = inputs.dev_csv
    if dev_csv is None or not dev_csv.is_file():
        report["dev"] = {"skipped": f"no dev recommendations at {dev_csv}"}
        return _ranking(inputs)
    dev = build_dev_set(read_dev_pairs(dev_csv), catalogue, franchise)
    report["dev"] = {
        "path": str(dev_csv),
        "sources": int(len(dev.sources)),
        "pairs_min_votes": dev.pairs_total,
        "pairs_same_franchise_excluded": dev.pairs_same_franchise,
        "sources_with_targets": len(dev.targets),
        "sources_with_siblings": len(dev.siblings),
    }
    rows = dev.sources
    report.setdefault("references", {})["popularity"] = dev_metrics(
        popularity_method(catalogue)(rows), rows, dev
    )
    for name in progress(list(methods.topk), desc="dev recall", unit="method"):
        report["methods"][name]["dev"] = dev_metrics(methods.topk[name](rows), rows, dev)
    report["franchise_list"] = franchise_recall(catalogue, franchise, dev)
    report["franchise_list_title_groups"] = franchise_recall_title_groups(
        catalogue, franchise, title_rule_index(catalogue), rows
    )
    siblings = final.siblings if final is not None else RowSiblings(catalogue, franchise)
    report.setdefault("baselines", {})["tfidf"] = tfidf_dev_baseline(catalogue, siblings, dev)
    if final is None:
        return _ranking(inputs)
    pools = final.pools(rows)
    chosen = _choose_ranking(report, inputs, pools, dev)
    top = rank_pools(pools, chosen)
    report["methods"]["final"]["dev"] = dev_metrics(top, rows, dev)
    # The same 2-fold split of source anime as the tuning uses.
    fold_of = np.random.default_rng(inputs.seed).permutation(len(rows)) % 2
    report["final"]["dev_folds"] = [dev_metrics(top[fold_of == f], rows[fold_of == f], dev) for f in range(2)]
    return chosen


def _triplet_section(
    report: dict[str, Any],
    inputs: EvaluateInputs,
    catalogue: Catalogue,
    methods: _Methods,
    final: _FinalRanking | None,
    chosen: RankingConfig,
) -> None:
    """Held-out triplet accuracy of every method, and its agreement with the teacher's top-10."""
    if inputs.triplets is None or not inputs.triplets.is_file():
        return
    trip = TripletSet.load(inputs.triplets)
    a, p, n = trip.rows(catalogue, "test")
    anchors = np.unique(a)
    report["triplets"] = {
        "test_triplets": int(len(a)),
        "test_anchors": int(len(anchors)),
        "drawn": "split code 2 of the teacher's triplets file: anchors assigned to test by anchor id, "
        "so no test anchor is an anchor in training; positive from the anchor's V2 top list, "
        "negative with a lower V2 score (see the triplets stage)",
    }
    teacher_top = methods.topk["v2"](anchors) if "v2" in methods.topk else None
    for name in progress(list(methods.pair), desc="triplets/teacher", unit="method"):
        pair_score = methods.pair[name]
        report["methods"][name]["triplet_accuracy"] = triplet_accuracy_ties(
            pair_score(a, p), pair_score(a, n)
        )
        if teacher_top is not None:
            report["methods"][name]["teacher_recall_at_10"] = teacher_agreement(
                methods.topk[name](anchors), teacher_top
            )
    if teacher_top is not None and final is not None:
        report["methods"]["final"]["teacher_recall_at_10"] = teacher_agreement(
            final.topk(anchors, chosen), teacher_top
        )


def _model_section(report: dict[str, Any], inputs: EvaluateInputs, catalogue: Catalogue) -> None:
    """Runtime model size and throughput, and the ONNX variants' sizes, when they exist."""
    if inputs.model_dir is not None and (inputs.model_dir / "model.onnx").is_file():
        report["model"] = _model_stats(inputs.model_dir, catalogue)
    if inputs.onnx_dir is not None and inputs.onnx_dir.is_dir():
        report.setdefault("model", {})["onnx_variants_bytes"] = {
            p.name: p.stat().st_size for p in sorted(inputs.onnx_dir.glob("*.onnx"))
        }


def evaluate(inputs: EvaluateInputs) -> EvaluateResult:
    """Compute every section whose inputs exist and write report.json / report.md."""
    catalogue = Catalogue.load(inputs.catalogue)
    if inputs.ranking is None:
        inputs = replace(inputs, ranking=ranking_for(catalogue))
    franchise = FranchiseIndex(catalogue)
    report: dict[str, Any] = {"catalogue": {"path": str(inputs.catalogue), "size": len(catalogue)}, "k": K}
    report["labels"] = dict(inputs.labels)
    methods = _collect_methods(inputs, catalogue)
    report["methods"] = {name: {} for name in [*methods.topk, "final"]}

    final_v4 = methods.vectors.get(inputs.final_v4)
    final_v3 = methods.vectors.get(inputs.final_v3, final_v4)
    report["final"] = {
        "v4_vectors": inputs.final_v4 if final_v4 is not None else None,
        "v3_vectors": inputs.final_v3 if inputs.final_v3 in methods.vectors else None,
        "pool": inputs.pool,
        "v3_pool": inputs.v3_pool,
        "config": inputs.ranking.model_dump() if inputs.ranking is not None else None,
    }
    if final_v4 is None:
        del report["methods"]["final"]
    v2_top = _v2_pool(inputs, catalogue)
    report["final"]["v2_pool"] = inputs.v2_pool if v2_top is not None else 0
    final = (
        None
        if final_v4 is None or final_v3 is None
        else _FinalRanking(
            catalogue,
            RowSiblings(catalogue, franchise),
            final_v4,
            final_v3,
            inputs,
            v2_top,
            story_vectors(inputs.bundle, catalogue),
        )
    )
    report["final"]["story_vectors"] = final is not None and final.story is not None

    chosen = _dev_section(report, inputs, catalogue, franchise, methods, final)
    _triplet_section(report, inputs, catalogue, methods, final, chosen)
    _model_section(report, inputs, catalogue)
    report["search"] = search_eval.report_section(inputs.bundle, catalogue=catalogue)
    report["franchise_groups"] = group_sizes(catalogue, franchise)
    report["quality"] = quality_summary(report)

    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = inputs.out_dir / "report.json", inputs.out_dir / "report.md"
    json_path.write_text(json.dumps(_clean(report), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return EvaluateResult(report=report, json_path=json_path, md_path=md_path)


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null so other tools can read the report.
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
