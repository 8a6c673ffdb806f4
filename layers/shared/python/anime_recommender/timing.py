"""One stopwatch for the step timings that bundles, deltas and their summaries report.

`timed(timings, "step")` around a block records its seconds under `timings["step"]` when the block
completes; a block that raises records nothing (a failed step has no duration to report). `timed()`
alone is a stopwatch started now: read `.seconds` whenever needed.
"""

from __future__ import annotations

import time
from types import TracebackType


class Stopwatch:
    """Seconds since it started (`time.perf_counter`); as a context manager, the block's seconds."""

    def __init__(self, into: dict[str, float] | None = None, key: str | None = None) -> None:
        if (into is None) != (key is None):
            raise ValueError("a stopwatch records into a dict under a key: give both or neither")
        self._into = into
        self._key = key
        self._started = time.perf_counter()
        self._stopped: float | None = None

    @property
    def seconds(self) -> float:
        """Seconds from the start to the end of the block (or to now while it runs)."""
        end = time.perf_counter() if self._stopped is None else self._stopped
        return end - self._started

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        self._stopped = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped = time.perf_counter()
        if exc_type is None and self._into is not None and self._key is not None:
            self._into[self._key] = self.seconds


def timed(into: dict[str, float] | None = None, key: str | None = None) -> Stopwatch:
    """A stopwatch started now; used as `with timed(timings, key):`, the block's seconds go to `timings[key]`.

    Args:
        into: where the block's seconds are recorded when it completes (None: only `.seconds`).
        key: the step's name in `into`.
    """
    return Stopwatch(into, key)
