"""Stage `train`: V4 = frozen base encoder + a trained projection head.

The base encoder (all-MiniLM-L6-v2 by default) embeds the catalogue once (cached on
disk); a small residual MLP head is then trained on those cached vectors with an
in-batch-negative (InfoNCE) loss plus the teacher's hard negative, on the TRAIN split
of the V2 triplets. The epoch with the best validation triplet accuracy is kept; test
accuracy is reported for V3 (frozen) and V4. Seconds to minutes of CPU, not hours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anime_pipeline.evaluation.embedding_eval import TripletSet, teacher_recall, triplet_accuracy
from anime_pipeline.models import MINILM, BaseModel, resolve_base_model
from anime_pipeline.paths import BuildPaths
from anime_pipeline.progress import progress
from anime_recommender.catalogue import Catalogue
from anime_recommender.text import TEXT_VERSION, anime_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

HEAD_FILE = "v4_head.pt"
LOG_FILE = "train_log.json"


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the V4 head and its training (defaults measured on the 17.5k catalogue)."""

    base_model: str = MINILM
    max_length: int = 128
    out_dim: int = 256
    hidden_dim: int = 512
    epochs: int = 3
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    triplet_weight: float = 1.0
    triplet_margin: float = 0.1
    seed: int = 0
    threads: int = 2
    # The head's matmuls are small: one thread avoids OpenMP barrier stalls when the cores are
    # shared (measured: 2 threads fell from 27 to 1 step/s under load, 1 thread holds ~15).
    train_threads: int = 1
    embed_batch_size: int = 64


@dataclass
class TrainResult:
    """What the stage wrote and how well the head does."""

    head_path: Path
    log_path: Path
    frozen_path: Path
    seconds: float
    embed_seconds: float
    best_epoch: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def embed_frozen(
    model: BaseModel, texts: Sequence[str], max_length: int, batch_size: int = 64, threads: int = 2
) -> np.ndarray:
    """Mean-pooled, L2-normalised base-encoder vectors (float32 [n, dim]) with torch.

    Tokenises with the model's own tokenizer.json, like the runtime encoder, so the cached
    V3 vectors match what the exported graph computes.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    torch.set_num_threads(threads)
    tokenizer = Tokenizer.from_file(str(model.tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    encoder = AutoModel.from_pretrained(str(model.path), local_files_only=True).eval()
    encodings = tokenizer.encode_batch(list(texts))
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    out: np.ndarray | None = None
    with torch.inference_mode():
        for start in progress(range(0, len(texts), batch_size), desc=f"embed {model.name}", unit="batch"):
            rows = order[start : start + batch_size]
            length = max(len(encodings[i].ids) for i in rows)
            ids = torch.zeros((len(rows), length), dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for j, i in enumerate(rows):
                row_ids = encodings[i].ids
                ids[j, : len(row_ids)] = torch.tensor(row_ids)
                mask[j, : len(row_ids)] = 1
            hidden = encoder(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled.numpy()
    if out is None:
        raise ValueError("no texts to embed")
    return out


def cached_frozen_embeddings(
    model: BaseModel, catalogue: Catalogue, config: TrainConfig, cache_dir: Path
) -> tuple[np.ndarray, Path, float]:
    """Frozen vectors of the catalogue, reused while model, texts and max_length are unchanged."""
    texts = [anime_text(a) for a in catalogue]
    key = hashlib.sha256()
    for part in (model.name, str(model.path), str(config.max_length), TEXT_VERSION, *texts):
        key.update(part.encode("utf-8"))
        key.update(b"\0")
    path = cache_dir / f"frozen_{model.name}_{key.hexdigest()[:16]}.npy"
    if path.is_file():
        return np.load(path), path, 0.0
    start = time.perf_counter()
    vectors = embed_frozen(model, texts, config.max_length, config.embed_batch_size, config.threads)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, path, time.perf_counter() - start


def make_head(in_dim: int, hidden_dim: int, out_dim: int) -> torch.nn.Module:
    """Residual MLP head: linear skip + GELU MLP; output is NOT normalised (the caller does it)."""
    import torch
    from torch import nn

    class ProjectionHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.skip = nn.Linear(in_dim, out_dim)
            self.fc1 = nn.Linear(in_dim, hidden_dim)
            self.fc2 = nn.Linear(hidden_dim, out_dim)
            # Start as (a projection of) V3: V4 can then only move away from V3 where the loss says so.
            with torch.no_grad():
                if out_dim == in_dim:
                    self.skip.weight.copy_(torch.eye(in_dim))
                else:
                    nn.init.orthogonal_(self.skip.weight)
                self.skip.bias.zero_()
                self.fc2.weight.zero_()
                self.fc2.bias.zero_()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.skip(x) + self.fc2(nn.functional.gelu(self.fc1(x)))

    return ProjectionHead()


def head_vectors(checkpoint: dict[str, Any], vectors: np.ndarray) -> np.ndarray:
    """Apply a saved head (from `load_head`) to V3 vectors in torch: the reference for the ONNX graph."""
    import torch

    head = make_head(checkpoint["in_dim"], checkpoint["hidden_dim"], checkpoint["out_dim"])
    head.load_state_dict({k: torch.from_numpy(v) for k, v in checkpoint["state_dict"].items()})
    return _head_vectors(head.eval(), torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))


def _head_vectors(head: torch.nn.Module, vectors: torch.Tensor) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return torch.nn.functional.normalize(head(vectors), dim=-1).numpy()


def _train_epoch(
    head: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    vectors: torch.Tensor,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    order: np.ndarray,
    config: TrainConfig,
    epoch: int,
) -> float:
    """One pass over the train triplets in `order`; returns the mean batch loss."""
    import torch

    a_tr, p_tr, n_tr = train
    head.train()
    total, batches = 0.0, 0
    for s in progress(
        range(0, len(order), config.batch_size), desc=f"epoch {epoch}", unit="batch", leave=False
    ):
        idx = order[s : s + config.batch_size]
        za = torch.nn.functional.normalize(head(vectors[a_tr[idx]]), dim=-1)
        zp = torch.nn.functional.normalize(head(vectors[p_tr[idx]]), dim=-1)
        zn = torch.nn.functional.normalize(head(vectors[n_tr[idx]]), dim=-1)
        # InfoNCE: each anchor against every positive and every hard negative in the batch.
        logits = za @ torch.cat([zp, zn]).T / config.temperature
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(idx)))
        if config.triplet_weight:
            gap = (za * zp).sum(-1) - (za * zn).sum(-1)
            loss = loss + config.triplet_weight * torch.relu(config.triplet_margin - gap).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        total += float(loss.detach())
        batches += 1
    head.eval()
    return total / max(batches, 1)


def _fit_head(
    head: torch.nn.Module,
    vectors: torch.Tensor,
    rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    config: TrainConfig,
    rng: np.random.Generator,
) -> tuple[dict[str, torch.Tensor], int, list[dict[str, float]]]:
    """Train the head (AdamW, one-cycle LR); returns the best-validation state, its epoch and the history."""
    import torch

    n_train = len(rows["train"][0])
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * ((n_train + config.batch_size - 1) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=max(steps, 1))

    def val_accuracy() -> float:
        return triplet_accuracy(_head_vectors(head, vectors), *rows["validation"])

    history: list[dict[str, float]] = []
    best_acc = val_accuracy()
    best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    best_epoch = 0
    history.append({"epoch": 0, "loss": float("nan"), "val_accuracy": best_acc})
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(n_train)
        loss = _train_epoch(head, optimiser, scheduler, vectors, rows["train"], order, config, epoch)
        acc = val_accuracy()
        history.append({"epoch": epoch, "loss": loss, "val_accuracy": acc})
        log.info("epoch %d loss %.4f val acc %.4f", epoch, loss, acc)
        if acc > best_acc:
            best_acc, best_epoch = acc, epoch
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    return best_state, best_epoch, history


def _split_metrics(
    frozen: np.ndarray,
    v4: np.ndarray,
    catalogue: Catalogue,
    rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    neighbours_path: Path | None,
) -> dict[str, float | None]:
    """V3 (frozen) and V4 triplet accuracy on validation and test, and teacher recall@10 on test."""
    metrics: dict[str, float | None] = {}
    for split in ("validation", "test"):
        metrics[f"v3_{split}_accuracy"] = triplet_accuracy(frozen, *rows[split])
        metrics[f"v4_{split}_accuracy"] = triplet_accuracy(v4, *rows[split])
    metrics["v3_test_teacher_recall@10"] = teacher_recall(frozen, catalogue, rows["test"][0], neighbours_path)
    metrics["v4_test_teacher_recall@10"] = teacher_recall(v4, catalogue, rows["test"][0], neighbours_path)
    return metrics


def _save_head(
    path: Path, state: dict[str, torch.Tensor], in_dim: int, config: TrainConfig, base: BaseModel
) -> None:
    """The checkpoint `load_head` reads: weights, dims, config and the base model it sits on."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": state,
            "in_dim": in_dim,
            "hidden_dim": config.hidden_dim,
            "out_dim": config.out_dim,
            "config": asdict(config),
            "base_model": base.name,
            "base_model_path": str(base.path),
            "text_version": TEXT_VERSION,
        },
        path,
    )


def train_v4(
    catalogue: Catalogue,
    triplets: TripletSet,
    out_dir: Path,
    config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen dataclass, safe as a default
    cache_dir: Path | None = None,
    neighbours_path: Path | None = None,
) -> TrainResult:
    """Embed the catalogue with the frozen base model, train the head, write head + log to `out_dir`."""
    import torch

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    cache_dir = cache_dir or out_dir / "cache"
    base = resolve_base_model(config.base_model, cache_dir)
    frozen, frozen_path, embed_seconds = cached_frozen_embeddings(base, catalogue, config, cache_dir)
    torch.set_num_threads(config.train_threads)
    rows = {split: triplets.rows(catalogue, split) for split in ("train", "validation", "test")}
    if len(rows["train"][0]) == 0:
        raise ValueError("no training triplets name anime of this catalogue")

    vectors = torch.from_numpy(frozen)
    head = make_head(frozen.shape[1], config.hidden_dim, config.out_dim)
    best_state, best_epoch, history = _fit_head(head, vectors, rows, config, rng)
    head.load_state_dict(best_state)
    head.eval()
    metrics = _split_metrics(frozen, _head_vectors(head, vectors), catalogue, rows, neighbours_path)
    head_path = out_dir / HEAD_FILE
    _save_head(head_path, best_state, int(frozen.shape[1]), config, base)
    seconds = time.perf_counter() - start
    result = TrainResult(
        head_path=head_path,
        log_path=out_dir / LOG_FILE,
        frozen_path=frozen_path,
        seconds=seconds,
        embed_seconds=embed_seconds,
        best_epoch=best_epoch,
        metrics=metrics,
        history=history,
    )
    log_data = {
        "config": asdict(config),
        "base_model": base.name,
        "catalogue_size": len(catalogue),
        "triplets": {split: int(len(r[0])) for split, r in rows.items()},
        "seconds": seconds,
        "embed_seconds": embed_seconds,
        "best_epoch": best_epoch,
        "metrics": metrics,
        "history": history,
    }
    result.log_path.write_text(json.dumps(log_data, indent=2) + "\n", encoding="utf-8")
    return result


def load_head(path: Path) -> dict[str, Any]:
    """The checkpoint written by `train_v4` (state dict as numpy arrays plus dims and config)."""
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    data["state_dict"] = {k: v.numpy() for k, v in data["state_dict"].items()}
    return dict(data)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `anime-build train`."""
    parser = subparsers.add_parser(
        "train",
        help="V4: train a projection head over frozen base-encoder vectors on the V2 triplets.",
        description="Embeds the catalogue once with the frozen base encoder (cached), trains a residual "
        "MLP head with in-batch negatives + the teacher's hard negative on the train split, keeps the "
        "best validation epoch, reports V3 vs V4 triplet accuracy on validation and test. "
        "Writes .work/models/v4_head.pt and train_log.json.",
    )
    defaults = TrainConfig()
    parser.add_argument(
        "--base-model", default=defaults.base_model, help="model name or folder (default %(default)s)"
    )
    parser.add_argument(
        "--out-dim", type=int, default=defaults.out_dim, help="V4 dimension (default %(default)s)"
    )
    parser.add_argument("--hidden-dim", type=int, default=defaults.hidden_dim, help="head MLP width")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="triplets per step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--max-length", type=int, default=defaults.max_length, help="token limit per text")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training configuration the CLI arguments describe."""
    return TrainConfig(
        base_model=args.base_model,
        out_dim=args.out_dim,
        hidden_dim=args.hidden_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        threads=args.threads,
        seed=args.seed,
    )


def run_and_report(paths: BuildPaths, config: TrainConfig) -> TrainResult:
    """Train the head on the build's catalogue and triplets, then log the timing and metrics."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train_v4(
        Catalogue.load(paths.catalogue),
        TripletSet.load(paths.triplets),
        paths.models,
        config,
        cache_dir=paths.work / "cache",
        neighbours_path=paths.neighbours,
    )
    log.info(
        "train: %.1fs (embedding %.1fs), best epoch %d, %s",
        result.seconds,
        result.embed_seconds,
        result.best_epoch,
        json.dumps(result.metrics),
    )
    return result


def run_default(paths: BuildPaths) -> TrainResult:
    """`anime-build train` with its defaults (what `anime-build all` runs)."""
    return run_and_report(paths, TrainConfig())


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build train`."""
    run_and_report(BuildPaths.from_env(), config_from_args(args))
    return 0
