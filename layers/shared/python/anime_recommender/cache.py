"""Response cache: one key function, a DynamoDB implementation and an in-process LRU.

The cache is an optimisation, never a dependency: every call here swallows its own failures
(logged, counted, reported to the caller as status "error"/"bypass"), so a slow or missing
table cannot fail or noticeably slow a request. DynamoDB calls use short timeouts and no
retries, and a small circuit breaker stops calling a table that keeps failing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

CacheStatus = Literal["hit", "miss", "error", "bypass"]

# DynamoDB's hard item limit is 400 KB; we stay far below it (payload + key + TTL attribute).
DYNAMODB_ITEM_LIMIT = 400 * 1024
PK_ATTRIBUTE = "pk"
PAYLOAD_ATTRIBUTE = "v"
TTL_ATTRIBUTE = "expires_at"


def _canonical(value: Any) -> Any:
    """JSON-ready canonical form: dict keys sorted by json.dumps; sets sorted; tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def cache_key(route: str, params: Mapping[str, Any], model_version: str, data_version: str) -> str:
    """THE cache key: a short hash over (route, normalised params, model version, data version).

    Callers pass params with defaults filled and order-insensitive lists already sorted (the
    request models do this), so equivalent requests share one key. A new model or catalogue
    version changes every key, so stale entries are simply never read again (TTL reaps them).
    """
    canonical = json.dumps(
        {"r": route, "p": _canonical(params), "m": model_version, "d": data_version},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.blake2b(canonical.encode("ascii"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """Outcome of a `get`: the payload on a hit, and what happened."""

    status: CacheStatus
    payload: bytes | None = None


@dataclass
class CacheStats:
    """Counters for metrics and tests."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    bypassed: int = 0
    stored: int = 0
    too_large: int = 0
    dropped: int = 0


class ResponseCache(Protocol):
    """What the API needs from a cache. Implementations never raise."""

    stats: CacheStats

    @property
    def kind(self) -> str:
        """Short name for /health and logs ("dynamodb", "lru", "none")."""
        ...

    def get(self, key: str, *, shared: bool = True) -> CacheLookup:
        """Look a key up; `shared=False` consults only what this container holds (no round trip)."""
        ...

    def put(self, key: str, payload: bytes, *, shared: bool = True) -> CacheStatus:
        """Store a payload (bytes of the response body); "miss" means stored or refused quietly.

        `shared=False` keeps it in this container only (routes cheaper to recompute than to fetch).
        """
        ...

    def renew(self) -> None:
        """Forget this container's entries and clients (after a SnapStart restore: a snapshot's
        connections are not to be reused, and its entries may belong to another data version)."""
        ...


class NullCache:
    """No caching at all (LOCAL_CACHE_SIZE=0 without a table)."""

    def __init__(self) -> None:
        self.stats = CacheStats()

    @property
    def kind(self) -> str:
        return "none"

    def get(self, key: str, *, shared: bool = True) -> CacheLookup:
        self.stats.bypassed += 1
        return CacheLookup("bypass")

    def put(self, key: str, payload: bytes, *, shared: bool = True) -> CacheStatus:
        return "bypass"

    def renew(self) -> None:
        return None


class LocalLRUCache:
    """In-process LRU with TTL, for the local demo or when no table is configured."""

    def __init__(self, max_items: int, ttl_seconds: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_items = max_items
        self._ttl = ttl_seconds
        self._clock = clock
        # uvicorn may run sync routes in a thread pool.
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def kind(self) -> str:
        return "lru"

    def get(self, key: str, *, shared: bool = True) -> CacheLookup:
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry[0] <= self._clock():
                if entry is not None:
                    del self._items[key]
                self.stats.misses += 1
                return CacheLookup("miss")
            self._items.move_to_end(key)
            self.stats.hits += 1
            return CacheLookup("hit", entry[1])

    def put(self, key: str, payload: bytes, *, shared: bool = True) -> CacheStatus:
        with self._lock:
            self._items[key] = (self._clock() + self._ttl, payload)
            self._items.move_to_end(key)
            while len(self._items) > self._max_items:
                self._items.popitem(last=False)
            self.stats.stored += 1
        return "miss"

    def renew(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class CircuitBreaker:
    """Open after `threshold` consecutive failures; allow one probe call after `cooldown_s`."""

    threshold: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _opened_at: float | None = field(default=None, init=False)

    def allow(self) -> bool:
        """Whether a call may be attempted now."""
        if self._opened_at is None:
            return True
        if self.clock() - self._opened_at >= self.cooldown_s:
            # Half-open: let this call probe; a failure re-opens for another cooldown.
            self._opened_at = self.clock()
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self.threshold:
            self._opened_at = self.clock()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None


class DynamoDBCache:
    """Cache items in DynamoDB: pk (S), v (B: zlib-compressed JSON), expires_at (N, epoch seconds TTL)."""

    def __init__(
        self,
        table_name: str,
        *,
        ttl_seconds: int,
        timeout_seconds: float = 0.25,
        max_item_bytes: int = 100_000,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        breaker: CircuitBreaker | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_item_bytes >= DYNAMODB_ITEM_LIMIT - 1_024:
            raise ValueError(f"max_item_bytes must stay well under DynamoDB's {DYNAMODB_ITEM_LIMIT} bytes")
        self.table_name = table_name
        self._ttl = ttl_seconds
        self._max_item_bytes = max_item_bytes
        self._clock = wall_clock
        self._breaker = breaker or CircuitBreaker()
        self.stats = CacheStats()
        # Built by the first call that reaches the table, not at init: importing botocore and building
        # a client (service model JSON, credential chain) is ~0.1 s of CPU that holds the GIL, so on a
        # thread it only stalled the cold start's artifact load (measured: init 1,144 vs 1,064 ms median
        # of 6 interleaved emulator starts with vs without a table). Only /search and /recommendations use
        # the shared tier, so a first /similar never pays it. A client that fails to build is retried by
        # the next call; meanwhile every call reports "error", as an unreachable table does.
        self._client_args = (timeout_seconds, endpoint_url, region_name)
        self._client_built: Any = None
        self._client_lock = threading.Lock()

    def _build_client(self) -> Any:
        timeout_seconds, endpoint_url, region_name = self._client_args
        # botocore directly, imported only when a table is used: `import boto3` also imports
        # s3transfer (~0.1 s) and a client needs none of it.
        import botocore.session
        from botocore.config import Config

        # Hot path: fail fast rather than retry; the request is served uncached instead.
        config = Config(
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            retries={"total_max_attempts": 1, "mode": "standard"},
            tcp_keepalive=True,
        )
        return botocore.session.get_session().create_client(
            "dynamodb", endpoint_url=endpoint_url, region_name=region_name, config=config
        )

    @property
    def _client(self) -> Any:
        """The botocore client, built once by the first caller (raises what building it raised)."""
        client = self._client_built
        if client is None:
            with self._client_lock:  # the local server answers on several threads
                if self._client_built is None:
                    self._client_built = self._build_client()
                client = self._client_built
        return client

    @property
    def kind(self) -> str:
        return "dynamodb"

    def renew(self) -> None:
        """Drop the client: the next call builds a fresh one (new connections, re-read credentials)."""
        with self._client_lock:
            self._client_built = None

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def get(self, key: str, *, shared: bool = True) -> CacheLookup:
        if not shared:
            # No container-local tier (LOCAL_CACHE_SIZE=0): a local-only lookup has nothing to read.
            self.stats.bypassed += 1
            return CacheLookup("bypass")
        if not self._breaker.allow():
            self.stats.bypassed += 1
            return CacheLookup("bypass")
        try:
            response = self._client.get_item(
                TableName=self.table_name,
                Key={PK_ATTRIBUTE: {"S": key}},
                ProjectionExpression="#v, #t",
                ExpressionAttributeNames={"#v": PAYLOAD_ATTRIBUTE, "#t": TTL_ATTRIBUTE},
            )
            item = response.get("Item")
            payload = None
            # TTL deletion is lazy (up to days late), so expiry is enforced on read too.
            if item is not None and float(item[TTL_ATTRIBUTE]["N"]) > self._clock():
                payload = zlib.decompress(item[PAYLOAD_ATTRIBUTE]["B"])
        except Exception as exc:  # any failure (network, throttling, corrupt item) → serve uncached
            self._record_failure("get", exc)
            return CacheLookup("error")
        self._breaker.success()
        if payload is None:
            self.stats.misses += 1
            return CacheLookup("miss")
        self.stats.hits += 1
        return CacheLookup("hit", payload)

    def put(self, key: str, payload: bytes, *, shared: bool = True) -> CacheStatus:
        if not shared:
            return "bypass"
        compressed = zlib.compress(payload, 6)
        if len(compressed) > self._max_item_bytes:
            self.stats.too_large += 1
            logger.info("cache item too large, not stored", extra={"bytes": len(compressed), "key": key})
            return "miss"
        if not self._breaker.allow():
            self.stats.bypassed += 1
            return "bypass"
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    PK_ATTRIBUTE: {"S": key},
                    PAYLOAD_ATTRIBUTE: {"B": compressed},
                    TTL_ATTRIBUTE: {"N": str(int(self._clock()) + self._ttl)},
                },
            )
        except Exception as exc:  # see get(): a cache write failure must not fail the request
            self._record_failure("put", exc)
            return "error"
        self._breaker.success()
        self.stats.stored += 1
        return "miss"

    def _record_failure(self, operation: str, exc: Exception) -> None:
        self.stats.errors += 1
        self._breaker.failure()
        logger.warning(
            "cache %s failed; serving uncached",
            operation,
            extra={"error": type(exc).__name__, "breaker_open": self._breaker.is_open},
        )


class TieredCache:
    """A container-local LRU (L1) mirroring a shared DynamoDB cache (L2), written behind the response.

    - `get`: L1 (including writes still in flight), else one GetItem; an L2 hit is kept in L1.
    - `put`: queued for a single background thread and returned at once, so the user never waits
      for PutItem. The entry is served from the in-flight map until the write completes, then
      from L1 if it succeeded; a failed write leaves nothing behind, so L1 only ever serves what
      the shared table holds (or is about to), and an outage means plain misses.
    - Lambda freezes the container between invocations: a write still running when the handler
      returns simply completes when the container thaws for its next invocation, or is lost if the
      container is reclaimed. For a cache that is acceptable (the next request recomputes).
    - At most `max_pending` writes wait; beyond that new ones are dropped (counted), never queued
      without bound.
    - `shared=False` (routes whose computation is cheaper than a GetItem, see `api.deps`): L1 only,
      both ways; such entries never touch the table, so they cost no round trip and no write.
    """

    def __init__(self, shared: DynamoDBCache, local: LocalLRUCache, max_pending: int = 64) -> None:
        self.shared = shared
        self.local = local
        self.stats = CacheStats()
        self._max_pending = max_pending
        self._pending: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-write")
        self._futures: set[Future[None]] = set()

    @property
    def kind(self) -> str:
        return self.shared.kind

    def get(self, key: str, *, shared: bool = True) -> CacheLookup:
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None:
            self.stats.hits += 1
            return CacheLookup("hit", pending)
        local = self.local.get(key)
        if local.status == "hit":
            self.stats.hits += 1
            return local
        if not shared:
            self.stats.misses += 1
            return local
        lookup = self.shared.get(key)
        if lookup.status == "hit" and lookup.payload is not None:
            self.local.put(key, lookup.payload)
            self.stats.hits += 1
        elif lookup.status == "miss":
            self.stats.misses += 1
        elif lookup.status == "error":
            self.stats.errors += 1
        else:
            self.stats.bypassed += 1
        return lookup

    def put(self, key: str, payload: bytes, *, shared: bool = True) -> CacheStatus:
        if not shared:
            self.stats.stored += 1
            return self.local.put(key, payload)
        with self._lock:
            if key in self._pending:
                return "miss"
            if len(self._pending) >= self._max_pending:
                self.stats.dropped += 1
                return "bypass"
            self._pending[key] = payload
        future = self._writer.submit(self._write, key, payload)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return "miss"

    def renew(self) -> None:
        """Both tiers renewed: the local entries dropped, the table's client rebuilt on next use."""
        self.local.renew()
        self.shared.renew()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait for writes in flight (tests, benchmarks, shutdown); True when none is left."""
        deadline = time.monotonic() + timeout
        for future in list(self._futures):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                future.result(timeout=remaining)
            except TimeoutError:
                return False
        return not self._futures

    def _write(self, key: str, payload: bytes) -> None:
        status: CacheStatus = "error"
        try:
            status = self.shared.put(key, payload)
        finally:
            with self._lock:
                self._pending.pop(key, None)
                # Only what the shared table now holds is mirrored locally.
                if status == "miss":
                    self.local.put(key, payload)
                    self.stats.stored += 1


def make_cache(
    table_name: str | None,
    *,
    ttl_seconds: int,
    local_size: int,
    timeout_seconds: float = 0.25,
    max_item_bytes: int = 100_000,
    endpoint_url: str | None = None,
) -> ResponseCache:
    """DynamoDB (behind a local LRU mirror when `local_size` > 0) when a table is configured, else an
    in-process LRU (or nothing when size is 0)."""
    if table_name:
        shared = DynamoDBCache(
            table_name,
            ttl_seconds=ttl_seconds,
            timeout_seconds=timeout_seconds,
            max_item_bytes=max_item_bytes,
            endpoint_url=endpoint_url,
        )
        return TieredCache(shared, LocalLRUCache(local_size, ttl_seconds)) if local_size > 0 else shared
    if local_size > 0:
        return LocalLRUCache(local_size, ttl_seconds)
    return NullCache()
