"""`anime-build sam-size` and the CloudFormation helpers, on small fake `sam build` outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anime_pipeline.cli import main
from anime_pipeline.deploy_check import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    load_cfn_template,
    measure_sam_build,
    table_key_schema,
)

BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Layers:
      - !Ref DepsLayer
      - !Ref DataLayer
Resources:
  DepsLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: DepsLayer}
  DataLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: %(data)s}
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: Fn, Handler: app.handler}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      BillingMode: PAY_PER_REQUEST
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
      Name: !Sub "${AWS::StackName}-t"
      Arn: !GetAtt Fn.Arn
      Both: !Join [",", [!Ref Fn, !GetAtt [Fn, Arn]]]
"""


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    # Given a build folder with function code and a built layer, and an unbuilt layer elsewhere
    build = tmp_path / "build"
    _write(build / "Fn" / "app.py", 100)
    _write(build / "DepsLayer" / "python" / "numpy" / "core.so", 1000)
    _write(build / "DepsLayer" / "python" / "numpy" / "__init__.py", 10)
    data = tmp_path / "layers" / "artifacts"
    _write(data / "anime-artifacts" / "model.onnx", 5000)
    (build / "template.yaml").write_text(BUILT_TEMPLATE % {"data": "../layers/artifacts"}, encoding="utf-8")
    return build


def test_loader_turns_short_tags_into_intrinsics(build_dir: Path) -> None:
    props = load_cfn_template(build_dir / "template.yaml")["Resources"]["Table"]["Properties"]
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-t"}
    assert props["Arn"] == {"Fn::GetAtt": ["Fn", "Arn"]}
    assert props["Both"] == {"Fn::Join": [",", [{"Ref": "Fn"}, {"Fn::GetAtt": ["Fn", "Arn"]}]]}


def test_loader_refuses_a_file_that_is_no_template(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no Resources"):
        load_cfn_template(path)


def test_table_key_schema_reads_keys_and_ttl(build_dir: Path) -> None:
    schema = table_key_schema(build_dir / "template.yaml", "Table")
    assert schema == {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": "expires_at",
    }


def test_measure_adds_code_and_every_layer(build_dir: Path) -> None:
    (fn,) = measure_sam_build(build_dir)
    assert fn.function == "Fn"
    assert [(p.name, p.bytes) for p in fn.parts] == [("Fn", 100), ("DepsLayer", 1010), ("DataLayer", 5000)]
    assert fn.total == 6110
    assert fn.limit == LAMBDA_UNZIPPED_LIMIT_BYTES
    assert fn.within_limit


def test_missing_layer_folder_is_reported(build_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "layers" / "artifacts" / "anime-artifacts" / "model.onnx").unlink()
    (tmp_path / "layers" / "artifacts" / "anime-artifacts").rmdir()
    (tmp_path / "layers" / "artifacts").rmdir()
    with pytest.raises(FileNotFoundError, match="DataLayer ContentUri"):
        measure_sam_build(build_dir)


def test_cli_exit_codes_follow_the_limit(build_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sam-size", "--build-dir", str(build_dir)]) == 0
    assert "Fn: 6,110 of 262,144,000 bytes unzipped (ok)" in capsys.readouterr().out
    # When the limit is below the total, the command fails and says so.
    assert main(["sam-size", "--build-dir", str(build_dir), "--limit", "6109", "--json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["total"] == 6110 and report["within_limit"] is False


def test_cli_without_build_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sam-size", "--build-dir", str(tmp_path)]) == 2
    assert "run `sam build` first" in capsys.readouterr().err
