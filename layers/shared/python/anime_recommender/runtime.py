"""Process-level helpers for allocation-heavy phases (the delta update, the API's hot swap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting still frees everything).

    Validating, hashing and loading a catalogue allocate ~10^6 short-lived objects; each allocation
    burst triggers collections that walk every live object of the process (a warm container holds two
    catalogues, models and indexes): measured 0.2-0.3 s of a ~1 s validation. The blocks create no
    cycles worth collecting early; the collector resumes (if it was on) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
