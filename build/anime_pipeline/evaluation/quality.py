"""The headline quality keys of one configuration (a work dir and its bundle), flat and stable.

`anime-build evaluate` writes them as the report's `quality`; `anime-build bench` lists them per
configuration (`default`, `storytext`) under `configurations`. Every key is always present, None when
its section was skipped. The served rows and the plain baselines sit side by side, so every report shows
what the learned parts add.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from anime_pipeline.evaluation import search_eval
from anime_pipeline.paths import REPO_ROOT, BuildPaths

QUALITY_KEYS: dict[str, str] = {
    "search_hit_at_10_tune": "served /search (hybrid + understanding) hit@10 on the own query set, tune half",
    "search_hit_at_10_holdout": "the same, holdout half",
    "search_mrr_tune": "served /search MRR@10, tune half",
    "search_mrr_holdout": "served /search MRR@10, holdout half",
    "dev_recall_at_10": "final ranking's cross-franchise recall@10 on the dev recommendations",
    "franchise_recall": "share of dev sources' siblings (served groups of 2-11) in the franchise lists",
    "franchise_recall_title_groups": "the same lists judged against title-rule groups (relations ignored)",
    "franchise_siblings_p50": "median sibling count per anime (served franchise index)",
    "franchise_siblings_p99": "99th percentile sibling count per anime",
    "franchise_siblings_max": "largest sibling count",
    "franchise_groups_over_50": "anime whose franchise group (itself + siblings) has more than 50 entries",
    "baseline_bm25_hit_at_10_tune": "plain BM25 (title, English title, synonyms, tags, "
    "synopsis) + popularity, hit@10 on the tune half",
    "baseline_bm25_hit_at_10_holdout": "the same, holdout half",
    "baseline_bm25_mrr_tune": "plain BM25 + popularity MRR@10, tune half",
    "baseline_bm25_mrr_holdout": "the same, holdout half",
    "baseline_bm25_prior_weight": "its popularity weight, chosen on the tune half",
    "baseline_tfidf_dev_recall_at_10": "plain TF-IDF (tags x0.5 + synopsis words) + popularity, dev "
    "cross-franchise recall@10 (siblings left out, as the served ranking)",
    "baseline_tfidf_prior_weight": "its popularity weight, chosen on the dev set",
}


def _get(node: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def search_keys(section: dict[str, Any] | None) -> dict[str, Any]:
    """The `search_*` and `baseline_bm25_*` keys of a search section (`search_eval.report_section`)."""
    served = _get(section, "modes", "hybrid_understanding") or {}
    out: dict[str, Any] = {}
    for split in search_eval.SPLITS:
        out[f"search_hit_at_10_{split}"] = _get(served, split, "hit@10")
        out[f"search_mrr_{split}"] = _get(served, split, "mrr")
    out.update(search_eval.baseline_keys(section))
    return out


def quality_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The flat `QUALITY_KEYS` of an evaluation report."""
    groups = report.get("franchise_groups") or {}
    values: dict[str, Any] = {
        **search_keys(report.get("search")),
        "dev_recall_at_10": _get(report, "methods", "final", "dev", "recall_at_10"),
        "franchise_recall": _get(report, "franchise_list", "franchise_recall"),
        "franchise_recall_title_groups": _get(report, "franchise_list_title_groups", "franchise_recall"),
        "franchise_siblings_p50": groups.get("siblings_p50"),
        "franchise_siblings_p99": groups.get("siblings_p99"),
        "franchise_siblings_max": groups.get("siblings_max"),
        "franchise_groups_over_50": groups.get("groups_over_50"),
        "baseline_tfidf_dev_recall_at_10": _get(report, "baselines", "tfidf", "dev", "recall_at_10"),
        "baseline_tfidf_prior_weight": _get(report, "baselines", "tfidf", "prior_weight"),
    }
    return {key: values.get(key) for key in QUALITY_KEYS}


# ---------------------------------------------------------------------------------------------
# Configurations side by side (the bench's `configurations`)
# ---------------------------------------------------------------------------------------------

#: The story-text build's folders (`make build STORYTEXT=…`), unless the environment names others.
STORYTEXT_WORK_ENV = "ANIME_STORYTEXT_WORK_DIR"
STORYTEXT_LAYER_ENV = "ANIME_STORYTEXT_ARTIFACTS_LAYER_DIR"


def storytext_paths(work: Path | None = None, layer: Path | None = None) -> BuildPaths:
    """The story-text configuration's paths: arguments, else $ANIME_STORYTEXT_WORK_DIR /
    $ANIME_STORYTEXT_ARTIFACTS_LAYER_DIR, else `.work-storytext` and `layers/artifacts-storytext`."""
    work = work or Path(os.environ.get(STORYTEXT_WORK_ENV) or REPO_ROOT / ".work-storytext")
    layer = layer or Path(os.environ.get(STORYTEXT_LAYER_ENV) or REPO_ROOT / "layers" / "artifacts-storytext")
    return BuildPaths(work=work, artifacts_layer=layer)


def configuration_entry(paths: BuildPaths, search: dict[str, Any] | None = None) -> dict[str, Any]:
    """One configuration's `QUALITY_KEYS` from its evaluation report (`<work>/eval/report.json`), with
    the search keys measured now on its bundle (or taken from `search` when already measured)."""
    report_path = paths.eval / "report.json"
    where = {"work": str(paths.work), "artifacts": str(paths.artifacts_dir), "eval_report": str(report_path)}
    if not report_path.is_file():
        if not paths.work.is_dir():
            return {"status": "missing", "reason": f"no work dir at {paths.work}", **where}
        return {"status": "missing", "reason": f"no {report_path}: run anime-build evaluate", **where}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    values = quality_summary(report)
    if search is None:
        search = search_eval.report_section(paths.artifacts_dir)
    if "skipped" not in search:  # measured now: never older than the bundle or the query set
        values.update(search_keys(search))
    return {"status": "ok", **where, **values}
