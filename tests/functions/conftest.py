"""Fixtures for the API handler tests: a real tiny artifact bundle, a moto DynamoDB server, the handler.

Everything is real: a toy two-output ONNX encoder (so `OnnxEncoder` and `/search` run their real
code), hnswlib `VectorIndex`es over its embeddings, the V2 teacher's neighbour lists for the tiny
catalogue, `load_bundle` with checksum verification, and DynamoDB served by moto over HTTP.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pytest
import yaml
from anime_recommender.artifacts import write_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import EncoderConfig, OnnxEncoder
from anime_recommender.index import VectorIndex
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
HANDLER = REPO / "functions" / "api" / "app.py"
TEMPLATE = REPO / "template.yaml"
V3_DIM, V4_DIM = 16, 8


def _tiny_model(model_dir: Path, texts: list[str]) -> Path:
    """A deterministic toy encoder (embedding lookup, masked mean → v3, projection → v4) as ONNX."""
    import onnx
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    model_dir.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in t.lower().split()} | set("space bounty hunters jazz".split()))
    vocab = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(model_dir / "tokenizer.json"))
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(vocab), V3_DIM)).astype(np.float32)
    proj = rng.standard_normal((V3_DIM, V4_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tok"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "one"], ["safe"]),
        helper.make_node("Div", ["summed", "safe"], ["v3"]),
        helper.make_node("MatMul", ["v3", "proj"], ["v4"]),
    ]
    inits = [
        helper.make_tensor("emb", TensorProto.FLOAT, emb.shape, emb.ravel().tolist()),
        helper.make_tensor("proj", TensorProto.FLOAT, proj.shape, proj.ravel().tolist()),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "l"]),
        ],
        [
            helper.make_tensor_value_info("v4", TensorProto.FLOAT, ["b", V4_DIM]),
            helper.make_tensor_value_info("v3", TensorProto.FLOAT, ["b", V3_DIM]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(model_dir / "model.onnx"))
    EncoderConfig(
        outputs={"v4": V4_DIM, "v3": V3_DIM},
        max_length=64,
        base_model="tiny-test",
        quantization={"mode": "none"},
    ).save(model_dir / "encoder.json")
    return model_dir


@pytest.fixture(scope="session")
def bundle_template(tiny_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete, checksummed artifact bundle for the tiny catalogue (built once per session)."""
    root = tmp_path_factory.mktemp("api-bundle")
    model_dir = _tiny_model(root / "model", [anime_text(a) for a in tiny_catalogue])
    encoder = OnnxEncoder.load(model_dir, threads=1)
    vectors = encoder.encode([anime_text(a) for a in tiny_catalogue])
    indexes = {
        space: VectorIndex.build(tiny_catalogue.ids, vectors[space], M=8, ef_construction=50, ef=32)
        for space in ("v4", "v3")
    }
    neighbours = top_k_neighbours(TeacherFeatures.from_catalogue(tiny_catalogue), k=20)
    directory = root / "anime-artifacts"
    write_bundle(
        directory, catalogue=tiny_catalogue, neighbours=neighbours, model_dir=model_dir, indexes=indexes
    )
    return directory


@pytest.fixture
def bundle_dir(bundle_template: Path, tmp_path: Path) -> Path:
    """A writable copy of the bundle (tests corrupt it to force fallback tiers)."""
    return Path(shutil.copytree(bundle_template, tmp_path / "anime-artifacts"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """DynamoDB served by moto in server mode over real HTTP on a free local port."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML, keeping intrinsic functions (!Ref, !GetAtt, ...) as plain values."""


def _cfn_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def cache_table_schema() -> dict[str, Any]:
    """Key schema, attribute definitions and TTL attribute of template.yaml's CacheTable."""
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    props = template["Resources"]["CacheTable"]["Properties"]
    return {
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "ttl": props["TimeToLiveSpecification"]["AttributeName"],
    }


@pytest.fixture
def cache_table(moto_endpoint: str) -> str:
    """A fresh cache table on the moto server, built from template.yaml's own key schema."""
    schema = cache_table_schema()
    name = f"cache-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_table(
        TableName=name,
        KeySchema=schema["KeySchema"],
        AttributeDefinitions=schema["AttributeDefinitions"],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": schema["ttl"]}
    )
    return name


HandlerFactory = Callable[..., ModuleType]


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[HandlerFactory]:
    """`load_handler(artifacts_dir, **env)`: import functions/api/app.py fresh, as a cold start would."""
    loaded: list[str] = []

    def _load(artifacts_dir: Path, **env: str) -> ModuleType:
        monkeypatch.setenv("ARTIFACTS_DIR", str(artifacts_dir))
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "AnimeRecommenderTest")
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        for key in ("CACHE_TABLE_NAME", "CACHE_ENDPOINT_URL", "CORS_ALLOW_ORIGINS"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        name = f"api_handler_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, HANDLER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in loaded:
        sys.modules.pop(name, None)


class LambdaContextStub:
    """The attributes powertools reads from a Lambda context (a value object, not a mock)."""

    function_name = "ApiFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/ApiFunction"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event from events/ (the same files `sam local invoke -e` uses)."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return event


def invoke(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Call the real handler; returns status, lower-cased headers and the decoded JSON body."""
    response = module.handler(event, LambdaContextStub())
    headers = {k.lower(): v for k, v in response["headers"].items()}
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    return response["statusCode"], headers, json.loads(body) if body else None


Invoke = Callable[[ModuleType, "str | dict[str, Any]"], tuple[int, dict[str, str], Any]]


@pytest.fixture
def call() -> Invoke:
    """`call(handler_module, event_name_or_dict)` → (status, headers, JSON body) via the real handler."""

    def _call(module: ModuleType, event: str | dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        return invoke(module, load_event(event) if isinstance(event, str) else event)

    return _call


@pytest.fixture
def event() -> Callable[[str], dict[str, Any]]:
    """`event(name)`: a fresh copy of an events/ file, for tests that tweak it."""
    return load_event
