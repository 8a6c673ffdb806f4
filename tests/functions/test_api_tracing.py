"""X-Ray tracing of the API function, as Lambda runs it with `Tracing: Active`.

Each cold start runs in its own interpreter: X-Ray patches botocore process-wide, which would leak
into every other test's moto calls.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from handler_support import REPO

# Imports the handler as Lambda does (tracing on), reports what init imported, then serves a /search
# whose cache lookup goes to DynamoDB.
_COLD_START = """
import json, sys
from handler_support import API_HANDLER, LambdaContextStub, import_fresh, invoke, load_event
module = import_fresh(API_HANDLER, "api_handler")
botocore_at_init = "botocore.client" in sys.modules
status, _, _ = invoke(module, load_event("search"))
import botocore.session, botocore.client
print(json.dumps({"botocore_at_init": botocore_at_init, "status": status,
                  "patched": bool(getattr(botocore.client, "_xray_enabled", False))}))
"""


def _segments(sock: socket.socket) -> list[dict]:
    """Every segment document the function sent to the X-Ray daemon address (header line, then JSON)."""
    documents = []
    sock.settimeout(2.0)
    try:
        while True:
            datagram = sock.recv(65536).decode("utf-8")
            documents.append(json.loads(datagram.split("\n", 1)[1]))
            sock.settimeout(0.2)
    except TimeoutError:
        return documents


def test_dynamodb_calls_are_traced_though_botocore_is_patched_after_init(
    bundle_dir: Path, moto_endpoint: str, cache_table: str
) -> None:
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "CACHE_", "AWS_SAM", "_X_AMZN", "AWS_XRAY"))
    }
    env |= {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "layers" / "shared" / "python")]),
        "ARTIFACTS_DIR": str(bundle_dir),
        "CACHE_TABLE_NAME": cache_table,
        "CACHE_ENDPOINT_URL": moto_endpoint,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / "api"),
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COLD_START],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        segments = _segments(daemon)
    finally:
        daemon.close()

    assert report == {"botocore_at_init": False, "status": 200, "patched": True}
    names = {segment.get("name") for segment in segments}
    assert "## handler" in names, names
    dynamodb = [s for s in segments if s.get("name") == "dynamodb"]
    assert dynamodb, f"no DynamoDB subsegment among {sorted(n for n in names if n)}"
    assert {s.get("aws", {}).get("operation") for s in dynamodb} & {"GetItem", "PutItem"}
