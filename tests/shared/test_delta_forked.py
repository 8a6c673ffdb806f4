"""The delta's forked-job runner (`delta/forked.py`): a value back from a child process or a thread,
and a job that fails, dies or hangs reported (never waited for) either way.

Fork is used only in a process running no other thread, and the test process may run some (a
library's monitor thread), so the forked cases run in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from anime_recommender.delta.forked import ForkedJob, JobFailed, JobTimedOut

HEADER = """
import json, os, signal, time
from anime_recommender.delta.forked import ForkedJob, JobDied, JobFailed, JobTimedOut
"""


def in_fresh_interpreter(body: str) -> dict[str, Any]:
    """Run `body` in a new single-threaded Python; the dict it leaves in `report`."""
    script = HEADER + textwrap.dedent(body) + "\nprint(json.dumps(report))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture
def other_thread() -> Any:
    """Another thread running in this process for the test's duration (so fork is unsafe)."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield thread
    stop.set()


def test_a_job_alone_in_its_process_forks_and_returns_its_value() -> None:
    # Given a single-threaded process, a job that reads one message and an unpicklable local (a
    # lock: the child inherits it, nothing is pickled on the way in)
    report = in_fresh_interpreter("""
        import threading
        lock = threading.Lock()
        job = ForkedJob(lambda receive: [os.getpid(), receive() * 2, lock.acquire()], name="t")
        job.send(21)
        pid, doubled, locked = job.result(timeout_s=30)
        job.close(wait_s=5)
        # and the same job told not to fork
        same = ForkedJob(lambda receive: os.getpid(), name="t", fork=False)
        report = {"forked": job.forked, "child": pid, "job_pid": job.pid, "parent": os.getpid(),
                  "doubled": doubled, "locked": locked,
                  "unforked": same.forked, "unforked_pid": same.result(timeout_s=30)}
        same.close(wait_s=5)
    """)
    # Then it ran in a child process and its return value came back
    assert report["forked"] is True and report["child"] == report["job_pid"] != report["parent"]
    assert report["doubled"] == 42 and report["locked"] is True
    # and `fork=False` kept it in the caller's process
    assert report["unforked"] is False and report["unforked_pid"] == report["parent"]


def test_a_job_runs_in_a_thread_while_another_thread_runs(other_thread: threading.Thread) -> None:
    # Given another thread alive in this process
    job: ForkedJob[tuple[int, str, int]] = ForkedJob(
        lambda receive: (os.getpid(), threading.current_thread().name, receive() * 2), name="delta-test"
    )
    job.send(21)
    # Then the job is a thread of this process, and answers the same way a child does
    assert job.forked is False and job.pid is None
    assert job.result(timeout_s=30) == (os.getpid(), "delta-test", 42)
    job.close(wait_s=5)


def test_a_forked_job_that_raises_reports_its_error() -> None:
    report = in_fresh_interpreter("""
        job = ForkedJob(lambda receive: int("twelve"), name="t")
        try:
            job.result(timeout_s=30)
        except JobFailed as exc:
            report = {"forked": job.forked, "error": str(exc)}
        job.close(wait_s=5)
    """)
    assert report == {"forked": True, "error": "ValueError: invalid literal for int() with base 10: 'twelve'"}


def test_a_threaded_job_that_fails_before_its_message_reports_its_own_error(
    other_thread: threading.Thread,
) -> None:
    # Given a job that fails at once (as an index worker whose base is corrupt) and has ended ...
    def fail(receive: Any) -> None:
        raise OSError("model/model.onnx degraded")

    job: ForkedJob[None] = ForkedJob(fail, name="delta-failing")
    deadline = time.monotonic() + 30
    while any(t.name == "delta-failing" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    # ... when it is sent its message: nothing raises there, and `result` gives the job's error
    job.send("the job")
    with pytest.raises(JobFailed, match=r"^OSError: model/model.onnx degraded$"):
        job.result(timeout_s=30)
    job.close(wait_s=5)


def test_a_child_that_dies_is_reported_not_waited_for() -> None:
    # Given a child killed before it answers (as the OOM killer would)
    report = in_fresh_interpreter("""
        job = ForkedJob(lambda receive: os.kill(os.getpid(), signal.SIGKILL), name="t")
        started = time.monotonic()
        try:
            job.result(timeout_s=60)
        except JobDied as exc:
            report = {"forked": job.forked, "error": str(exc), "waited_s": time.monotonic() - started}
        job.close(wait_s=5)
    """)
    # Then `result` says it died at once, well before its timeout
    assert report["forked"] is True and report["error"]
    assert report["waited_s"] < 30


def test_a_hung_child_times_out_and_close_ends_it() -> None:
    report = in_fresh_interpreter("""
        job = ForkedJob(lambda receive: time.sleep(600), name="t")
        try:
            job.result(timeout_s=0.2)
        except JobTimedOut as exc:
            timed_out = str(exc)
        job.close(wait_s=0.1)
        job.close(wait_s=0.1)  # again (a caller's `finally` after `result`): nothing happens
        try:
            os.kill(job.pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        report = {"forked": job.forked, "timed_out": timed_out, "alive": alive}
    """)
    assert report == {"forked": True, "timed_out": "no result within 0 s", "alive": False}


def test_a_hung_thread_times_out(other_thread: threading.Thread) -> None:
    release = threading.Event()
    job: ForkedJob[bool] = ForkedJob(lambda receive: release.wait(60), name="delta-hung")
    assert not job.forked
    started = time.monotonic()
    with pytest.raises(JobTimedOut):
        job.result(timeout_s=0.2)
    assert time.monotonic() - started < 10
    release.set()
    job.close(wait_s=5)
