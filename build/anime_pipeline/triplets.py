"""`anime-build triplets`: training triplets mined from the V2 neighbour lists.

Each anchor anime gets an equal share of the triplets. Positive: a random neighbour among the
top ranks (default 1–10). Negative: with probability `hard_fraction` a *hard* one from the middling
ranks of the same list (default 31–100), otherwise an *easy* one drawn from the whole catalogue
outside the anchor's top-K. The margin is the teacher's score(anchor, pos) − score(anchor, neg),
recomputed with the teacher in float32 (also for easy negatives, which have no list entry).
Triplets whose margin is not positive (teacher ties, ≤ 1e-6) are redrawn a few times (a hard one
that keeps tying becomes an easy one: some anchors' whole top-K ties), then dropped.
The split is by anchor anime (80/10/10 by default): a test anchor is never a training anchor.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anime_pipeline.paths import BuildPaths
from anime_recommender.catalogue import Catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.teacher import TeacherConfig, TeacherFeatures

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
_REDRAW_ROUNDS = 8
# Margins this small are float32 noise between tied teacher scores, not a preference.
_TIE = 1e-6


@dataclass(frozen=True)
class TripletConfig:
    """How many triplets, from which ranks (0-based, end-exclusive), split shares, seed."""

    n_triplets: int = 500_000
    seed: int = 13
    positive_ranks: tuple[int, int] = (0, 10)
    hard_ranks: tuple[int, int] = (30, 100)
    hard_fraction: float = 0.5
    split_shares: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __post_init__(self) -> None:
        lo, hi = self.positive_ranks
        hlo, hhi = self.hard_ranks
        if not (0 <= lo < hi <= hlo < hhi):
            raise ValueError("need 0 <= positive ranks < hard-negative ranks")
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError("hard_fraction must be in [0, 1]")
        if abs(sum(self.split_shares) - 1.0) > 1e-9 or min(self.split_shares) < 0:
            raise ValueError("split_shares must be >= 0 and sum to 1")

    def ranks_for(self, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(positive, hard-negative) rank ranges, shrunk in proportion when the lists are shorter."""
        if k >= self.hard_ranks[1]:
            return self.positive_ranks, self.hard_ranks
        if k < 3:
            raise ValueError(f"lists have {k} neighbours; mining needs at least 3")
        f = k / self.hard_ranks[1]
        pos_hi = max(1, min(round(self.positive_ranks[1] * f), k - 2))
        hard_lo = min(max(pos_hi, round(self.hard_ranks[0] * f)), k - 1)
        return (0, pos_hi), (hard_lo, k)


@dataclass(frozen=True)
class Triplets:
    """Columnar triplets: anime ids (int32), teacher margin (float32), split (uint8), hard flag."""

    anchor: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    margin: np.ndarray
    split: np.ndarray
    hard: np.ndarray
    seed: int

    def __len__(self) -> int:
        return int(self.anchor.shape[0])

    def subset(self, split: str) -> Triplets:
        """Only the triplets of one split ('train', 'validation' or 'test')."""
        keep = self.split == SPLIT_NAMES.index(split)
        return Triplets(
            self.anchor[keep],
            self.positive[keep],
            self.negative[keep],
            self.margin[keep],
            self.split[keep],
            self.hard[keep],
            self.seed,
        )

    def save(self, path: Path) -> None:
        """Write the contract's .npz (anchor, positive, negative, margin, split, seed; plus hard)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                anchor=self.anchor.astype(np.int32),
                positive=self.positive.astype(np.int32),
                negative=self.negative.astype(np.int32),
                margin=self.margin.astype(np.float32),
                split=self.split.astype(np.uint8),
                hard=self.hard.astype(np.uint8),
                seed=np.int64(self.seed),
            )


def load_triplets(path: Path) -> Triplets:
    """Read a triplets file; ValueError naming the file when a column is missing or lengths differ."""
    try:
        with np.load(path, allow_pickle=False) as data:
            t = Triplets(
                anchor=data["anchor"].astype(np.int32),
                positive=data["positive"].astype(np.int32),
                negative=data["negative"].astype(np.int32),
                margin=data["margin"].astype(np.float32),
                split=data["split"].astype(np.uint8),
                hard=data["hard"].astype(bool) if "hard" in data else np.zeros(len(data["anchor"]), bool),
                seed=int(data["seed"]),
            )
    except KeyError as exc:
        raise ValueError(f"{path}: not a triplets file (missing {exc})") from exc
    if len({len(t.anchor), len(t.positive), len(t.negative), len(t.margin), len(t.split), len(t.hard)}) != 1:
        raise ValueError(f"{path}: triplet columns have different lengths")
    return t


def anchor_splits(anchor_ids: np.ndarray, config: TripletConfig) -> np.ndarray:
    """Split code (0/1/2) of each anchor id: a seeded shuffle cut by `split_shares`."""
    rng = np.random.default_rng([config.seed, 1])
    order = rng.permutation(anchor_ids.size)
    n_train = round(config.split_shares[0] * anchor_ids.size)
    n_val = round(config.split_shares[1] * anchor_ids.size)
    split = np.full(anchor_ids.size, 2, dtype=np.uint8)
    split[order[:n_train]] = 0
    split[order[n_train : n_train + n_val]] = 1
    return split


def mine_triplets(
    catalogue: Catalogue,
    lists: NeighbourLists,
    config: TripletConfig | None = None,
    features: TeacherFeatures | None = None,
) -> Triplets:
    """Mine triplets from neighbour lists computed on this catalogue (deterministic for `config.seed`)."""
    cfg = config or TripletConfig()
    features = features or TeacherFeatures.from_catalogue(catalogue, TeacherConfig())
    cat_ids = np.asarray(catalogue.ids, dtype=np.int64)
    n = cat_ids.size

    def rows_of(ids: np.ndarray) -> np.ndarray:
        rows = np.minimum(np.searchsorted(cat_ids, ids), n - 1)
        if not np.array_equal(cat_ids[rows], ids):
            raise ValueError("neighbour lists name anime missing from the catalogue; rerun the teacher")
        return rows

    anchor_rows_all = rows_of(lists.ids)
    nb_rows = rows_of(lists.neighbour_ids.reshape(-1).astype(np.int64)).reshape(lists.neighbour_ids.shape)
    m, k = len(lists), lists.k
    positive_ranks, hard_ranks = cfg.ranks_for(k)
    if m == 0:
        raise ValueError("no neighbour lists to mine")

    rng = np.random.default_rng(cfg.seed)
    counts = np.full(m, cfg.n_triplets // m, dtype=np.int64)
    counts[rng.permutation(m)[: cfg.n_triplets % m]] += 1
    lst = np.repeat(np.arange(m), counts)  # index into the lists, one per triplet
    total = lst.size
    list_keys = np.sort((np.arange(m)[:, None] * n + nb_rows).reshape(-1))

    pos = np.empty(total, dtype=np.int64)
    neg = np.empty(total, dtype=np.int64)
    hard = np.empty(total, dtype=bool)
    margin = np.empty(total, dtype=np.float32)
    # The hard/easy draw is made once, so redrawing tied triplets cannot skew the hard share.
    hard[:] = rng.random(total) < cfg.hard_fraction
    todo = np.arange(total)
    for round_ in range(_REDRAW_ROUNDS):
        if round_ == _REDRAW_ROUNDS // 2:
            # Anchors whose whole top-K ties (same tags, no score/year) have no usable hard negative.
            hard[todo] = False
        size = todo.size
        sel = lst[todo]
        pos[todo] = nb_rows[sel, rng.integers(*positive_ranks, size=size)]
        neg[todo] = nb_rows[sel, rng.integers(*hard_ranks, size=size)]
        easy = todo[~hard[todo]]
        while easy.size:
            cand = rng.integers(0, n, size=easy.size)
            keys = lst[easy] * n + cand
            at = np.minimum(np.searchsorted(list_keys, keys), list_keys.size - 1)
            bad = (list_keys[at] == keys) | (cand == anchor_rows_all[lst[easy]])
            neg[easy[~bad]] = cand[~bad]
            easy = easy[bad]
        a_rows = anchor_rows_all[sel]
        margin[todo] = features.pair_scores(a_rows, pos[todo]) - features.pair_scores(a_rows, neg[todo])
        todo = todo[margin[todo] <= _TIE]
        if todo.size == 0:
            break
    keep = np.ones(total, dtype=bool)
    keep[todo] = False  # still tied after the redraws: no signal to learn from

    splits = anchor_splits(lists.ids, cfg)
    shuffle = rng.permutation(int(keep.sum()))
    idx = np.flatnonzero(keep)[shuffle]
    return Triplets(
        anchor=lists.ids[lst[idx]].astype(np.int32),
        positive=cat_ids[pos[idx]].astype(np.int32),
        negative=cat_ids[neg[idx]].astype(np.int32),
        margin=margin[idx],
        split=splits[lst[idx]],
        hard=hard[idx],
        seed=cfg.seed,
    )


def summarise(triplets: Triplets) -> str:
    """Counts per split, hard share and margin statistics, one line each."""
    lines = [f"{len(triplets):,} triplets (seed {triplets.seed})"]
    for code, name in enumerate(SPLIT_NAMES):
        sel = triplets.split == code
        lines.append(
            f"  {name:10s} {int(sel.sum()):>8,} triplets, {np.unique(triplets.anchor[sel]).size:,} anchors"
        )
    if len(triplets):
        m = triplets.margin
        lines.append(
            f"  hard negatives {triplets.hard.mean():.1%}; margin mean {m.mean():.3f} "
            f"(hard {m[triplets.hard].mean() if triplets.hard.any() else float('nan'):.3f}, "
            f"easy {m[~triplets.hard].mean() if (~triplets.hard).any() else float('nan'):.3f}), "
            f"min {m.min():.4f}, positive {np.mean(m > 0):.2%}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class TripletStageConfig:
    """Inputs and output of the triplets stage."""

    catalogue: Path
    neighbours: Path
    output: Path
    mining: TripletConfig = field(default_factory=TripletConfig)


def run_triplets(config: TripletStageConfig) -> tuple[Triplets, float]:
    """Load catalogue and lists, mine, save; returns the triplets and the seconds it took."""
    started = time.perf_counter()
    catalogue = Catalogue.load(config.catalogue)
    lists = NeighbourLists.load(config.neighbours)
    triplets = mine_triplets(catalogue, lists, config.mining)
    triplets.save(config.output)
    return triplets, time.perf_counter() - started


def config_from_args(args: argparse.Namespace) -> TripletStageConfig:
    """The triplets-stage configuration the CLI arguments describe."""
    mining = TripletConfig(n_triplets=args.n, seed=args.seed, hard_fraction=args.hard_fraction)
    return TripletStageConfig(args.catalogue, args.neighbours, args.output, mining)


def default_config(paths: BuildPaths) -> TripletStageConfig:
    """`anime-build triplets` without arguments."""
    return TripletStageConfig(paths.catalogue, paths.neighbours, paths.triplets)


def run_and_report(config: TripletStageConfig) -> Triplets:
    """Mine and save the triplets, then print their summary and timing."""
    triplets, seconds = run_triplets(config)
    sys.stdout.write(summarise(triplets) + "\n")
    sys.stdout.write(f"mined in {seconds:.2f} s -> {config.output}\n")
    return triplets


def run_default(paths: BuildPaths) -> Triplets:
    """The triplets stage with its defaults (what `anime-build all` runs)."""
    return run_and_report(default_config(paths))


def run(args: argparse.Namespace) -> int:
    """CLI entry point."""
    for path, stage in ((args.catalogue, "ingest"), (args.neighbours, "teacher")):
        if not path.is_file():
            sys.stderr.write(f"input not found: {path} (run `anime-build {stage}` first)\n")
            return 2
    run_and_report(config_from_args(args))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `triplets` subcommand."""
    paths = BuildPaths.from_env()
    parser = subparsers.add_parser(
        "triplets",
        help="mine (anchor, positive, negative) training triplets from the V2 neighbour lists",
        description="Positives from ranks 1-10 of each anchor's V2 list; negatives hard (ranks 31-100) or "
        "easy (random, outside the top-K); teacher margin recorded; split 80/10/10 by anchor anime; "
        "deterministic for a seed. Writes a columnar .npz.",
    )
    parser.add_argument("--catalogue", type=Path, default=paths.catalogue, help="input catalogue (.jsonl.gz)")
    parser.add_argument("--neighbours", type=Path, default=paths.neighbours, help="V2 neighbour lists (.npz)")
    parser.add_argument("--output", type=Path, default=paths.triplets, help="output triplets (.npz)")
    defaults = TripletConfig()
    parser.add_argument(
        "-n", type=int, default=defaults.n_triplets, help="number of triplets (default 500000)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 13)")
    parser.add_argument(
        "--hard-fraction",
        type=float,
        default=defaults.hard_fraction,
        help="share of hard negatives (default 0.5)",
    )
    parser.set_defaults(func=run)
