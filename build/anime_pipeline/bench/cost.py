"""What a million requests cost: the bench's measured durations priced with AWS list prices.

`cost_report` takes the API section (per-route handler durations, init), the load section (the mix's
route shares, its cache hit rate, the server's peak RSS) and the measured log bytes per request, and
prices one million requests of the bench's mix on the deployed configuration (template.yaml's
`ApiMemorySize`, x86_64). Every input, price and assumption is in the returned document, so the total
can be re-derived by hand; the README's cost table is this document.

Prices are us-east-1 list prices as of `PRICE_DATE` (AWS pricing pages; check them before budgeting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PRICE_DATE = "2025-08-01"
PRICES_USD: dict[str, float] = {
    # AWS Lambda, x86_64 (arm64: 0.0000133334 per GB-second); init is billed as duration since 2025-08-01.
    "lambda_gb_second_x86_64": 0.0000166667,
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_per_million_requests": 0.20,
    # SnapStart for Python: the cached snapshot per GB-second while the version is active (at least
    # 3 hours), and each restore per GB restored.
    "snapstart_cache_gb_second": 0.0000015046,
    "snapstart_restore_per_gb": 0.0001397998,
    # API Gateway HTTP API, first 300 million a month (each 512 KB counts as one request).
    "http_api_per_million_requests": 1.00,
    # DynamoDB on-demand: per million read request units (4 KB, eventually consistent = 0.5) and write
    # request units (1 KB).
    "dynamodb_per_million_rru": 0.125,
    "dynamodb_per_million_wru": 0.625,
    # S3 Standard GET (the pointer checks) per 1,000 requests.
    "s3_get_per_thousand": 0.0004,
    # CloudWatch Logs ingestion (standard class) per GB.
    "cloudwatch_logs_per_gb": 0.50,
}
SECONDS_PER_MONTH = 30 * 24 * 3600
# Routes whose responses go through the shared DynamoDB cache tier (`api.deps.SHARED_CACHE_ROUTES`).
SHARED_CACHE_ROUTES = ("search", "recommendations")


def _value(node: Any) -> float | None:
    if isinstance(node, dict):
        node = node.get("value")
    return float(node) if isinstance(node, int | float) else None


def route_durations_ms(api: dict[str, Any], hit_rate: float) -> dict[str, float]:
    """Each route's expected handler duration: uncached p50 at the miss rate, cached p50 at the hit rate."""
    out: dict[str, float] = {}
    for route, states in api.get("routes", {}).items():
        uncached = _value(states.get("uncached", {}).get("p50"))
        cached = _value(states.get("cached", {}).get("p50"))
        if uncached is None:
            continue
        out[route] = uncached if cached is None else hit_rate * cached + (1 - hit_rate) * uncached
    return out


@dataclass(frozen=True)
class Traffic:
    """What the priced requests look like, besides their durations.

    Args:
        hit_rate: the share of cached routes' requests answered from the cache (load section).
        log_bytes_per_request: CloudWatch Logs bytes a request writes (EMF metrics and log lines).
        cached_item_bytes: mean compressed size of a cached response (DynamoDB item).
        cold_start_share: requests that land on a new container (an assumption, stated in the output).
        containers: warm containers checking the pointer once a minute each (S3 GETs).
        requests: how many requests are priced.
    """

    hit_rate: float
    log_bytes_per_request: float
    cached_item_bytes: float
    cold_start_share: float = 0.01
    containers: int = 1
    requests: int = 1_000_000


def billed_ms(durations: dict[str, float], shares: dict[str, float]) -> float:
    """The mix's mean billed duration: Lambda bills each invocation rounded up to the millisecond."""
    total = sum(shares.values()) or 1.0
    return sum(math.ceil(durations[r]) * s for r, s in shares.items() if r in durations) / total


def cost_report(
    api: dict[str, Any], mix_shares: dict[str, float], traffic: Traffic, memory_mb: int = 1769
) -> dict[str, Any]:
    """The cost of `traffic.requests` requests of the mix (see the module docstring); JSON-ready.

    Args:
        api: the bench's API section (`routes`, `init`).
        mix_shares: route → share of the mix's requests (summing to 1).
        traffic: hit rate, log and item sizes, the cold-start assumption.
        memory_mb: the function's memory (template.yaml's ApiMemorySize).
    """
    hit_rate, requests = traffic.hit_rate, traffic.requests
    cold_start_share, containers = traffic.cold_start_share, traffic.containers
    log_bytes_per_request, cached_item_bytes = traffic.log_bytes_per_request, traffic.cached_item_bytes
    p = PRICES_USD
    gb = memory_mb / 1024
    durations = route_durations_ms(api, hit_rate)
    shares = {route: share for route, share in mix_shares.items() if route in durations}
    total_share = sum(shares.values()) or 1.0
    mean_ms = sum(durations[r] * s for r, s in shares.items()) / total_share
    mean_billed_ms = billed_ms(durations, shares)
    init_ms = _value(api.get("init")) or 0.0
    gb_s_per_request = {r: round(gb * math.ceil(d) / 1000, 8) for r, d in durations.items()}
    invocation_gb_s = requests * gb * mean_billed_ms / 1000
    colds = requests * cold_start_share
    init_gb_s = colds * gb * init_ms / 1000
    cached_requests = requests * sum(s for r, s in shares.items() if r in SHARED_CACHE_ROUTES) / total_share
    rru = cached_requests * 0.5 * max(1, math.ceil(cached_item_bytes / 4096))
    wru = cached_requests * (1 - hit_rate) * max(1, math.ceil(cached_item_bytes / 1024))
    pointer_gets = min(requests, containers * SECONDS_PER_MONTH / 60)
    parts = {
        "lambda_requests": requests / 1e6 * p["lambda_per_million_requests"],
        "lambda_duration": invocation_gb_s * p["lambda_gb_second_x86_64"],
        "lambda_init_without_snapstart": init_gb_s * p["lambda_gb_second_x86_64"],
        "http_api": requests / 1e6 * p["http_api_per_million_requests"],
        "dynamodb_reads": rru / 1e6 * p["dynamodb_per_million_rru"],
        "dynamodb_writes": wru / 1e6 * p["dynamodb_per_million_wru"],
        "s3_pointer_gets": pointer_gets / 1000 * p["s3_get_per_thousand"],
        "cloudwatch_logs": requests * log_bytes_per_request / 1e9 * p["cloudwatch_logs_per_gb"],
    }
    base = sum(v for k, v in parts.items() if k != "lambda_init_without_snapstart")
    snapstart = {
        "restores": colds * gb * p["snapstart_restore_per_gb"],
        "cache_per_month": gb * SECONDS_PER_MONTH * p["snapstart_cache_gb_second"],
    }
    arm64_duration = (invocation_gb_s + init_gb_s) * p["lambda_gb_second_arm64"]
    without = base + parts["lambda_init_without_snapstart"]
    return {
        "price_date": PRICE_DATE,
        "region": "us-east-1",
        "prices_usd": p,
        "inputs": {
            "requests": requests,
            "memory_mb": memory_mb,
            "mix_shares": {r: round(s / total_share, 4) for r, s in shares.items()},
            "route_duration_ms": {r: round(d, 3) for r, d in durations.items()},
            "mean_duration_ms": round(mean_ms, 3),
            "mean_billed_ms": round(mean_billed_ms, 3),
            "init_ms": init_ms,
            "cache_hit_rate": round(hit_rate, 4),
            "cached_item_bytes": round(cached_item_bytes, 1),
            "log_bytes_per_request": round(log_bytes_per_request, 1),
            "cold_start_share": cold_start_share,
            "pointer_check_containers": containers,
        },
        "gb_seconds_per_request": gb_s_per_request,
        "parts_usd": {k: round(v, 4) for k, v in parts.items()},
        "snapstart_usd": {k: round(v, 4) for k, v in snapstart.items()},
        "cost_per_million_requests_usd": round(without / requests * 1e6, 4),
        # Sensitivity: every request computed (no cache hit), the mean billed duration of the uncached routes.
        "cost_per_million_requests_no_cache_hits_usd": round(
            (
                without
                - parts["lambda_duration"]
                + requests
                * gb
                * billed_ms(route_durations_ms(api, 0.0), shares)
                / 1000
                * p["lambda_gb_second_x86_64"]
            )
            / requests
            * 1e6,
            4,
        ),
        "cost_per_million_requests_snapstart_usd": round((base + snapstart["restores"]) / requests * 1e6, 4),
        "arm64_estimate_cost_per_million_requests_usd": round(
            (without - parts["lambda_duration"] - parts["lambda_init_without_snapstart"] + arm64_duration)
            / requests
            * 1e6,
            4,
        ),
        "notes": [
            "Duration billed per invocation, rounded up to 1 ms; init billed at the stated cold-start share.",
            "With SnapStart, restores replace inits (restore charge per GB), plus the snapshot cache per "
            "month while the version is active (a fixed monthly cost, not per request).",
            "arm64 is an estimate: x86_64 durations priced at the arm64 GB-second rate.",
            "DynamoDB: every request of a shared-cache route reads one item (eventually consistent), "
            "each miss writes one.",
        ],
    }
