"""`timing.timed`: a block's seconds recorded under its key when it completes, never when it raises."""

from __future__ import annotations

import time

import pytest

from anime_recommender.timing import timed


def test_a_completed_block_records_its_seconds_under_its_key() -> None:
    timings: dict[str, float] = {"earlier": 1.0}
    with timed(timings, "step") as watch:
        time.sleep(0.01)
    assert list(timings) == ["earlier", "step"]
    assert timings["step"] == watch.seconds >= 0.01
    time.sleep(0.01)
    assert watch.seconds == timings["step"]  # stopped when the block ended


def test_a_block_that_raises_records_nothing() -> None:
    timings: dict[str, float] = {}
    with pytest.raises(RuntimeError), timed(timings, "step"):
        raise RuntimeError("the step failed")
    assert timings == {}


def test_a_stopwatch_without_a_block_runs_from_its_start() -> None:
    watch = timed()
    first = watch.seconds
    time.sleep(0.01)
    assert watch.seconds >= first + 0.01


def test_a_key_without_a_dict_is_refused() -> None:
    with pytest.raises(ValueError, match="both or neither"):
        timed(None, "step")
