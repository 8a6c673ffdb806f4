"""Teacher benchmark: all-pairs V2 top-K on a synthetic manami-shaped catalogue.

`bench_teacher(n, seed)` is what the project benchmark calls; `python -m anime_pipeline.bench.teacher`
runs it alone (use a fresh process: peak RSS is the process's high-water mark).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from anime_pipeline.synthetic import synthetic_catalogue
from anime_pipeline.teacher_stage import peak_rss_mb
from anime_recommender.teacher import TeacherConfig, TeacherFeatures, top_k_neighbours


def bench_teacher(n: int, seed: int = 0, k: int = 100, block_size: int = 1024) -> dict[str, Any]:
    """Time the V2 top-k over a synthetic catalogue of `n` anime; pairs/s, seconds and peak RSS."""
    catalogue = synthetic_catalogue(n, seed)
    started = time.perf_counter()
    cpu_started = time.process_time()
    features = TeacherFeatures.from_catalogue(catalogue, TeacherConfig())
    lists = top_k_neighbours(features, k=k, block_size=block_size)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    pairs = len(catalogue) * (len(catalogue) - 1)
    return {
        "n_anime": len(catalogue),
        "k": lists.k,
        "tags_shared": features.n_tags,
        "tags_dense": features.n_dense_tags,
        "pairs": pairs,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "pairs_per_second": round(pairs / seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line with the benchmark result."""
    parser = argparse.ArgumentParser(description="Benchmark the V2 teacher on a synthetic catalogue.")
    parser.add_argument("-n", type=int, default=40_000, help="catalogue size (default 40000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--block-size", type=int, default=1024)
    args = parser.parse_args(argv)
    result = bench_teacher(args.n, args.seed, k=args.k, block_size=args.block_size)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
