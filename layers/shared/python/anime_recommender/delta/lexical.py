"""The lexical side of a delta update: the new catalogue's BM25 index, built beside everything else.

bm25s has no incremental update, and rebuilding is cheap (~0.4 s at 17.5k anime), so a delta rebuilds
the index from the new catalogue. It is Python tokenising that holds the GIL, so `LexicalBuild` runs
it as a `ForkedJob` (`forked`): a child process that inherits the catalogue (nothing is pickled),
beside the parent writing the catalogue and updating the V2 lists and the `IndexWorker` embedding;
a thread where the process already runs another. It writes only `out_dir/lexical/` and hashes what
it wrote.
"""

from __future__ import annotations

from pathlib import Path

from anime_recommender.artifacts import FileEntry, sha256_file, write_lexical
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.forked import ForkedJob, JobDied, JobFailed, JobTimedOut
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


class LexicalBuild:
    """Starts building `catalogue`'s lexical index into `out_dir` at once; `result` waits for it."""

    def __init__(self, catalogue: Catalogue, out_dir: Path) -> None:
        self._job = ForkedJob(lambda _receive: build_and_hash(catalogue, out_dir), name="delta-lexical")
        self.forked = self._job.forked

    def result(self, timeout_s: float = LEXICAL_TIMEOUT_S) -> dict[str, FileEntry]:
        """The written files' manifest entries; `LexicalBuildError` if the build failed, died or hung."""
        try:
            return self._job.result(timeout_s)
        except JobTimedOut as exc:
            raise LexicalBuildError(f"lexical index gave no result within {timeout_s:.0f} s") from exc
        except JobDied as exc:
            raise LexicalBuildError(f"lexical index build died ({exc})") from exc
        except JobFailed as exc:
            raise LexicalBuildError(f"lexical index: {exc}") from exc
        finally:
            self.close()

    def close(self) -> None:
        """Stop: the child is joined (it has sent its result, or is abandoned and terminated)."""
        self._job.close(wait_s=1)
