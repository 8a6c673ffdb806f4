"""Invariants of template.yaml a deployer relies on, plus `sam validate --lint` and checkov.

The external tools come from the tools venv (`.work/tools-venv`, see README "Deploy") or PATH;
without them those checks skip and say why.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from anime_pipeline.deploy_check import (
    DEFAULT_TEMPLATE,
    load_cfn_template,
    measure_sam_build,
    table_key_schema,
)
from anime_pipeline.paths import REPO_ROOT, BuildPaths
from anime_recommender.delta.settings import DeltaSettings

TOOLS_BIN = REPO_ROOT / ".work" / "tools-venv" / "bin"
FUNCTIONS = ("ApiFunction", "DeltaUpdateFunction")
# What the API reads from its environment (the API issue's settings).
API_ENV = {
    "ARTIFACTS_DIR",
    "ARTIFACTS_BUCKET",
    "ARTIFACTS_POINTER_KEY",
    "POINTER_CHECK_SECONDS",
    "CACHE_TABLE_NAME",
    "CACHE_TTL_SECONDS",
    "CORS_ALLOW_ORIGINS",
    "ONNX_THREADS",
    "LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
}


def _tool(name: str) -> str | None:
    candidate = TOOLS_BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn_template(DEFAULT_TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def _props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = resources[logical_id]["Properties"]
    return props


def _function_env(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """Globals variables merged with the function's own, as SAM does."""
    env = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    env.update(_props(template["Resources"], logical_id).get("Environment", {}).get("Variables", {}))
    return env


def _statements(resources: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in _props(resources, logical_id)["Policies"]:
        # Inline statements only: SAM policy templates and managed policies hide their actions.
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"{logical_id}: non-inline policy {policy!r}"
        )
        statements.extend(policy["Statement"])
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------ functions


def test_functions_run_python312_with_tracing(template: dict[str, Any], resources: dict[str, Any]) -> None:
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12"
    assert glob["Tracing"] == "Active"
    for fn in FUNCTIONS:
        assert _props(resources, fn).get("Runtime", glob["Runtime"]) == "python3.12"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_function_handler_points_to_a_module_level_handler(
    resources: dict[str, Any], logical_id: str
) -> None:
    # Given the function's CodeUri and Handler "module.attr"
    props = _props(resources, logical_id)
    code_dir = REPO_ROOT / props["CodeUri"]
    module, attr = props["Handler"].rsplit(".", 1)
    source = code_dir / f"{module.replace('.', '/')}.py"
    # Then the file exists and binds `attr` at module level (a def or an assignment such as
    # `handler = Mangum(app, lifespan="off")`). Parsed, not imported: importing would load the
    # artifacts; the events tests call the real handler.
    assert source.is_file(), f"{logical_id}: {source} missing"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    bound = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            bound.add(node.target.id)
    assert attr in bound, f"{source} defines no module-level `{attr}`"


def test_every_function_gets_all_three_layers(template: dict[str, Any], resources: dict[str, Any]) -> None:
    layers = template["Globals"]["Function"]["Layers"]
    assert {ref["Ref"] for ref in layers} == {"DependenciesLayer", "SharedLayer", "ArtifactsLayer"}
    for fn in FUNCTIONS:
        assert "Layers" not in _props(resources, fn), "a function-level Layers list hides the Globals ones"


def test_api_function_environment_has_every_setting(template: dict[str, Any]) -> None:
    env = _function_env(template, "ApiFunction")
    assert API_ENV <= env.keys(), f"missing: {sorted(API_ENV - env.keys())}"
    # The artifacts layer's folder is what the code reads by default.
    assert env["ARTIFACTS_DIR"] == "/opt/anime-artifacts"


def test_api_function_is_routed_from_the_http_api(resources: dict[str, Any]) -> None:
    events = _props(resources, "ApiFunction")["Events"]
    (event,) = events.values()
    assert event["Type"] == "HttpApi"
    assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    assert event["Properties"]["PayloadFormatVersion"] == "2.0"  # what Mangum's HTTP API v2 handler reads


def test_delta_update_runs_on_a_configurable_schedule_with_a_dead_letter_queue(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    props = _props(resources, "DeltaUpdateFunction")
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "rate(7 days)"
    assert props["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": ["DeltaUpdateDeadLetterQueue", "Arn"]}
    # Enough time and /tmp for a re-embed and an index rewrite.
    assert props["Timeout"] == 900
    assert props["EphemeralStorage"]["Size"] >= 2048


def test_delta_update_takes_story_text_through_one_parameter(template: dict[str, Any]) -> None:
    # Given the delta function's environment and the template's parameters
    env = _function_env(template, "DeltaUpdateFunction")
    parameters = template["Parameters"]
    # Then the story-text file comes from StorytextSourceUrl, the older SynopsesSourceUrl still reaches
    # the function (read when the new one is empty), and StorytextAdds is a true|false switch
    assert env["STORYTEXT_SOURCE_URL"] == {"Ref": "StorytextSourceUrl"}
    assert env["SYNOPSES_SOURCE_URL"] == {"Ref": "SynopsesSourceUrl"}
    assert env["STORYTEXT_ADDS"] == {"Ref": "StorytextAdds"}
    assert parameters["StorytextSourceUrl"]["Default"] == parameters["SynopsesSourceUrl"]["Default"] == ""
    assert "StorytextSourceUrl is empty" in parameters["SynopsesSourceUrl"]["Description"]
    assert "Supersedes SynopsesSourceUrl" in parameters["StorytextSourceUrl"]["Description"]
    assert parameters["StorytextAdds"]["AllowedValues"] == ["true", "false"]
    assert parameters["StorytextAdds"]["Default"] == "false"
    # ... each of them a setting the function reads
    names = {name.upper() for name in DeltaSettings.model_fields}
    assert {"STORYTEXT_SOURCE_URL", "SYNOPSES_SOURCE_URL", "STORYTEXT_ADDS"} <= names


# ------------------------------------------------------------------------------------ layers


def test_dependencies_layer_is_built_from_requirements(resources: dict[str, Any]) -> None:
    layer = resources["DependenciesLayer"]
    content = REPO_ROOT / layer["Properties"]["ContentUri"]
    # A makefile build copying what `anime-build layers` installed (python3.12 wheels) and trimmed.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert "build-DependenciesLayer:" in (content / "Makefile").read_text(encoding="utf-8")
    requirements = content / "requirements.txt"
    names = {
        re.split(r"[<>=\[ ;]", line.strip(), maxsplit=1)[0].lower()
        for line in requirements.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    # What the layer's code imports at run time; torch must never be in it.
    assert {"numpy", "onnxruntime", "tokenizers", "chroma-hnswlib", "fastapi", "mangum"} <= names
    assert not names & {"torch", "transformers", "optimum", "sentence-transformers"}


def test_shared_layer_holds_the_domain_package(resources: dict[str, Any]) -> None:
    content = REPO_ROOT / _props(resources, "SharedLayer")["ContentUri"]
    # Lambda puts /opt/python on sys.path, so the package must sit under python/.
    assert (content / "python" / "anime_recommender" / "__init__.py").is_file()


def test_artifacts_layer_is_where_the_build_writes_it(
    template: dict[str, Any], resources: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANIME_ARTIFACTS_LAYER_DIR", raising=False)
    paths = BuildPaths.from_env()
    content = (REPO_ROOT / _props(resources, "ArtifactsLayer")["ContentUri"]).resolve()
    # `anime-build layers` fills this folder; the layer unzips under /opt, so its subfolder's name
    # must be the last part of ARTIFACTS_DIR.
    assert content == paths.artifacts_layer.resolve()
    env_dir = _function_env(template, "ApiFunction")["ARTIFACTS_DIR"]
    assert Path(env_dir).parent == Path("/opt")
    assert paths.artifacts_dir.name == Path(env_dir).name


# ------------------------------------------------------------------------------------ data


def test_cache_table_key_schema_is_what_the_cache_code_uses(resources: dict[str, Any]) -> None:
    schema = table_key_schema(DEFAULT_TEMPLATE)
    assert schema["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert schema["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert schema["BillingMode"] == "PAY_PER_REQUEST"
    assert schema["ttl_attribute"] == "expires_at"
    props = _props(resources, "CacheTable")
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_artifacts_bucket_is_versioned_private_encrypted_and_tls_only(resources: dict[str, Any]) -> None:
    bucket = resources["ArtifactsBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"  # the versions are the backup
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in rule for rule in rules)
    (deny,) = _props(resources, "ArtifactsBucketPolicy")["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# ------------------------------------------------------------------------------------ least privilege


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_function_policies_name_actions_and_resources(resources: dict[str, Any], logical_id: str) -> None:
    for statement in _statements(resources, logical_id):
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{logical_id}: wildcard action {action}"
        for resource in _as_list(statement["Resource"]):
            assert resource != "*", f"{logical_id}: statement {statement.get('Sid')} on every resource"


def _actions(resources: dict[str, Any], logical_id: str) -> set[str]:
    return {a for s in _statements(resources, logical_id) for a in _as_list(s["Action"])}


def test_api_function_may_only_read_artifacts_and_get_put_the_cache(resources: dict[str, Any]) -> None:
    assert _actions(resources, "ApiFunction") == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "s3:GetObject",
        "s3:ListBucket",  # so a missing pointer reads as 404, not 403
    }
    for statement in _statements(resources, "ApiFunction"):
        for resource in _as_list(statement["Resource"]):
            if statement["Action"] == ["s3:GetObject"]:
                # Object ARNs under the bucket's pointer key or version prefix, not the whole bucket.
                template_str = resource["Fn::Sub"]
                assert template_str.startswith("${ArtifactsBucket.Arn}/")
                assert template_str not in {"${ArtifactsBucket.Arn}/*", "${ArtifactsBucket.Arn}/"}
            elif statement["Action"] == ["s3:ListBucket"]:
                assert resource == {"Fn::GetAtt": ["ArtifactsBucket", "Arn"]}
            else:
                assert resource == {"Fn::GetAtt": ["CacheTable", "Arn"]}


def test_delta_update_function_touches_only_the_artifacts_bucket(resources: dict[str, Any]) -> None:
    assert _actions(resources, "DeltaUpdateFunction") == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    for statement in _statements(resources, "DeltaUpdateFunction"):
        for resource in _as_list(statement["Resource"]):
            text = json.dumps(resource)
            assert "ArtifactsBucket" in text
            assert "${ArtifactsBucket.Arn}/*" not in text, "write access to the whole bucket"


# ------------------------------------------------------------------------------------ monitoring


def test_alarms_cover_5xx_latency_throttles_and_delta_failures(resources: dict[str, Any]) -> None:
    alarms = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {p.get("MetricName") for p in alarms.values()}
    assert {"5xx", "Latency", "Throttles", "Errors", "CatalogueRefused"} <= metrics
    latency = next(p for p in alarms.values() if p.get("MetricName") == "Latency")
    assert latency["ExtendedStatistic"] == "p95"
    assert latency["Threshold"] == {"Ref": "LatencySlaMs"}
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_dashboard_body_is_valid_json_after_substitution(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    body = _props(resources, "Dashboard")["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    declared = set(template["Parameters"]) | set(resources)
    for name in names:
        base = name.split(".", 1)[0]
        assert base in declared or base.startswith("AWS::"), f"dashboard refers to unknown {name}"
    # Substitute plausible values: numbers for number parameters, strings elsewhere.
    numeric = {p for p, d in template["Parameters"].items() if d["Type"] == "Number"}
    rendered = re.sub(r"\$\{([^}]+)\}", lambda m: "300" if m.group(1) in numeric else "x", body)
    widgets = json.loads(rendered)["widgets"]
    assert any("powertools" in w["properties"].get("title", "") for w in widgets)


# ------------------------------------------------------------------------------------ external tools


def _run_tool(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_sam_validate_lint_passes() -> None:
    sam = _tool("sam")
    if sam is None:
        pytest.skip("`sam` not installed (see README: .work/tools-venv with aws-sam-cli)")
    result = _run_tool([sam, "validate", "--lint", "--template-file", str(DEFAULT_TEMPLATE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_checkov_finds_no_unsuppressed_issue() -> None:
    checkov = _tool("checkov")
    if checkov is None:
        pytest.skip("`checkov` not installed (see README: .work/tools-venv with checkov)")
    result = _run_tool(
        [checkov, "-f", str(DEFAULT_TEMPLATE), "--framework", "cloudformation", "--quiet", "--compact"]
        + ["--config-file", str(REPO_ROOT / "infra" / "checkov.yaml")]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_build_output_fits_lambdas_size_limit(tmp_path: Path) -> None:
    sam = _tool("sam")
    if sam is None:
        pytest.skip("`sam` not installed (see README: .work/tools-venv with aws-sam-cli)")
    if not (REPO_ROOT / "layers" / "dependencies" / "python" / "numpy").is_dir():
        pytest.skip("layers/dependencies/python not built: run `anime-build layers`")
    # When sam builds the template (offline: the dependencies layer is copied, not pip-installed)
    build_dir = tmp_path / "build"
    result = _run_tool(
        [sam, "build", "--template-file", str(DEFAULT_TEMPLATE), "--build-dir", str(build_dir)]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Then every function plus its layers fits in 262,144,000 bytes unzipped (the artifacts layer is
    # measured from its source folder, so this part needs `anime-build layers` to have run).
    if not (REPO_ROOT / "layers" / "artifacts" / "anime-artifacts").is_dir():
        pytest.skip("sam build passed; layers/artifacts not built yet, so the size check cannot run")
    for function in measure_sam_build(build_dir):
        assert function.within_limit, f"{function.function}: {function.total:,} bytes unzipped"


def test_the_arm64_variant_changes_every_architecture_and_nothing_else(tmp_path: Path) -> None:
    from anime_pipeline.deploy_check import load_cfn_template, write_arch_template

    # A copy of the checkout's template and dependencies-layer Makefile: the variant writes beside them.
    template = tmp_path / "template.yaml"
    shutil.copyfile(REPO_ROOT / "template.yaml", template)
    (tmp_path / "layers" / "dependencies").mkdir(parents=True)
    shutil.copyfile(
        REPO_ROOT / "layers" / "dependencies" / "Makefile", tmp_path / "layers" / "dependencies" / "Makefile"
    )
    variant = load_cfn_template(write_arch_template("arm64", tmp_path / "template-arm64.yaml", template))
    original = load_cfn_template(REPO_ROOT / "template.yaml")
    assert variant["Parameters"]["Architecture"]["Default"] == "arm64"
    layers = [r for r in variant["Resources"].values() if r["Type"] == "AWS::Serverless::LayerVersion"]
    assert layers and all(r["Properties"]["CompatibleArchitectures"] == ["arm64"] for r in layers)
    # Its dependencies layer is the arm64 build (`make layers-arm64`), with the layer's Makefile beside it
    dependencies = variant["Resources"]["DependenciesLayer"]["Properties"]["ContentUri"]
    assert dependencies == "layers/dependencies-arm64/"
    assert (tmp_path / dependencies / "Makefile").is_file()
    assert any(r.get("Metadata", {}).get("BuildArchitecture") == "arm64" for r in layers)
    assert "x86_64" not in json.dumps([variant["Resources"], variant["Globals"]])
    assert set(variant["Resources"]) == set(original["Resources"])
