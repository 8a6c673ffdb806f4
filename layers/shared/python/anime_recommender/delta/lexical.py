"""The lexical side of a delta update: the new catalogue's BM25 index, built beside everything else.

bm25s has no incremental update, and rebuilding is cheap (~0.4 s at 17.5k anime), so a delta rebuilds
the index from the new catalogue. It is Python tokenising that holds the GIL, so `LexicalBuild` runs
it in a forked child process (the child inherits the catalogue: nothing is pickled), beside the
parent writing the catalogue and updating the V2 lists and the `IndexWorker` embedding. As with the
worker, fork is used only while the process runs no other thread; otherwise a thread runs the same
code. The child writes only `out_dir/lexical/` and hashes what it wrote.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

from anime_recommender.artifacts import FileEntry, sha256_file, write_lexical
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.plan import DeltaApplyError

# A lexical build that gives no result for this long is treated as hung.
LEXICAL_TIMEOUT_S = 300.0


class LexicalBuildError(DeltaApplyError):
    """The lexical index could not be built or written (the message says why)."""


def build_and_hash(catalogue: Catalogue, out_dir: Path) -> dict[str, FileEntry]:
    """Write `out_dir/lexical/` for `catalogue`; the manifest entries of the files written."""
    return {
        path.relative_to(out_dir).as_posix(): FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
        for path in write_lexical(out_dir, catalogue)
    }


def _child(conn: Connection, catalogue: Catalogue, out_dir: Path) -> None:
    try:
        conn.send(("ok", build_and_hash(catalogue, out_dir)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a message
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass  # the parent is gone: nothing to report to
    finally:
        conn.close()


class LexicalBuild:
    """Starts building `catalogue`'s lexical index into `out_dir` at once; `result` waits for it."""

    def __init__(self, catalogue: Catalogue, out_dir: Path) -> None:
        self.forked = threading.active_count() == 1
        self._future: Future[dict[str, FileEntry]] | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        if self.forked:
            context = multiprocessing.get_context("fork")
            self._conn, child = context.Pipe(duplex=False)
            self._process = context.Process(
                target=_child, args=(child, catalogue, out_dir), name="delta-lexical", daemon=True
            )
            self._process.start()
            child.close()  # EOF then means the child is gone
        else:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-lexical")
            self._future = self._pool.submit(build_and_hash, catalogue, out_dir)

    def result(self, timeout_s: float = LEXICAL_TIMEOUT_S) -> dict[str, FileEntry]:
        """The written files' manifest entries; `LexicalBuildError` if the build failed, died or hung."""
        try:
            if self._future is not None:
                try:
                    return self._future.result(timeout=timeout_s)
                except TimeoutError as exc:
                    raise LexicalBuildError(f"lexical index gave no result within {timeout_s:.0f} s") from exc
                except Exception as exc:
                    raise LexicalBuildError(f"lexical index: {type(exc).__name__}: {exc}") from exc
            try:
                if not self._conn.poll(timeout_s):
                    raise LexicalBuildError(f"lexical index gave no result within {timeout_s:.0f} s")
                status, payload = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise LexicalBuildError(f"lexical index build died ({exc or type(exc).__name__})") from exc
            if status != "ok":
                raise LexicalBuildError(f"lexical index: {payload}")
            assert isinstance(payload, dict)
            return payload
        finally:
            self.close()

    def close(self) -> None:
        """Stop: the child is joined (it has sent its result, or is abandoned and terminated)."""
        if self._process is not None:
            self._conn.close()
            self._process.join(timeout=1)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=5)
            self._process = None
        elif self._future is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
