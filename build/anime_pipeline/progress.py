"""Progress for the build's long loops: a tqdm bar on a terminal, a few plain lines in a log.

tqdm redraws its bar with carriage returns several times a second; on a terminal that is one line,
but a CI or build log keeps every redraw (thousands of updates per stage). Off a TTY the same loops
print one line at every 10 % and a final one, so a stage costs about ten lines of log.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from types import TracebackType
from typing import Protocol, TextIO, TypeVar

T = TypeVar("T")

#: Plain lines off a TTY: one per this share of the total.
LINE_STEPS = 10


class ProgressBar(Protocol):
    """What the build calls on a bar: tqdm's `update`/`close` and its context manager."""

    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> ProgressBar: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> object: ...


class LineProgress:
    """A progress bar for logs: `desc: 30% 3000/10000 it 1.2s` at each tenth, then a final line.

    A transient bar (`leave=False`, an inner loop that may run many times per stage) prints only
    its final line.
    """

    def __init__(
        self,
        *,
        total: int | None,
        desc: str,
        unit: str = "it",
        leave: bool = True,
        stream: TextIO | None = None,
        steps: int = LINE_STEPS,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit.strip() or "it"
        self.leave = leave
        self.stream = stream if stream is not None else sys.stderr
        self.steps = steps
        self.done = 0
        self._next_step = 1
        self._closed = False
        self._started = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """Count `n` more items; print a line when a 10 % mark is passed."""
        self.done += n
        if not self.leave or not self.total or self._closed:
            return
        if self.done >= math.ceil(self.total * self._next_step / self.steps):
            self._write(f"{self.done * 100 // self.total:3d}% {self.done}/{self.total} {self.unit}")
            self._next_step = self.done * self.steps // self.total + 1
            if self.done >= self.total:
                self._closed = True

    def close(self) -> None:
        """Print the final line, unless the 100 % line already said it."""
        if self._closed:
            return
        self._closed = True
        self._write(f"done {self.done} {self.unit}")

    def _write(self, state: str) -> None:
        elapsed = time.perf_counter() - self._started
        self.stream.write(f"{self.desc}: {state} {elapsed:.1f}s\n")
        self.stream.flush()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _NoProgress:
    """A disabled bar: counts nothing, prints nothing."""

    def update(self, n: int = 1) -> None:
        """Ignore the count."""

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(
    *,
    total: int | None,
    desc: str,
    unit: str = "it",
    leave: bool = True,
    disable: bool = False,
    stream: TextIO | None = None,
) -> ProgressBar:
    """A bar to `update(n)` by hand: tqdm on a terminal, `LineProgress` otherwise (stderr by default)."""
    if disable:
        return _NoProgress()
    out = stream if stream is not None else sys.stderr
    if _is_terminal(out):
        from tqdm import tqdm  # build-only dependency, imported where a bar is actually drawn

        bar: ProgressBar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=out)
        return bar
    return LineProgress(total=total, desc=desc, unit=unit, leave=leave, stream=out)


def progress(
    items: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    leave: bool = True,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """Iterate `items` with progress: tqdm on a terminal, a line per 10 % in a log.

    Args:
        items: what to iterate; `total` defaults to `len(items)` when it has one.
        desc: the stage or loop name that starts each line.
        total: the number of items, when `items` has no length.
        unit: what one item is ("batch", "chunk", ...).
        leave: False for inner loops: the bar vanishes on a terminal, one final line in a log.
        stream: where to write (default: stderr at call time).
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    with progress_bar(total=total, desc=desc, unit=unit, leave=leave, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(1)
