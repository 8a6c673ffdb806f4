"""Latency of the API through the real Lambda handler (event in → response out).

Measures p50/p95 for by-id similar (uncached), free-text search (uncached), a cache hit against
DynamoDB served by moto in server mode over HTTP, and the cold-start init time. A measurement,
not a test: `python -m anime_pipeline.api_bench --artifacts DIR` prints one JSON document.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLER = REPO_ROOT / "functions" / "api" / "app.py"
EVENTS = REPO_ROOT / "events"


class _Context:
    function_name = "ApiFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/ApiFunction"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "runs": len(ordered),
    }


def _load_handler(env: dict[str, str]) -> tuple[ModuleType, float]:
    os.environ.update(env)
    started = time.perf_counter()
    spec = importlib.util.spec_from_file_location(f"api_bench_{len(sys.modules)}", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, (time.perf_counter() - started) * 1000.0


def _time(module: ModuleType, event: dict[str, Any], runs: int, vary: str | None = None) -> list[float]:
    samples = []
    for i in range(runs):
        ev = copy.deepcopy(event)
        if vary == "k":
            # A different k per run: same work, distinct cache key, so every call is a miss.
            ev["rawQueryString"] = ev["rawQueryString"].replace("k=5", f"k={5 + i % 90}")
        started = time.perf_counter()
        response = module.handler(ev, _Context())
        samples.append((time.perf_counter() - started) * 1000.0)
        if response["statusCode"] != 200:
            raise RuntimeError(f"benchmark request failed: {response['statusCode']} {response.get('body')}")
    return samples


def measure(artifacts: Path, runs: int = 200) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready result."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").create_table(
            TableName="bench-cache",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        env = {
            "ARTIFACTS_DIR": str(artifacts),
            "CACHE_TABLE_NAME": "bench-cache",
            "CACHE_ENDPOINT_URL": endpoint,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
        module, import_ms = _load_handler(env)
        similar = json.loads((EVENTS / "similar.json").read_text())
        search = json.loads((EVENTS / "search.json").read_text())
        _time(module, similar, 10, vary="k")  # warm-up
        result = {
            "tier": module.serving.backend.info.tier,
            "catalogue_size": len(module.serving.backend.catalogue),
            "init_ms": round(module.app.state.api.init_ms, 1),
            "handler_import_ms": round(import_ms, 1),
            "similar_uncached": _percentiles(_time(module, similar, runs, vary="k")),
            "search_uncached": _percentiles(_time(module, search, runs, vary="k")),
        }
        _time(module, similar, 1)  # store it
        result["similar_cache_hit_moto"] = _percentiles(_time(module, similar, runs))
        return result
    finally:
        server.stop()


def main() -> int:
    """CLI entry: print the benchmark JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, required=True, help="artifact bundle directory")
    parser.add_argument("--runs", type=int, default=200, help="timed requests per route (after warm-up)")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(measure(args.artifacts, args.runs), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
