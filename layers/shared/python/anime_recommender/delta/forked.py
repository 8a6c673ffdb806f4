"""One job run beside the caller: in a forked child process where that is safe, else in a thread.

The delta's Python work (validation, the V2 lists) holds the GIL, and so do tokenising and loading
indexes; a forked child is a second interpreter on another core, and it inherits what the parent has
loaded (nothing is pickled on the way in). Fork is used only while the process runs no other thread:
forking a threaded process can deadlock on a lock another thread held. Otherwise the same target
runs in a thread behind the same pipe, so the caller sees one interface either way.

The target is called with `receive`, which returns the next message the parent `send`s; its return
value, or its exception as "Type: message", comes back through the pipe. `result` raises
`JobTimedOut`, `JobDied` (the child exited without answering: killed, out of memory) or `JobFailed`
(the target raised).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

T = TypeVar("T")
# What a target is handed: blocks until the parent sends a message, and returns it.
Receive = Callable[[], Any]


class ForkedJobError(Exception):
    """The job gave no result; the subclass says why."""


class JobTimedOut(ForkedJobError):
    """No result within the timeout: the job is treated as hung."""


class JobDied(ForkedJobError):
    """The child exited without a result (the message is the pipe's error)."""


class JobFailed(ForkedJobError):
    """The target raised (the message is its "Type: message")."""


def _run(conn: Connection, target: Callable[[Receive], Any]) -> None:
    """The job's side: send ("ok", value) or ("error", "Type: message"), then close the pipe."""
    try:
        conn.send(("ok", target(conn.recv)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a message
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass  # the parent is gone or stopped listening: nothing to report to
    finally:
        conn.close()


class ForkedJob(Generic[T]):
    """Starts `target(receive)` at once, in a forked child when `fork` and no other thread runs
    (`forked` says which); `result` waits for its value, `close` ends it."""

    def __init__(self, target: Callable[[Receive], T], *, name: str, fork: bool = True) -> None:
        self.forked = fork and threading.active_count() == 1
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        runner: Callable[..., BaseProcess | threading.Thread] = (
            context.Process if self.forked else threading.Thread
        )
        self._runner = runner(target=_run, args=(child, target), name=name, daemon=True)
        self._runner.start()
        if self.forked:
            child.close()  # the child holds its own copy; EOF then means the child is gone

    @property
    def pid(self) -> int | None:
        """The child's process id (None when the job runs in a thread)."""
        return self._runner.pid if isinstance(self._runner, BaseProcess) else None

    def send(self, message: Any) -> None:
        """Hand the target a message (its `receive` returns it); dropped if the job has ended."""
        try:
            self._conn.send(message)
        except OSError:
            pass  # a job that ended (or failed) has closed its end: what it sent waits in `result`

    def result(self, timeout_s: float) -> T:
        """The target's return value; `JobTimedOut`, `JobDied` or `JobFailed` when there is none."""
        try:
            if not self._conn.poll(timeout_s):
                raise JobTimedOut(f"no result within {timeout_s:.0f} s")
            status, payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise JobDied(str(exc) or type(exc).__name__) from exc
        if status != "ok":
            raise JobFailed(payload)
        return payload

    def close(self, wait_s: float) -> None:
        """Stop listening and wait up to `wait_s` for the job to end; a child still running then is
        terminated (a thread cannot be, but it is a daemon). Safe to call again."""
        self._conn.close()
        self._runner.join(timeout=wait_s)
        if isinstance(self._runner, BaseProcess) and self._runner.is_alive():
            self._runner.terminate()
            self._runner.join(timeout=5)
