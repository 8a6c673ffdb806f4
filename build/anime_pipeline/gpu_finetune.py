"""Optional, measured only: a FULL fine-tune of the base encoder on a GPU, to compare with V4.

The shipped V4 is the CPU method (a projection head over the frozen encoder, `train.py`). This
module answers "how much would a full fine-tune on a GPU add?" with the same triplets and the
same held-out test anchors:

    anime-build gpu-finetune prepare --out .gpu        # here: texts, triplets, fp16 model (~55 MB)
    python -m anime_pipeline.gpu_finetune run .gpu $OUT  # on the GPU machine (torch +
                                                        # sentence-transformers there)

`run` imports nothing from this project beyond this file and the numpy-only top-k helper
(`anime_recommender.topk`), so it works from a bare checkout with PYTHONPATH=build:layers/shared/python.
It writes `gpu_finetune.json`: test/validation triplet accuracy and teacher
recall@10 of the base encoder and of the fine-tuned one, and the training time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.paths import BuildPaths


def prepare(out_dir: Path, model_dir: Path | None = None) -> dict[str, Any]:
    """Write what the GPU run needs into `out_dir` (texts by id, triplets, V2 lists, fp16 model)."""
    import torch
    from safetensors.torch import load_file, save_file

    from anime_pipeline.models import minilm_model
    from anime_recommender.catalogue import Catalogue
    from anime_recommender.text import anime_text

    paths = BuildPaths.from_env()
    out_dir.mkdir(parents=True, exist_ok=True)
    catalogue = Catalogue.load(paths.catalogue)
    texts = {str(a.id): anime_text(a) for a in catalogue}
    (out_dir / "texts.json").write_text(json.dumps(texts, ensure_ascii=False))
    shutil.copy(paths.triplets, out_dir / "triplets.npz")
    shutil.copy(paths.neighbours, out_dir / "neighbours_v2.npz")
    source = model_dir or minilm_model().path
    target = out_dir / "model"
    shutil.copytree(source, target, dirs_exist_ok=True)
    # fp16 halves the weights so everything fits the device tool's 64 MiB transfer limit.
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(target / "model.safetensors"))
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return {"out_dir": str(out_dir), "anime": len(texts), "bytes": size}


def _triplet_accuracy(vectors: dict[int, np.ndarray], a: np.ndarray, p: np.ndarray, n: np.ndarray) -> float:
    va = np.stack([vectors[int(i)] for i in a])
    vp = np.stack([vectors[int(i)] for i in p])
    vn = np.stack([vectors[int(i)] for i in n])
    sp = (va * vp).sum(1)
    sn = (va * vn).sum(1)
    return float(((sp > sn) + 0.5 * (sp == sn)).mean())


def _teacher_recall(matrix: np.ndarray, ids: np.ndarray, anchors: np.ndarray, truth: np.ndarray) -> float:
    from anime_recommender.topk import top_k_inner_products

    row_of = {int(x): r for r, x in enumerate(ids)}
    rows = np.array([row_of[int(x)] for x in anchors])
    top, _ = top_k_inner_products(matrix[rows], matrix, 10, exclude=rows)
    hits = [
        len(set(ids[top[i]].tolist()) & set(truth[rows[i], :10].tolist())) / 10.0 for i in range(len(rows))
    ]
    return float(np.mean(hits))


def run_on_gpu(in_dir: Path, out_dir: Path, epochs: int = 1, batch_size: int = 256) -> dict[str, Any]:
    """Fine-tune every layer with in-batch negatives + the hard negative; evaluate before/after."""
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts = {int(k): v for k, v in json.loads((in_dir / "texts.json").read_text()).items()}
    trip = np.load(in_dir / "triplets.npz")
    lists = np.load(in_dir / "neighbours_v2.npz")
    ids = np.array(sorted(texts))
    model = SentenceTransformer(str(in_dir / "model"), device=device)
    model = model.float()

    def embed_all() -> tuple[dict[int, np.ndarray], np.ndarray]:
        model.eval()
        matrix = model.encode(
            [texts[int(i)] for i in ids], batch_size=512, normalize_embeddings=True, convert_to_numpy=True
        )
        return {int(i): matrix[r] for r, i in enumerate(ids)}, matrix

    teacher_ids = lists["ids"]
    order = np.argsort(teacher_ids)
    truth = lists["neighbour_ids"][order]
    split = trip["split"]

    def evaluate(tag: str) -> dict[str, float]:
        vectors, matrix = embed_all()
        out: dict[str, float] = {}
        for name, code in (("validation", 1), ("test", 2)):
            mask = split == code
            out[f"{tag}_{name}_triplet_accuracy"] = _triplet_accuracy(
                vectors, trip["anchor"][mask], trip["positive"][mask], trip["negative"][mask]
            )
        test_anchors = np.unique(trip["anchor"][split == 2])
        out[f"{tag}_test_teacher_recall@10"] = _teacher_recall(matrix, ids, test_anchors, truth)
        return out

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    results.update(evaluate("base"))
    train = split == 0
    anchors, positives, negatives = trip["anchor"][train], trip["positive"][train], trip["negative"][train]
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    steps = 0
    for _epoch in range(epochs):
        model.train()
        perm = rng.permutation(len(anchors))
        for start in range(0, len(perm) - batch_size + 1, batch_size):
            batch = perm[start : start + batch_size]
            groups = [[texts[int(i)] for i in col[batch]] for col in (anchors, positives, negatives)]
            embeddings = []
            for group in groups:
                features = model.tokenize(group)
                features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                    out = model(features)["sentence_embedding"]
                embeddings.append(torch.nn.functional.normalize(out.float(), dim=-1))
            a, p, n = embeddings
            logits = a @ torch.cat([p, n]).T / 0.05
            # An anchor's own positive is the target; duplicate ids in the batch are rare enough to ignore.
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch), device=device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps += 1
    if device == "cuda":
        torch.cuda.synchronize()
    results["train_seconds"] = round(time.perf_counter() - started, 1)
    results["train_steps"] = steps
    results["epochs"] = epochs
    results["batch_size"] = batch_size
    results.update(evaluate("finetuned"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_finetune.json").write_text(json.dumps(results, indent=2))
    return results


def run(args: argparse.Namespace) -> int:
    """CLI entry for `anime-build gpu-finetune prepare`."""
    summary = prepare(Path(args.out))
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `gpu-finetune` subcommand (the prepare step; the run step is `python -m` on the GPU)."""
    parser = subparsers.add_parser(
        "gpu-finetune",
        help="optional: prepare a full fine-tune of the encoder on a GPU (comparison only)",
        description="Writes texts, triplets, V2 lists and an fp16 copy of the base model into --out; "
        "then run `PYTHONPATH=build:layers/shared/python python -m anime_pipeline.gpu_finetune run DIR OUT` "
        "on a GPU machine.",
    )
    parser.add_argument("mode", choices=["prepare"])
    parser.add_argument("--out", default=".gpu", help="folder to write (default .gpu)")
    parser.set_defaults(func=run)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        result = run_on_gpu(
            Path(sys.argv[2]), Path(sys.argv[3]), epochs=int(sys.argv[4]) if len(sys.argv) > 4 else 1
        )
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stderr.write("usage: python -m anime_pipeline.gpu_finetune run IN_DIR OUT_DIR [EPOCHS]\n")
        sys.exit(2)
