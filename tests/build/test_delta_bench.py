"""The delta benchmark runs end to end on the tiny bundle (its numbers mean something on the real one)."""

from __future__ import annotations

from pathlib import Path

from anime_pipeline.bench.delta import bench_delta


def test_delta_bench_times_weekly_deltas_and_the_hot_swap_of_a_separate_server(bundle_dir: Path) -> None:
    # When the benchmark runs two weekly deltas (2 changed + 2 added) against the tiny bundle
    result = bench_delta(bundle_dir, n_changed=2, n_added=2, runs=2, full_sample=5)

    # Then both deltas published the expected counts, and the server process served each new anime
    # after the flip without a restart
    assert (result["changed"], result["added"], result["runs"]) == (2, 2, 2)
    assert len(result["delta_end_to_end_samples_s"]) == 2
    assert result["hot_swap"]["new_anime_status_after_flip"] == 200
    assert all(s["status"] == 200 for s in result["hot_swap"]["samples"])
    # and the ratios are computed from both measurements of the same run
    full, delta = result["full_rebuild"]["total_s"], result["delta_end_to_end_s"]
    assert result["ratio_full_over_delta_end_to_end"] == round(full / delta, 1)
    assert {"validate", "hash", "embed", "index"} <= set(result["delta_steps_s"])
