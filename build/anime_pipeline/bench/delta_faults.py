"""The weekly update's reliability suite: a crash at every write, double delivery, bad upstream data.

Used by the reliability tests (a sample of crash points on the tiny bundle, the full set behind the
slow marker) and by `anime-build bench` (the full set on the benchmarked bundle). Every check runs real
delta updates (`run_delta_update`) against a real store, and judges the outcome as a reader would:
through a `RefreshingBundleProvider` that follows the store's pointer, as the API does.

- `crash_at_every_write`: week after week, one delta is killed at its n-th write (the store's write
  seam, `ArtifactStore.write_hook`): by an exception, or by SIGKILL of a child process. After each
  kill the reader must still serve the previous version with the same answers; the next run must
  publish a complete version, which the reader then serves.
- `double_delivery`: two runs of the same week. Deterministic interleavings (the second run goes
  through while the first waits at its manifest write, or at its pointer write) and one real
  concurrent pair: exactly one version becomes current, and the other run ends cleanly, saying why.
- `bad_inputs`: upstream files that must be refused, each with its named reason, publishing nothing.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from anime_pipeline.bench.delta import release_writer, weekly_update
from anime_pipeline.bench.loadgen import LoadConfig, Request, mix_for_bundle, run_load, serve_subprocess
from anime_recommender.api.refresh import RefreshingBundleProvider
from anime_recommender.artifacts import CATALOGUE, load_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.delta.update import DeltaSummary, run_delta_update
from anime_recommender.similarity import TieredBackend, backend_from_bundle
from anime_recommender.store import ArtifactStore, LocalArtifactStore, S3ArtifactStore, Write, WriteKind

Mode = Literal["raise", "kill"]


class InjectedCrash(RuntimeError):
    """Raised by the write seam where a test kills the run."""


@dataclass(frozen=True)
class StoreSpec:
    """Where the store is, in a form a spawned child process can take: an S3 bucket, or a local folder."""

    bucket: str | None = None
    endpoint_url: str | None = None
    local_root: str | None = None

    def __call__(self) -> ArtifactStore:
        """A new store client (each run, and each child process, has its own)."""
        if self.local_root is not None:
            return LocalArtifactStore(Path(self.local_root))
        assert self.bucket is not None
        return S3ArtifactStore(self.bucket, endpoint_url=self.endpoint_url)


@dataclass
class FaultRig:
    """One store and the deployed bundle a series of weekly deltas runs against.

    Args:
        layer: the deployed bundle (the first base).
        store: the store every run uses.
        root: scratch space.
        probes: anime ids whose similar lists are compared before and after each crash.
    """

    layer: Path
    store: StoreSpec
    root: Path
    probes: list[int] = field(default_factory=list)
    week: int = 0

    def __post_init__(self) -> None:
        base = load_bundle(self.layer).catalogue
        self.current = base
        self.write = release_writer(base, self.root, self.layer)
        self.reader = RefreshingBundleProvider(
            self.layer,
            lambda d: backend_from_bundle(load_bundle(d, all_tiers=True)),
            self.store(),
            cache_dir=self.root / "reader",
            check_seconds=0,
        )
        if not self.probes:
            self.probes = base.ids[:: max(1, len(base) // 5)][:5]

    def next_week(self) -> Path:
        """The next weekly release file: one anime changed and one added on top of the current version."""
        self.week += 1
        new = weekly_update(self.current, 1, 1, seed=self.week)
        return self.write(new, self.root / f"week{self.week}.csv")

    def run(self, release: Path, hook: Callable[[Write], None] | None = None) -> DeltaSummary:
        """One delta update of `release` against the store (the seam's hook set when given)."""
        store = self.store()
        store.write_hook = hook
        return _delta(store, self.layer, release, self.root)

    def served(self) -> tuple[str, list[list[int]]]:
        """What a reader serves now: its data version and its answers for the probe anime."""
        backend: TieredBackend = self.reader()
        return backend.info.data_version, [[h.anime_id for h in backend.similar(a, 5)] for a in self.probes]

    def adopt_published(self) -> None:
        """Make the pointer's version the current catalogue (the next week builds on it)."""
        store = self.store()
        pointer = store.read_pointer()
        assert pointer is not None
        self.current = Catalogue.load(store.fetch(pointer, self.root / "fetched") / CATALOGUE)


# ---- a crash at every write ----------------------------------------------------------------------


def _crash_hook(at: int, mode: Mode, seen: list[Write]) -> Callable[[Write], None]:
    def hook(write: Write) -> None:
        seen.append(write)
        if len(seen) == at:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedCrash(f"injected crash at write {at}: {write.kind} {write.target}")

    return hook


def _delta(store: ArtifactStore, layer: Path, release: Path, root: Path) -> DeltaSummary:
    # A work dir of its own: two runs of one week may overlap (double delivery).
    work = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    try:
        return run_delta_update(release, store, layer_dir=layer, work_dir=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _child(
    spec: StoreSpec, layer: Path, release: Path, root: Path, kill_at: int, start: Any, out: Any
) -> None:
    """A delta run in a spawned process (fresh interpreter: no lock inherited from the parent's threads,
    which a fork could deadlock on): killed at write `kill_at` when given, its summary put on `out`."""
    try:
        store = spec()
        if kill_at:
            store.write_hook = _crash_hook(kill_at, "kill", [])
        if start is not None:
            start.wait(120)
        result: dict[str, Any] = _delta(store, layer, release, root).to_dict()
    except Exception as exc:  # reported to the parent, which judges the run failed
        result = {"error": f"{type(exc).__name__}: {exc}"}
    if out is not None:
        out.put(result)


_SPAWN = multiprocessing.get_context("spawn")


def _killed_child(rig: FaultRig, release: Path, at: int) -> int:
    """Run the delta in a child process that SIGKILLs itself at write `at`; its exit code."""
    child = _SPAWN.Process(target=_child, args=(rig.store, rig.layer, release, rig.root, at, None, None))
    child.start()
    child.join(600)
    if child.exitcode is None:
        child.kill()
        return -1
    return child.exitcode


@dataclass
class CrashReport:
    """Crash points tried and survived, versions lost, and each point's outcome."""

    writes_per_run: int = 0
    tried: int = 0
    survived: int = 0
    versions_lost: int = 0
    killed: int = 0
    points: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k) for k in ("writes_per_run", "tried", "survived", "versions_lost", "killed")
        } | {"points": self.points}


def crash_at_every_write(rig: FaultRig, sample: int | None = None, kills: int = 0) -> CrashReport:
    """Crash one weekly delta at each write point in turn, checking the reader and the next run after each.

    Args:
        sample: try this many points, spread evenly and always including the first write, the
            manifest and the pointer flip; None tries every one.
        kills: this many of the tried points (spread evenly) are a SIGKILL of a child process running
            the delta; the others an exception raised by the seam.
    """
    report = CrashReport()
    counted: list[Write] = []
    first = rig.run(rig.next_week(), counted.append)
    if first.status != "published":
        raise RuntimeError(f"the setup delta did not publish: {first.to_dict()}")
    rig.adopt_published()
    report.writes_per_run = n = len(counted)
    points = list(range(1, n + 1))
    if sample is not None and sample < n:
        spread = {1 + round(i * (n - 1) / max(sample - 1, 1)) for i in range(sample)}
        points = sorted(spread | {1, n - 1, n})
    kill_points = (
        {points[round(i * (len(points) - 1) / max(kills - 1, 1))] for i in range(kills)} if kills else set()
    )
    for at in points:
        before = rig.served()
        release = rig.next_week()
        mode: Mode = "kill" if at in kill_points else "raise"
        outcome: dict[str, Any] = {"write": at, "mode": mode}
        if mode == "kill":
            outcome["exit_code"] = _killed_child(rig, release, at)
            report.killed += outcome["exit_code"] == -signal.SIGKILL
        else:
            seen: list[Write] = []
            try:
                rig.run(release, _crash_hook(at, "raise", seen))
                outcome["crashed"] = False
            except InjectedCrash:
                outcome["crashed"] = True
            outcome["target"] = f"{seen[-1].kind} {seen[-1].target}" if seen else None
        after = rig.served()
        outcome["previous_still_served"] = after == before
        rerun = rig.run(release)
        pointer = rig.store().read_pointer()
        complete = pointer is not None and rig.store().find_version(pointer.version) is not None
        served_version, _ = rig.served()
        outcome["rerun"] = rerun.status
        outcome["new_version_served"] = (
            complete and pointer is not None and served_version == pointer.data_version != before[0]
        )
        report.tried += 1
        ok = outcome["previous_still_served"] and rerun.status in ("published", "adopted")
        ok = ok and outcome["new_version_served"]
        report.survived += ok
        report.versions_lost += not complete or not outcome["previous_still_served"]
        report.points.append(outcome)
        rig.adopt_published()
    return report


# ---- double delivery -----------------------------------------------------------------------------


@dataclass
class DoubleDeliveryReport:
    """For each scenario: both runs' outcomes and how many versions became current."""

    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def versions_published(self) -> int:
        """The most versions any scenario made current (1 is right)."""
        return max((s["versions_published"] for s in self.scenarios.values()), default=0)

    @property
    def ok(self) -> bool:
        return all(s["ok"] for s in self.scenarios.values())

    def to_dict(self) -> dict[str, Any]:
        return {"versions_published": self.versions_published, "ok": self.ok, "scenarios": self.scenarios}


def _judge(
    rig: FaultRig, name: str, first: DeltaSummary, second: DeltaSummary, before: str | None
) -> dict[str, Any]:
    pointer = rig.store().read_pointer()
    flipped = [s for s in (first, second) if s.status in ("published", "adopted")]
    clean = [s for s in (first, second) if s.status in ("superseded", "unchanged")]
    versions = 0 if pointer is None or pointer.version == before else 1
    complete = pointer is not None and rig.store().find_version(pointer.version) is not None
    result = {
        "first": {"status": first.status, "reason": first.refusal_reason},
        "second": {"status": second.status, "reason": second.refusal_reason},
        "versions_published": versions if len(flipped) <= 1 else len(flipped),
        "pointer_previous_is_base": pointer is not None and pointer.previous == before,
    }
    result["ok"] = len(flipped) == 1 and len(clean) == 1 and complete and result["pointer_previous_is_base"]
    rig.adopt_published()
    return {name: result}


def _interleaved(rig: FaultRig, at_kind: WriteKind) -> tuple[DeltaSummary, DeltaSummary]:
    """Run A; when A reaches its first `at_kind` write, run B to the end first, then let A go on."""
    release = rig.next_week()
    second: list[DeltaSummary] = []

    def hook(write: Write) -> None:
        if write.kind == at_kind and not second:
            second.append(rig.run(release))

    first = rig.run(release, hook)
    if not second:
        raise RuntimeError(f"the first run made no {at_kind!r} write")
    return first, second[0]


def _concurrent(rig: FaultRig) -> tuple[DeltaSummary, DeltaSummary]:
    """Two runs of the same week in two processes, released together."""
    release = rig.next_week()
    start = _SPAWN.Event()
    results = _SPAWN.Queue()
    args = (rig.store, rig.layer, release, rig.root, 0, start, results)
    children = [_SPAWN.Process(target=_child, args=args) for _ in range(2)]
    for child in children:
        child.start()
    start.set()  # both are released together once they have imported and opened their store
    got = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join(60)
    failed = [r["error"] for r in got if "error" in r]
    if failed:
        raise RuntimeError(f"a concurrent delta run failed: {failed}")
    first, second = (DeltaSummary(**r) for r in got)
    return first, second


def double_delivery(rig: FaultRig) -> DoubleDeliveryReport:
    """Two deliveries of one week, three ways (see the module docstring)."""
    report = DoubleDeliveryReport()
    # The second run goes through at the write that completes the first's upload (S3: its manifest);
    # a local store renames under its lock, where the second run would wait, so: at its first copy.
    commit: WriteKind = "copy" if rig.store.local_root is not None else "manifest"
    for name, runs in (
        ("second_runs_while_first_completes_its_upload", lambda: _interleaved(rig, commit)),
        ("second_runs_while_first_flips", lambda: _interleaved(rig, "pointer")),
        ("concurrent_processes", lambda: _concurrent(rig)),
    ):
        pointer = rig.store().read_pointer()
        before = None if pointer is None else pointer.version
        first, second = runs()
        report.scenarios.update(_judge(rig, name, first, second, before))
    return report


# ---- bad upstream data ---------------------------------------------------------------------------


def _bad_files(rig: FaultRig) -> Iterator[tuple[str, str, Path, Path | None]]:
    """(name, expected refusal code, catalogue file, story-text file) for each bad input."""
    root = rig.root / "bad"
    root.mkdir(parents=True, exist_ok=True)
    current = list(rig.current)
    good = rig.write(weekly_update(rig.current, 1, 1, seed=9_999), root / "good.csv")
    data = good.read_bytes()
    packed = gzip.compress(data)
    (root / "truncated.csv.gz").write_bytes(packed[: len(packed) // 2])
    yield "truncated_gzip", "truncated", root / "truncated.csv.gz", None
    yield (
        "shrunk_tenfold",
        "shrink",
        rig.write(Catalogue(current[: len(current) // 10 or 1]), root / "tenth.csv"),
        None,
    )
    # Schema drift: the release renamed a field every record needs (a CSV column, or manami's "title").
    text = data.decode("utf-8")
    drifted = (
        text.replace("Score", "Rating", 1)
        if text.startswith("anime_id")
        else text.replace('"title"', '"name"')
    )
    (root / "drift.csv").write_text(drifted, encoding="utf-8")
    yield "missing_fields", "schema_drift", root / "drift.csv", None
    # 5 % of the records again: beyond the 1 % of repeats a release may have.
    if text.startswith("anime_id"):
        lines = text.splitlines(keepends=True)
        (root / "dupes.csv").write_text("".join(lines + lines[1 : 2 + len(lines) // 20]), encoding="utf-8")
        dupes = root / "dupes.csv"
    else:
        document = json.loads(text)
        document["data"] += document["data"][: 1 + len(document["data"]) // 20]
        dupes = root / "dupes.json"
        dupes.write_text(json.dumps(document), encoding="utf-8")
    yield "duplicate_ids", "duplicates", dupes, None
    with (root / "huge.csv").open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: 200 MB on paper, nothing on disk
    yield "200_mb_file", "too_large", root / "huge.csv", None
    # Bytes that are not UTF-8 (as a release written in Latin-1 would have).
    (root / "latin1.csv").write_bytes(data[: len(data) // 2] + b"\xe9\xff" + data[len(data) // 2 :])
    yield "invalid_utf8", "invalid_utf8", root / "latin1.csv", None
    foreign = root / "other-story.jsonl"
    records = [{"mal_id": 900_000 + i, "synopsis": "Another catalogue."} for i in range(50)]
    records += [{"mal_id": a.id, "synopsis": "A story."} for a in current[:2]]
    foreign.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    yield "storytext_for_another_catalogue", "storytext_mismatch", good, foreign


def bad_inputs(rig: FaultRig) -> dict[str, Any]:
    """Each bad input through a delta run: refused with its code, nothing published."""
    results: dict[str, dict[str, Any]] = {}
    for name, code, catalogue, storytext in _bad_files(rig):
        store = rig.store()
        before = store.read_pointer()
        summary = run_delta_update(
            catalogue, store, layer_dir=rig.layer, work_dir=rig.root / "bad-work", storytext_path=storytext
        )
        after = store.read_pointer()
        results[name] = {
            "status": summary.status,
            "code": summary.refusal_code,
            "expected": code,
            "reason": summary.refusal_reason,
            "refused": summary.status == "refused" and summary.refusal_code == code and after == before,
        }
    return {"tried": len(results), "refused": sum(r["refused"] for r in results.values()), "inputs": results}


# ---- a swap under load ---------------------------------------------------------------------------


def swap_under_load(layer: Path, root: Path, requests: int = 2_000, connections: int = 8) -> dict[str, Any]:
    """`requests` over `connections` to a local server (`anime-build serve`, POINTER_CHECK_SECONDS=0)
    while a delta publishes a new version that the server picks up mid-load.

    The delta runs first up to its pointer flip and waits there; the load starts, and the flip happens
    once a quarter of the load's expected time has passed. Every answer must be a success and name
    exactly one data version (`X-Data-Version`), both versions must answer, and the anime the delta
    adds must be found exactly by the answers that name the new version (404 under the old one).
    """
    store_root = root / "swap-store"
    rig = FaultRig(layer=layer, store=StoreSpec(local_root=str(store_root)), root=root / "swap")
    release = rig.next_week()
    added = max(set(_read_ids(release)) - set(Catalogue.load(layer / CATALOGUE).ids))
    mix = [*mix_for_bundle(layer), Request("probe", "GET", f"/anime/{added}")]
    at_flip, go = threading.Event(), threading.Event()

    def hold_flip(write: Write) -> None:
        if write.kind == "pointer" and not at_flip.is_set():
            at_flip.set()
            go.wait(120)

    env = {"ARTIFACTS_LOCAL_STORE": str(store_root), "POINTER_CHECK_SECONDS": "0", "CACHE_TABLE_NAME": ""}
    with serve_subprocess(layer, env=env) as (port, _):
        published: list[DeltaSummary] = []
        delta = threading.Thread(target=lambda: published.append(rig.run(release, hold_flip)), daemon=True)
        delta.start()
        if not at_flip.wait(300):
            raise RuntimeError("the delta never reached its pointer flip")
        timer = threading.Timer(0.25, go.set)
        timer.start()
        result = run_load(
            LoadConfig(
                port=port, mix=mix, requests=requests, connections=connections, observe=frozenset({"probe"})
            )
        )
        go.set()
        delta.join(300)
    old, new = Catalogue.load(layer / CATALOGUE), published[0] if published else None
    new_version = (
        None if new is None or new.published_version is None else new.published_version.split("-")[0]
    )
    probes = result.observed
    mismatched = [p for p in probes if (p[1] == "200") != (p[2] == new_version) or p[1] not in ("200", "404")]
    expected_404 = sum(p[1] == "404" for p in probes)
    return {
        "requests": result.requests,
        "connections": connections,
        "errors": result.errors - expected_404 + len(mismatched),
        "unlabelled": result.versions.get("", 0),
        "versions": result.versions,
        "both_versions_answered": len([v for v in result.versions if v]) == 2,
        "probe_answers": len(probes),
        "probe_mismatches": len(mismatched),
        "published": None if new is None else new.status,
        "old_catalogue_size": len(old),
        "p99_ms": result.p99_ms,
    }


def _read_ids(release: Path) -> list[int]:
    from anime_recommender.delta.plan import load_new_catalogue

    return load_new_catalogue(release, release_dates=None)[0].ids


# ---- the whole suite (the bench) -----------------------------------------------------------------


def reliability_suite(
    layer: Path, root: Path, endpoint_url: str, *, sample: int | None = None
) -> dict[str, Any]:
    """Every check above on `layer` (a copy is used), S3 on the moto server at `endpoint_url`.

    `sample` crash points (None: every write; 4 of them by SIGKILL). Returns the JSON-ready report with
    the figures `anime-build bench` puts in its summary.
    """
    import boto3

    def rig(name: str) -> FaultRig:
        bucket = f"reliability-{name}-{os.getpid()}"
        boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)
        copy = Path(shutil.copytree(layer, root / name / "layer"))
        return FaultRig(
            layer=copy, store=StoreSpec(bucket=bucket, endpoint_url=endpoint_url), root=root / name
        )

    crashes = crash_at_every_write(rig("crash"), sample=sample, kills=4).to_dict()
    delivery_rig = rig("double")
    delivery_rig.run(delivery_rig.next_week())
    delivery_rig.adopt_published()
    delivery = double_delivery(delivery_rig).to_dict()
    bad = bad_inputs(rig("bad"))
    swap = swap_under_load(Path(shutil.copytree(layer, root / "swap-layer")), root)
    return {
        "crash_points_tried": crashes["tried"],
        "crash_points_survived": crashes["survived"],
        "versions_lost": crashes["versions_lost"],
        "double_delivery_versions_published": delivery["versions_published"],
        "swap_errors": swap["errors"],
        "bad_inputs_refused": bad["refused"],
        "bad_inputs_tried": bad["tried"],
        "crashes": crashes,
        "double_delivery": delivery,
        "bad_inputs": bad,
        "swap_under_load": swap,
    }
