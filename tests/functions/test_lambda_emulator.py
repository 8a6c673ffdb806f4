"""Every events/ file through the functions as Lambda runs them: template.yaml's wiring, layers under
/opt, Python 3.12, the Runtime Interface Emulator (`anime-build invoke`'s machinery, no Docker).

One emulator per function serves all its events (a warm container after the first). The code layer
is this tree's, the artifacts layer is the tiny bundle, the dependencies layer is the built one
(`make build`) or else built once by the real `anime-build layers` code path into
.work/test-layers/ (pip downloads of Lambda's cp312 wheels; ~15 s with a warm pip cache, kept for
later runs). The delta update publishes to moto's S3 in server mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from handler_support import EVENTS_DIR, load_event
from test_api_routes import EVENT_STATUS  # the expected status of each API event, one table
from test_delta_update import EXPLICIT_BUCKET, manami_jsonl, weekly

from anime_pipeline.cli import main
from anime_pipeline.emulator import (
    EmulatorSetupError,
    Invocation,
    LambdaEmulator,
    find_rie,
    find_runtime_python,
)
from anime_pipeline.function_spec import (
    FunctionSpec,
    LayersNotBuiltError,
    assemble_layout,
    merge_tree,
    missing_requirements,
    read_function,
)
from anime_pipeline.layers import PYTHON_VERSION, REQUIREMENTS, LayersConfig, build_layers
from anime_pipeline.paths import REPO_ROOT
from anime_recommender.catalogue import Catalogue

BUILT_DEPENDENCIES = REPO_ROOT / "layers" / "dependencies" / "python"
TEST_LAYERS = REPO_ROOT / ".work" / "test-layers"
DELTA_EVENTS = ("delta_update_scheduled", "delta_update_explicit_catalogue")


def _emulator_installed() -> None:
    try:
        find_rie()
        find_runtime_python(PYTHON_VERSION)
    except EmulatorSetupError as exc:
        pytest.skip(f"{exc} (`make test` installs both)")


def _dependencies_layer(bundle: Path) -> Path:
    """The built dependencies layer when it is current, or one built here once per requirements.txt."""
    if BUILT_DEPENDENCIES.is_dir() and not missing_requirements(BUILT_DEPENDENCIES, REQUIREMENTS):
        return BUILT_DEPENDENCIES
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + PYTHON_VERSION.encode()).hexdigest()[:12]
    layer = TEST_LAYERS / key / "python"
    if not (layer.parent / ".complete").exists():
        # Built beside, then renamed: a concurrent run never sees half a layer.
        staging = TEST_LAYERS / f"{key}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        build_layers(LayersConfig(deps_dir=staging / "python", artifacts_dir=bundle, strip=False), log=print)
        (staging / ".complete").touch()
        shutil.rmtree(layer.parent, ignore_errors=True)
        staging.rename(layer.parent)
    return layer


@pytest.fixture(scope="module")
def layers(bundle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Layer overrides: the dependencies layer (see the module docstring) and the tiny bundle."""
    _emulator_installed()
    artifacts_layer = tmp_path_factory.mktemp("artifacts-layer")
    (artifacts_layer / "anime-artifacts").symlink_to(bundle_template)
    return {"DependenciesLayer": _dependencies_layer(bundle_template), "ArtifactsLayer": artifacts_layer}


@pytest.fixture(scope="module")
def api(layers: dict[str, Path]) -> Iterator[tuple[LambdaEmulator, Invocation]]:
    """The API function in the emulator, and its first (cold) invocation: the health event."""
    with LambdaEmulator(read_function("ApiFunction"), layer_overrides=layers) as emulator:
        cold = emulator.invoke(load_event("health"))
        assert cold.status_code == 200, emulator.log_text()[-3000:]
        yield emulator, cold


def test_template_says_what_runs_and_with_which_environment() -> None:
    api, delta = read_function("ApiFunction"), read_function("DeltaUpdateFunction")
    assert (api.handler, api.code_dir, api.runtime) == (
        "app.handler",
        REPO_ROOT / "functions" / "api",
        "python3.12",
    )
    assert delta.code_dir == REPO_ROOT / "functions" / "delta_update"
    assert [layer.logical_id for layer in api.layers] == [
        "DependenciesLayer",
        "SharedLayer",
        "ArtifactsLayer",
    ]
    assert api.layers[0].content == BUILT_DEPENDENCIES and api.layers[0].mount == "python"
    # Parameters give their defaults, Globals merge under the function's own, resources do not exist locally
    assert api.environment["POWERTOOLS_SERVICE_NAME"] == "anime-api-dev"
    assert api.environment["CORS_ALLOW_ORIGINS"] == "*" and api.environment["CACHE_TABLE_NAME"] == ""
    assert api.environment["ARTIFACTS_DIR"] == "/opt/anime-artifacts"
    assert (api.memory_mb, api.timeout_s, delta.memory_mb, delta.timeout_s) == (1769, 15, 3008, 900)
    assert delta.environment["ONNX_THREADS"] == "2" and "CACHE_TABLE_NAME" not in delta.environment
    staged = read_function("ApiFunction", parameters={"Stage": "prod"})
    assert staged.environment["POWERTOOLS_SERVICE_NAME"] == "anime-api-prod"


def test_layers_merge_into_opt_in_order_as_links(tmp_path: Path) -> None:
    # Given two layers that both have python/ and the same file in it
    first, second = tmp_path / "first", tmp_path / "second"
    for layer, text in ((first, "first"), (second, "second")):
        (layer / "python" / "pkg").mkdir(parents=True)
        (layer / "python" / "shared.txt").write_text(text)
        (layer / "python" / "pkg" / f"{text}.py").write_text("")
    (first / "data").mkdir()

    # When they are merged in order
    opt = tmp_path / "opt"
    merge_tree(opt, first)
    merge_tree(opt, second)

    # Then the folders hold both contents, the later file wins, and nothing was copied
    assert sorted(p.name for p in (opt / "python" / "pkg").iterdir()) == ["first.py", "second.py"]
    assert (opt / "python" / "shared.txt").read_text() == "second"
    assert (opt / "data").is_symlink() and (opt / "python" / "pkg" / "first.py").is_symlink()


def test_layout_points_the_template_paths_at_the_layers(layers: dict[str, Path], tmp_path: Path) -> None:
    spec = read_function("ApiFunction")
    layout = assemble_layout(spec, tmp_path / "lambda", layers)
    assert (layout.task / "app.py").is_file()
    assert (layout.opt / "python" / "numpy").is_dir() and (
        layout.opt / "python" / "anime_recommender"
    ).is_dir()
    artifacts = Path(layout.localise(spec.environment["ARTIFACTS_DIR"]))
    assert artifacts == layout.opt / "anime-artifacts" and (artifacts / "manifest.json").is_file()


def test_cold_start_is_measured_from_process_start_to_the_first_event(
    api: tuple[LambdaEmulator, Invocation],
) -> None:
    _, cold = api
    assert cold.init is not None and not cold.function_error
    assert 0 < cold.init.interpreter_ms < cold.init.handler_imported_ms <= cold.init.init_ms
    assert cold.duration_ms is not None and cold.roundtrip_ms > cold.init.init_ms + cold.duration_ms * 0.5
    assert cold.body["tier"] == "v4" and cold.body["catalogue_size"] == 30


def test_every_events_file_has_an_emulator_test() -> None:
    assert {p.stem for p in EVENTS_DIR.glob("*.json")} == set(EVENT_STATUS) | set(DELTA_EVENTS)


@pytest.mark.parametrize("name", sorted(EVENT_STATUS))
def test_api_event_through_the_emulator(name: str, api: tuple[LambdaEmulator, Invocation]) -> None:
    emulator, _ = api
    invocation = emulator.invoke(load_event(name))
    assert not invocation.function_error, invocation.payload
    assert invocation.init is None  # the warm container served it
    assert invocation.status_code == EVENT_STATUS[name], invocation.body
    if invocation.status_code >= 400:
        assert invocation.payload["headers"]["content-type"] == "application/problem+json"


def test_delta_events_publish_to_s3_through_the_emulator(
    layers: dict[str, Path], moto_endpoint: str, tiny_catalogue: Catalogue, tmp_path: Path
) -> None:
    # Given the explicit event's bucket on moto with a base and a weekly catalogue
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    if EXPLICIT_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=EXPLICIT_BUCKET)
    tag = uuid.uuid4().hex[:8]
    base_key = f"incoming/base-{tag}.jsonl"
    s3.put_object(Bucket=EXPLICIT_BUCKET, Key=base_key, Body=manami_jsonl(list(tiny_catalogue)))
    explicit = load_event("delta_update_explicit_catalogue")["detail"]["catalogue_url"]
    s3.put_object(
        Bucket=EXPLICIT_BUCKET, Key=explicit.split("/", 3)[3], Body=manami_jsonl(weekly(tiny_catalogue))
    )
    env = {
        "ARTIFACTS_BUCKET": EXPLICIT_BUCKET,
        "ARTIFACTS_ENDPOINT_URL": moto_endpoint,
        "ARTIFACTS_POINTER_KEY": f"current-{tag}.json",
        "ARTIFACTS_PREFIX": f"versions-{tag}",
        "CATALOGUE_SOURCE_URL": f"s3://{EXPLICIT_BUCKET}/{base_key}",
        "WORK_DIR": str(tmp_path / "delta-work"),
        "ARTIFACTS_CACHE_DIR": str(tmp_path / "cache"),
    }
    spec: FunctionSpec = read_function("DeltaUpdateFunction")

    # When both events go through one emulator
    with LambdaEmulator(spec, env=env, layer_overrides=layers) as emulator:
        scheduled = emulator.invoke(load_event("delta_update_scheduled"))
        explicit_run = emulator.invoke(load_event("delta_update_explicit_catalogue"))
        log = emulator.log_text()

    # Then the schedule publishes the configured source and the explicit event applies its changes
    assert scheduled.payload["status"] == "published", log[-3000:]
    assert scheduled.init is not None and explicit_run.init is None
    assert explicit_run.payload.get("status") == "published", explicit_run.payload
    assert explicit_run.payload["source"] == explicit
    assert {k: explicit_run.payload["counts"][k] for k in ("added", "changed", "removed")} == {
        "added": 1,
        "changed": 1,
        "removed": 1,
    }
    pointer = json.loads(
        s3.get_object(Bucket=EXPLICIT_BUCKET, Key=env["ARTIFACTS_POINTER_KEY"])["Body"].read()
    )
    assert pointer["version"] == explicit_run.payload["published_version"]


def test_invoke_cli_prints_the_response_and_the_timings(
    layers: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [f"--layer={name}={folder}" for name, folder in layers.items()]
    assert main(["invoke", str(EVENTS_DIR / "similar.json"), *overrides]) == 0
    out, err = capsys.readouterr()
    response = json.loads(out)
    assert response["statusCode"] == 200 and len(response["body"]["items"]) == 10  # the event asks k=10
    assert "ApiFunction, init " in err and " ms in the function" in err and "status 200" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{events}/nope.json"], "nope.json not found"),
        (["{bad"], "is not valid JSON"),
        (["{events}/health.json", "--function", "Nope"], "unknown function 'Nope'"),
        (
            ["{events}/health.json", "--layer", "DependenciesLayer={empty}"],
            "layer DependenciesLayer is not built",
        ),
    ],
)
def test_invoke_cli_fails_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{bad")
    (tmp_path / "empty").mkdir()
    argv = [
        str(bad)
        if a == "{bad"
        else a.replace("{empty}", str(tmp_path / "empty")).replace("{events}", str(EVENTS_DIR))
        for a in argv
    ]
    assert main(["invoke", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("invoke: ") and err.count("\n") == 1


def test_a_missing_layer_is_refused_before_anything_starts(layers: dict[str, Path], tmp_path: Path) -> None:
    overrides = layers | {"SharedLayer": tmp_path}  # an empty folder
    with pytest.raises(LayersNotBuiltError, match="SharedLayer is not built"):
        LambdaEmulator(read_function("ApiFunction"), layer_overrides=overrides).start()


def test_a_layer_older_than_its_requirements_is_refused(tmp_path: Path) -> None:
    # Given a layer holding numpy 2.4.6 only, and requirements that pin it and one more package
    site = tmp_path / "python"
    (site / "numpy-2.4.6.dist-info").mkdir(parents=True)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nnumpy==2.4.6\naws-lambda-powertools[tracer]==3.37.0  # extras\n")

    # Then the missing pin is named, and a matching layer passes
    assert missing_requirements(site, requirements) == ["aws-lambda-powertools[tracer]==3.37.0"]
    (site / "aws_lambda_powertools-3.37.0.dist-info").mkdir()
    assert missing_requirements(site, requirements) == []
