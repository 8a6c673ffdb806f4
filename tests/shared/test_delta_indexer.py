"""The delta update's index worker (`delta/indexer.py`): the same results forked or threaded, and failures
that publish nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anime_recommender.artifacts import CATALOGUE, Manifest, index_dir
from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.delta.indexer import IndexJob, IndexWorker, IndexWorkerError
from anime_recommender.delta.plan import plan_delta
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.index import load_index
from anime_recommender.text import anime_text

NEW = Anime(id=52991, title="Sousou no Frieren", type=AnimeType.TV, year=2023, tags=("adventure", "fantasy"))


def job_for(bundle: Path, out_dir: Path) -> IndexJob:
    """One added anime and the first anime removed, against the bundle's catalogue."""
    base = Catalogue.load(bundle / CATALOGUE)
    new = Catalogue([*list(base)[1:], NEW])
    out_dir.mkdir(parents=True, exist_ok=True)
    return IndexJob.from_plan(plan_delta(base, new), out_dir)


def test_threaded_worker_embeds_and_updates_both_indexes(bundle_dir: Path, tmp_path: Path) -> None:
    # Given a worker handed its own encoder (so it runs in a thread) and a job adding one anime
    encoder = OnnxEncoder.load(bundle_dir / "model", threads=1)
    job = job_for(bundle_dir, tmp_path / "new")
    with IndexWorker(bundle_dir, encoder=encoder) as worker:
        assert not worker.forked
        worker.submit(job)
        result = worker.result()

    # Then each saved index holds the new anime at its own vector, and the removed one is gone
    removed = job.removed[0]
    fresh = encoder.encode([anime_text(NEW)], batch_size=1)
    for space, info in Manifest.read(bundle_dir).indexes.items():
        index = load_index(tmp_path / "new" / index_dir(space), ef=info.ef, kind=info.kind)
        np.testing.assert_allclose(index.vector(NEW.id), fresh[space][0], atol=1e-6)
        assert removed not in index and len(index) == job.catalogue_size == result.infos[space].count
    # and the file entries it returns are the files it wrote
    for rel, entry in result.files.items():
        assert (tmp_path / "new" / rel).stat().st_size == entry.bytes
    assert {"load", "embed", "index"} <= set(result.timings_s)


def test_forked_worker_gives_the_threaded_result(bundle_dir: Path, tmp_path: Path) -> None:
    # Given the same job run by a forked worker (in a fresh, single-threaded interpreter) ...
    script = f"""
import json, sys
from pathlib import Path
sys.path[:0] = {[str(Path(__file__).parent), *sys.path]!r}
from test_delta_indexer import job_for
from anime_recommender.delta.indexer import IndexWorker
with IndexWorker(Path({str(bundle_dir)!r})) as worker:
    worker.submit(job_for(Path({str(bundle_dir)!r}), Path({str(tmp_path / "forked")!r})))
    result = worker.result()
print(json.dumps({{"forked": worker.forked, "files": {{k: v.sha256 for k, v in result.files.items()}}}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    forked = json.loads(done.stdout.strip().splitlines()[-1])

    # ... and by a threaded one
    encoder = OnnxEncoder.load(bundle_dir / "model", threads=1)
    with IndexWorker(bundle_dir, encoder=encoder) as worker:
        worker.submit(job_for(bundle_dir, tmp_path / "threaded"))
        threaded = worker.result()

    # Then the fork was used, and both wrote byte-identical index files
    assert forked["forked"] is True
    assert forked["files"] == {rel: e.sha256 for rel, e in threaded.files.items()}


def test_worker_refuses_a_corrupt_model_and_writes_nothing(bundle_dir: Path, tmp_path: Path) -> None:
    model = bundle_dir / "model" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    job = job_for(bundle_dir, tmp_path / "new")
    with IndexWorker(bundle_dir) as worker:
        worker.submit(job)
        with pytest.raises(IndexWorkerError, match="degraded: model/model.onnx"):
            worker.result()
    assert not any((tmp_path / "new").iterdir())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_worker_that_dies_is_reported_not_waited_for(bundle_dir: Path, tmp_path: Path) -> None:
    job = job_for(bundle_dir, tmp_path / "new")
    worker = IndexWorker(bundle_dir)
    if not worker.forked:
        worker.close()
        pytest.skip("this process runs other threads: the worker is a thread")
    os.kill(worker._runner.pid, signal.SIGKILL)  # type: ignore[union-attr]
    worker.submit(job)
    with pytest.raises(IndexWorkerError, match="died"):
        worker.result(timeout_s=30)
    worker.close()
