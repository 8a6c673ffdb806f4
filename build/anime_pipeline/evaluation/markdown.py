"""The evaluation report as a Markdown page."""

from __future__ import annotations

import json
import math
from typing import Any

from anime_pipeline.evaluation import search_eval


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.1f} %"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a readable Markdown page (one table per section)."""
    lines = [
        "# Evaluation report",
        "",
        f"Catalogue: {report['catalogue']['size']} anime. k = {report['k']}.",
        "",
    ]
    for name, label in report.get("labels", {}).items():
        lines.append(f"- `{name}`: {label}")
    lines += [
        "",
        "| method | test triplet acc. | teacher recall@10 | dev recall@10 (cross-franchise, ≥2 votes) "
        "| franchise siblings@10 |",
        "|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        dev = m.get("dev", {})
        lines.append(
            f"| {name} | {_pct(m.get('triplet_accuracy'))} | {_pct(m.get('teacher_recall_at_10'))} "
            f"| {_pct(dev.get('recall_at_10'))} | {_pct(dev.get('siblings_at_10'))} |"
        )
    for name, m in report.get("references", {}).items():
        lines.append(
            f"| ({name} reference) | – | – | {_pct(m['recall_at_10'])} | {_pct(m['siblings_at_10'])} |"
        )
    lines.append("")
    if "triplets" in report:
        t = report["triplets"]
        lines += [f"Test triplets: {t['test_triplets']} over {t['test_anchors']} anchors — {t['drawn']}.", ""]
    dev = report.get("dev", {})
    if "skipped" in dev:
        lines += [f"Dev section skipped: {dev['skipped']}.", ""]
    else:
        lines += [
            f"Dev set: {dev['sources']} source anime; {dev['pairs_min_votes']} pairs with ≥ 2 votes, "
            f"of which {dev['pairs_same_franchise_excluded']} same-franchise pairs excluded; "
            f"{dev['sources_with_siblings']} sources with 1–10 franchise siblings.",
            "",
        ]
    fl = report.get("franchise_list")
    if fl:
        lines += [
            f"Franchise lists (`franchise`, beside `items`): {_pct(fl['franchise_recall'])} of the "
            f"{fl['sibling_pairs']} siblings of those sources (franchises of 2–11 entries) found. "
            "The final ranking's `items` hold no sibling by design (its siblings@10 is 0).",
            "",
        ]
    final = report.get("final", {})
    if final.get("v4_vectors") is None:
        lines += ["Final ranking not evaluated: no V4 vectors.", ""]
    else:
        lines += [
            f"Final ranking ({final.get('config_source', '')}): `{json.dumps(final.get('config'))}`; "
            f"pool: V4 top-{final.get('pool')} ∪ V3 top-{final.get('v3_pool')} ∪ V2 list "
            f"top-{final.get('v2_pool', 0)}, franchise siblings left out, one entry per franchise first.",
            "",
        ]
    for f, m in enumerate(final.get("dev_folds", [])):
        lines.append(
            f"- dev fold {f}: recall@10 {_pct(m['recall_at_10'])}, siblings@10 {_pct(m['siblings_at_10'])}"
        )
    if "tuning" in report:
        tun = report["tuning"]
        lines += ["", f"Tuning: {tun['configs_tried']} configs, grid `{json.dumps(tun['grid'])}`.", ""]
        for fr in tun["folds"]:
            ho = fr["held_out"]
            lines.append(
                f"- tuned without fold {fr['held_out_fold']}: `{json.dumps(fr['chosen'])}` → on that fold "
                f"recall@10 {_pct(ho['recall_at_10'])}, siblings@10 {_pct(ho['siblings_at_10'])}"
            )
    mod = report.get("model", {})
    if "texts_per_s" in mod:
        lines += [
            "",
            f"Model `{mod['model_dir']}`: {mod['texts_per_s']:.0f} texts/s ({mod['threads']} threads).",
            "",
        ]
        lines += [f"- {name}: {size / 1e6:.1f} MB" for name, size in mod["file_bytes"].items()]
    if "onnx_variants_bytes" in mod:
        lines += ["", "ONNX variants:", ""]
        lines += [f"- {name}: {size / 1e6:.1f} MB" for name, size in mod["onnx_variants_bytes"].items()]
    lines += _franchise_lines(report)
    lines += search_eval.markdown_lines(report.get("search"))
    lines += _quality_lines(report.get("quality"))
    return "\n".join(lines) + "\n"


def _franchise_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    titles = report.get("franchise_list_title_groups")
    if titles:
        lines += [
            "",
            f"Franchise lists judged against title-rule groups (relation links ignored): "
            f"{_pct(titles['franchise_recall'])} of {titles['sibling_pairs']} siblings found; "
            f"{_pct(titles['listed_outside_title_groups'])} of listed entries are outside those groups.",
        ]
    groups = report.get("franchise_groups")
    if groups and groups.get("anime"):
        largest = groups["largest"]
        lines += [
            "",
            f"Franchise groups over {groups['anime']} anime: siblings p50 {groups['siblings_p50']:.0f}, "
            f"p90 {groups['siblings_p90']:.0f}, p99 {groups['siblings_p99']:.0f}, "
            f"max {groups['siblings_max']} ({largest['title']}, id {largest['id']}); "
            f"{groups['groups_over_50']} anime in groups of more than 50.",
        ]
    tfidf = report.get("baselines", {}).get("tfidf")
    if tfidf:
        lines += [
            "",
            f"Plain TF-IDF baseline (tags x0.5 + synopsis words of {tfidf['synopses']} anime, + "
            f"{tfidf['prior_weight']} x popularity, chosen on dev): dev cross-franchise recall@10 "
            f"{_pct(tfidf['dev']['recall_at_10'])}.",
        ]
    return lines


def _number(value: Any, percent: bool = True) -> str:
    if value is None:
        return "–"
    if percent:
        return _pct(value)
    return f"{float(value):.3f}"


def _quality_lines(quality: dict[str, Any] | None) -> list[str]:
    """The flat quality keys: served path beside the plain baselines."""
    if not quality:
        return []
    rows = [
        ("own queries hit@10, tune", "search_hit_at_10_tune", "baseline_bm25_hit_at_10_tune", True),
        ("own queries hit@10, holdout", "search_hit_at_10_holdout", "baseline_bm25_hit_at_10_holdout", True),
        ("own queries MRR, tune", "search_mrr_tune", "baseline_bm25_mrr_tune", False),
        ("own queries MRR, holdout", "search_mrr_holdout", "baseline_bm25_mrr_holdout", False),
        ("dev cross-franchise recall@10", "dev_recall_at_10", "baseline_tfidf_dev_recall_at_10", True),
    ]
    lines = [
        "",
        "## Quality: served vs plain baselines",
        "",
        "| metric | served | plain baseline |",
        "|---|---|---|",
    ]
    for label, served, base, percent in rows:
        lines.append(
            f"| {label} | {_number(quality.get(served), percent)} | {_number(quality.get(base), percent)} |"
        )
    lines += [
        "",
        f"Baselines: BM25 + popularity (weight {quality.get('baseline_bm25_prior_weight')}, "
        f"tune half), TF-IDF + popularity (weight {quality.get('baseline_tfidf_prior_weight')}, "
        "dev). "
        f"Franchise recall {_number(quality.get('franchise_recall'))}, against title-rule groups "
        f"{_number(quality.get('franchise_recall_title_groups'))}.",
    ]
    return lines
