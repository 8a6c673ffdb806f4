"""A small bounded load generator for the local server, on loopback only.

`run_load(LoadConfig(...))` sends a fixed number of requests (bounded also by a deadline) over N
keep-alive connections, one thread each, using stdlib `http.client`; it returns requests/s,
latency percentiles overall and per route, and every non-2xx status or connection error.
`serve_subprocess(artifacts)` starts `anime-build serve` (the same app as Lambda, under uvicorn) in a
separate process, so the load comes from another process than the server. Used by
`anime-build bench` and the reliability tests; `python -m anime_pipeline.bench.loadgen` runs it alone.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Request:
    """One request of the mix: a route label (for per-route stats), method, path+query, JSON body."""

    route: str
    method: str
    target: str
    body: bytes | None = None


@dataclass(frozen=True)
class LoadConfig:
    """How much load: `requests` in total over `connections`, stopping early at `max_seconds`."""

    port: int
    mix: Sequence[Request]
    requests: int = 2_000
    connections: int = 8
    max_seconds: float = 60.0
    timeout_s: float = 10.0
    host: str = LOOPBACK
    # Routes whose every answer is kept as (status, X-Data-Version) in `LoadResult.observed`.
    observe: frozenset[str] = frozenset()


@dataclass
class LoadResult:
    """What the run measured (latencies in milliseconds)."""

    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    connections: int
    statuses: dict[str, int]
    per_route: dict[str, dict[str, float]]
    error_samples: list[str] = field(default_factory=list)
    stopped_by_deadline: bool = False
    # Answers per `X-Data-Version` ("" when a response had none), and the observed routes' answers.
    versions: dict[str, int] = field(default_factory=dict)
    observed: list[tuple[str, str, str]] = field(default_factory=list)
    # Answers per `X-Cache` value ("hit", "miss"; "" for routes that are not cached).
    cache: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def _pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def default_mix(ids: Sequence[int], words: Sequence[str]) -> list[Request]:
    """A mix over every API route: health, autocomplete, details, similar (varied k and page),
    free-text search and recommendations, with the given catalogue ids and query words."""
    if len(ids) < 3 or not words:
        raise ValueError("the mix needs at least 3 anime ids and one word")
    mix: list[Request] = []
    for i, anime_id in enumerate(ids):
        word = words[i % len(words)]
        other = ids[(i + 1) % len(ids)]
        mix.append(Request("similar", "GET", f"/anime/{anime_id}/similar?k={5 + i % 10}"))
        mix.append(Request("anime", "GET", f"/anime/{anime_id}"))
        mix.append(Request("autocomplete", "GET", f"/anime?q={word[:3]}&limit=5"))
        mix.append(Request("search", "GET", f"/search?q={word}%20{words[(i + 3) % len(words)]}&k=5"))
        body = json.dumps({"liked": [anime_id, other], "k": 5}).encode()
        mix.append(Request("recommendations", "POST", "/recommendations", body))
        if i % 5 == 0:
            mix.append(Request("health", "GET", "/health"))
    return mix


@dataclass
class _Tally:
    """One connection's (then the run's) observations."""

    latencies: list[tuple[str, float]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)
    observed: list[tuple[str, str, str]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def merge(self, other: _Tally) -> None:
        self.latencies.extend(other.latencies)
        self.statuses.update(other.statuses)
        self.versions.update(other.versions)
        self.cache.update(other.cache)
        self.observed.extend(other.observed)
        self.samples.extend(other.samples)


def run_load(config: LoadConfig) -> LoadResult:
    """Send the requests (round-robin over the mix) and measure; never raises for bad responses."""
    if config.host not in (LOOPBACK, "localhost", "::1"):
        raise ValueError("the load generator only targets loopback")
    counter = itertools.count()
    deadline = time.perf_counter() + config.max_seconds
    lock = threading.Lock()
    total = _Tally()
    stopped = threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection(config.host, config.port, timeout=config.timeout_s)
        tally = _Tally()
        while True:
            n = next(counter)
            if n >= config.requests:
                break
            if time.perf_counter() > deadline:
                stopped.set()
                break
            req = config.mix[n % len(config.mix)]
            headers = {"Content-Type": "application/json"} if req.body is not None else {}
            started = time.perf_counter()
            try:
                conn.request(req.method, req.target, body=req.body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = str(response.status)
                version = response.getheader("X-Data-Version") or ""
                tally.cache[response.getheader("X-Cache") or ""] += 1
            except (OSError, http.client.HTTPException) as exc:
                status = f"error:{type(exc).__name__}"
                payload = str(exc).encode()
                version = ""
                conn.close()
                conn = http.client.HTTPConnection(config.host, config.port, timeout=config.timeout_s)
            tally.latencies.append((req.route, (time.perf_counter() - started) * 1000.0))
            tally.statuses[status] += 1
            tally.versions[version] += 1
            if req.route in config.observe:
                tally.observed.append((req.route, status, version))
            if not status.startswith("2") and len(tally.samples) < 5:
                tally.samples.append(f"{req.method} {req.target} -> {status} {payload[:200]!r}")
        conn.close()
        with lock:
            total.merge(tally)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(config.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(config.max_seconds + config.timeout_s + 5)
    seconds = time.perf_counter() - started

    return _result(
        config,
        total.latencies,
        total.statuses,
        seconds,
        error_samples=total.samples[:10],
        stopped_by_deadline=stopped.is_set(),
        versions=dict(sorted(total.versions.items())),
        observed=total.observed,
        cache=dict(sorted(total.cache.items())),
    )


def _result(
    config: LoadConfig,
    latencies: list[tuple[str, float]],
    statuses: Counter[str],
    seconds: float,
    **extra: Any,
) -> LoadResult:
    """The run's figures from its raw samples."""
    ordered = sorted(ms for _, ms in latencies)
    by_route: dict[str, list[float]] = {}
    for route, ms in latencies:
        by_route.setdefault(route, []).append(ms)
    per_route = {
        route: {
            "requests": len(values),
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(_pct(sorted(values), 0.99), 3),
        }
        for route, values in sorted(by_route.items())
    }
    errors = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return LoadResult(
        requests=len(ordered),
        errors=errors,
        seconds=round(seconds, 3),
        requests_per_s=round(len(ordered) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(_pct(ordered, 0.50), 3),
        p95_ms=round(_pct(ordered, 0.95), 3),
        p99_ms=round(_pct(ordered, 0.99), 3),
        max_ms=round(ordered[-1], 3) if ordered else float("nan"),
        connections=config.connections,
        statuses=dict(sorted(statuses.items())),
        per_route=per_route,
        **extra,
    )


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll GET /health until 200; returns the seconds it took. Raises if the server died or timed out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return time.perf_counter() - started
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server on port {port} not ready after {timeout_s} s")


@contextmanager
def serve_subprocess(
    artifacts: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 90,
    stats: dict[str, float] | None = None,
) -> Iterator[tuple[int, float]]:
    """Run `anime-build serve --artifacts DIR` on loopback in a child process; yields (port, ready seconds).

    The child gets LOG_LEVEL=WARNING (no access log per request) unless `env` says otherwise and is
    terminated (then killed) on exit.
    """
    port = port or free_port()
    child_env = {**os.environ, "LOG_LEVEL": "WARNING", **(env or {})}
    cmd = [sys.executable, "-m", "anime_pipeline.cli", "serve", "--host", LOOPBACK, "--port", str(port)]
    process = subprocess.Popen(
        [*cmd, "--artifacts", str(artifacts)],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            ready = wait_ready(port, ready_timeout_s, process)
        except (RuntimeError, TimeoutError) as exc:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"{exc}; server stderr: {err.decode(errors='replace')[-2000:]}") from None
        yield port, ready
    finally:
        if stats is not None:
            stats["peak_rss_mb"] = _peak_rss_mb(process.pid)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (Linux `VmHWM`), in MB; NaN where /proc cannot tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def mix_for_bundle(artifacts: Path, n_ids: int = 50) -> list[Request]:
    """`default_mix` over `n_ids` evenly spaced anime of a bundle's catalogue and their title words."""
    from anime_recommender.artifacts import CATALOGUE
    from anime_recommender.catalogue import Catalogue

    catalogue = Catalogue.load(artifacts / CATALOGUE)
    step = max(1, len(catalogue) // n_ids)
    chosen = [catalogue[i] for i in range(0, len(catalogue), step)][:n_ids]
    words = [w.lower() for a in chosen for w in a.title.split() if w.isascii() and w.isalpha()][:n_ids]
    return default_mix([a.id for a in chosen], words or ["anime"])


def main(argv: list[str] | None = None) -> int:
    """CLI: load an already running local server; prints the result as JSON; exit 1 on any error."""
    parser = argparse.ArgumentParser(description="Bounded load on a local API server (loopback only).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--artifacts", type=Path, required=True, help="bundle the server serves (for ids)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    config = LoadConfig(
        port=args.port,
        mix=mix_for_bundle(args.artifacts),
        requests=args.requests,
        connections=args.connections,
        max_seconds=args.max_seconds,
    )
    result = run_load(config)
    sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
