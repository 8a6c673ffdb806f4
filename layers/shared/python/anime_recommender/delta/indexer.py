"""The index side of a delta update, beside the rest: the base's model and indexes, embedding, updates.

Why apart: validating the new catalogue, diffing it and updating the V2 lists are Python and hold the
GIL, and so do loading the tokenizer and the hnswlib indexes and inserting into them. In one process
they take turns (measured on the default catalogue: validation 0.25 s alone, ~0.45 s beside the
loads). An `IndexWorker` in a forked child process loads and verifies the model and both indexes
while the parent validates, then embeds the added anime and those whose encoder text changed
(`DeltaPlan.to_embed`) and saves the updated indexes
while the parent updates the V2 lists and writes the catalogue: two cores, two interpreters.

The story index (`index_story/`, where the base has one) follows the catalogue's synopses: the anime
of `DeltaPlan.story_to_embed` that have a `story_passage` get their row (re)computed, with the rest of
the job's texts, the removed anime and those whose synopsis is gone lose theirs. An index the job does
not change (the story index of a weekly manami delta, which carries the base's synopses) is hard-linked
from the base instead of being written and hashed again; a story index left empty is dropped. A base
without a story index gets none, whatever synopses the new catalogue has: building one means embedding
every synopsis, a full build's work (`anime-build index`), not a weekly delta's.

The worker is a `ForkedJob` (`forked`): forked only while the process runs no other thread, and only
when the caller does not hand in its own encoder; otherwise the same code runs in a thread. Either
way the base bundle is only read, and files are written only into the job's `out_dir`; a worker that
fails, dies or hangs makes `result` raise `IndexWorkerError` (a `DeltaApplyError`), so nothing is
published.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from anime_recommender.artifacts import (
    MODEL_DIR,
    MODEL_FILES,
    STORY,
    STORY_OUTPUT,
    FileEntry,
    IndexInfo,
    Manifest,
    index_dir,
    index_output,
    sha256_file,
)
from anime_recommender.delta.base import verified_manifest
from anime_recommender.delta.forked import ForkedJob, JobDied, JobFailed, JobTimedOut, Receive
from anime_recommender.delta.plan import DeltaApplyError, DeltaPlan
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.index import SearchIndex, load_index
from anime_recommender.store import link_or_copy
from anime_recommender.text import anime_text, story_passage
from anime_recommender.timing import timed

# The worker's encoder runs one onnxruntime thread: it embeds a few dozen short texts one at a time,
# on its own core, while the parent works on the other (a one-thread session also has no thread pool
# whose idle threads would spin). Vectors are bitwise the same for any thread count (checked on 200
# catalogue texts).
DELTA_ENCODER_THREADS = 1
# A worker that gives no result for this long is treated as hung.
JOB_TIMEOUT_S = 600.0


class IndexWorkerError(DeltaApplyError):
    """The worker could not load the base or apply the job (the message says why)."""


def index_files(manifest: Manifest) -> list[str]:
    """The base files an `IndexWorker` reads: the model and every index file."""
    rels = list(MODEL_FILES)
    for space in manifest.indexes:
        prefix = index_dir(space) + "/"
        rels += sorted(rel for rel in manifest.files if rel.startswith(prefix)) or [prefix + "index.bin"]
    return rels


@dataclass(frozen=True)
class IndexJob:
    """What the indexes need from a plan: the texts to embed, the ids to insert and to remove; and the
    same for the story index (applied only where the base has one)."""

    ids: tuple[int, ...]  # `DeltaPlan.to_embed`: added, and changed in their text; `texts` order
    texts: tuple[str, ...]
    removed: tuple[int, ...]
    catalogue_size: int
    out_dir: Path
    # 1, as the index stage embeds: dynamic int8 quantises activations per batch, so a vector would
    # otherwise depend on its batch-mates and differ from the full rebuild's and the query's.
    batch_size: int = 1
    # The story index: the anime of `DeltaPlan.story_to_embed` with a story passage (`story_texts`
    # order), those without one now plus the removed anime, and how many anime of the new catalogue
    # have one (None: not computed, the base has no story index).
    story_ids: tuple[int, ...] = ()
    story_texts: tuple[str, ...] = ()
    story_removed: tuple[int, ...] = ()
    story_count: int | None = None

    @classmethod
    def from_plan(
        cls, plan: DeltaPlan, out_dir: Path, batch_size: int = 1, *, story: bool = True
    ) -> IndexJob:
        """The job for `plan`, its indexes saved under `out_dir`; `story`: with the story index's part
        (False when the base has no story index: it skips a pass over the catalogue)."""
        ids = plan.to_embed
        by_id = plan.catalogue.by_id
        job = cls(
            ids=ids,
            texts=tuple(anime_text(by_id(i)) for i in ids),
            removed=plan.removed,
            catalogue_size=len(plan.catalogue),
            out_dir=out_dir,
            batch_size=batch_size,
        )
        if not story:
            return job
        passages = {i: story_passage(by_id(i)) for i in plan.story_to_embed}
        kept = {i: text for i, text in passages.items() if text}
        return dataclasses.replace(
            job,
            story_ids=tuple(kept),
            story_texts=tuple(kept.values()),
            story_removed=tuple(sorted({*plan.removed, *(i for i in passages if i not in kept)})),
            # `bool(story_passage(a))` without splitting every synopsis.
            story_count=sum(1 for a in plan.catalogue if a.synopsis and not a.synopsis.isspace()),
        )

    def rows(self, space: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        """For one index: the ids to remove, the ids to insert (their vectors in `texts` or
        `story_texts` order), and how many rows it must hold afterwards."""
        if space != STORY:
            return self.removed, self.ids, self.catalogue_size
        if self.story_count is None:
            raise IndexWorkerError("the base has a story index, the job has no story rows")
        return self.story_removed, self.story_ids, self.story_count


@dataclass(frozen=True)
class IndexJobResult:
    """The updated indexes' manifest info and file entries (hashed by the worker), and its timings."""

    infos: dict[str, IndexInfo]
    files: dict[str, FileEntry]
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass
class _Loaded:
    root: Path
    manifest: Manifest
    encoder: OnnxEncoder
    indexes: dict[str, SearchIndex]
    seconds: float


def _load(bundle_dir: Path, threads: int, encoder: OnnxEncoder | None) -> _Loaded:
    with timed() as took:
        manifest = verified_manifest(bundle_dir, index_files)
        if encoder is None:
            encoder = OnnxEncoder.load(bundle_dir / MODEL_DIR, threads=DELTA_ENCODER_THREADS)
        if any(encoder.dims.get(index_output(s)) != info.dim for s, info in manifest.indexes.items()):
            raise IndexWorkerError(f"encoder outputs {encoder.dims} do not match the indexes")
        indexes: dict[str, SearchIndex] = {}
        for space, info in manifest.indexes.items():
            # Each index stays the kind the base has (an hnswlib V3 of an older bundle stays hnswlib).
            index = load_index(bundle_dir / index_dir(space), ef=info.ef, threads=threads, kind=info.kind)
            if index.dim != info.dim or len(index) != info.count:
                raise IndexWorkerError(f"index {space}: dim/count {index.dim}/{len(index)} != manifest")
            indexes[space] = index
    return _Loaded(bundle_dir, manifest, encoder, indexes, took.seconds)


def _entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def _link_base_index(loaded: _Loaded, space: str, out_dir: Path) -> dict[str, FileEntry]:
    """Hard-link (or copy) the base's files of an index the job left unchanged; their entries."""
    prefix = index_dir(space) + "/"
    files: dict[str, FileEntry] = {}
    for rel in sorted(r for r in loaded.manifest.files if r.startswith(prefix)):
        link_or_copy(loaded.root / rel, out_dir / rel)
        # Same inode as the file `_load` verified: same bytes. A copy (another file system) is hashed.
        same = os.path.samefile(loaded.root / rel, out_dir / rel)
        files[rel] = loaded.manifest.files[rel] if same else _entry(out_dir / rel)
    return files


def _update_index(loaded: _Loaded, job: IndexJob, space: str, vectors: Any, threads: int) -> IndexJobResult:
    """One index: removed anime marked deleted first (new ones reuse their slots), then the inserts.

    A flat index re-quantises the added and changed rows with the base's codebook (the mean and the
    rotation are refitted by full rebuilds only). An index the job does not change is linked from the
    base; a story index left empty is dropped (a catalogue without synopses has none)."""
    index = loaded.indexes[space]
    removed, ids, expected = job.rows(space)
    deleted = index.mark_deleted(removed)
    if ids:
        index.add(ids, vectors, threads=threads)
    if len(index) != expected:
        raise IndexWorkerError(f"index {space} holds {len(index)} anime, the catalogue {expected}")
    info = loaded.manifest.indexes[space].model_copy(update={"count": len(index)})
    if not deleted and not ids:
        return IndexJobResult(infos={space: info}, files=_link_base_index(loaded, space, job.out_dir))
    if space == STORY and not len(index):
        return IndexJobResult(infos={}, files={})
    written = index.save(job.out_dir / index_dir(space))
    files = {path.relative_to(job.out_dir).as_posix(): _entry(path) for path in written}
    return IndexJobResult(infos={space: info}, files=files)


def _embed(loaded: _Loaded, job: IndexJob) -> dict[str, np.ndarray]:
    """The job's vectors by index: the model's outputs of `texts`, and under `STORY` the story
    output of `story_texts` when the base has a story index."""
    vectors = loaded.encoder.encode(list(job.texts), batch_size=job.batch_size)
    if STORY in loaded.indexes and job.story_texts:
        # One run per passage too: then a story vector is a function of its text alone.
        story = loaded.encoder.encode(list(job.story_texts), batch_size=job.batch_size)
        vectors[STORY] = story[STORY_OUTPUT]
    return vectors


def _apply(loaded: _Loaded, job: IndexJob, threads: int) -> IndexJobResult:
    timings = {"load": loaded.seconds}
    with timed(timings, "embed"):
        vectors = _embed(loaded, job)
    with timed(timings, "index"):
        # The indexes side by side: hnswlib inserts and file writes release the GIL.
        with ThreadPoolExecutor(max_workers=len(loaded.indexes), thread_name_prefix="delta-index") as pool:
            parts = list(
                pool.map(
                    lambda s: _update_index(loaded, job, s, vectors.get(s), threads), list(loaded.indexes)
                )
            )
        infos = {s: i for part in parts for s, i in part.infos.items()}
        files = {rel: e for part in parts for rel, e in part.files.items()}
    return IndexJobResult(infos=infos, files=files, timings_s=timings)


def _serve(
    receive: Receive, bundle_dir: Path, threads: int, encoder: OnnxEncoder | None
) -> IndexJobResult | None:
    """Load, wait for one job (None: stop) and apply it."""
    loaded = _load(bundle_dir, threads, encoder)
    job = receive()
    return None if job is None else _apply(loaded, job, threads)


class IndexWorker:
    """Loads the base's model and indexes (verified) at once, in a forked process where it can, and
    applies one `IndexJob` (`submit`, then `result`). Use as a context manager (or call `close`)."""

    def __init__(self, bundle_dir: Path, *, threads: int = 1, encoder: OnnxEncoder | None = None) -> None:
        self._runner: ForkedJob[IndexJobResult | None] = ForkedJob(
            lambda receive: _serve(receive, bundle_dir, threads, encoder),
            name="delta-indexer",
            fork=encoder is None,  # a caller's encoder lives in this process
        )
        self.forked = self._runner.forked
        self._sent = False

    def submit(self, job: IndexJob) -> None:
        """Hand the worker its job (once); `result` waits for it."""
        if self._sent:
            raise IndexWorkerError("an index worker takes one job")
        self._sent = True
        self._runner.send(job)  # a worker that failed to load has ended: its error waits in `result`

    def result(self, timeout_s: float = JOB_TIMEOUT_S) -> IndexJobResult:
        """The submitted job's result; `IndexWorkerError` if the worker failed, died or hung."""
        try:
            indexed = self._runner.result(timeout_s)
        except JobTimedOut as exc:
            raise IndexWorkerError(f"index worker gave no result within {timeout_s:.0f} s") from exc
        except JobDied as exc:
            raise IndexWorkerError(f"index worker died ({exc})") from exc
        except JobFailed as exc:
            raise IndexWorkerError(str(exc)) from exc
        assert indexed is not None  # None answers only the stop message, and `close` sends that
        return indexed

    def close(self) -> None:
        """Stop the worker (after its job, or at once when none was sent) and wait for it."""
        if not self._sent:
            self._runner.send(None)
        self._runner.close(wait_s=30)

    def __enter__(self) -> IndexWorker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
