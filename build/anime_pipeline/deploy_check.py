"""`anime-build sam-size`: deployment checks on the SAM template and its build output.

Lambda refuses a function whose code plus all its layers exceed 262,144,000 bytes unzipped
(the "250 MB" limit). `sam build` writes `.aws-sam/build/template.yaml`, whose CodeUri and layer
ContentUri point at the built folders (the dependencies layer, the functions) or, for layers
without a build method (shared code, artifacts), back at the source folders. This module reads
that template and adds the sizes up per function, so the limit is checked on what `sam deploy`
will upload (`anime-build layers` checks the same budget on the source folders).

It also holds the small CloudFormation helpers the template tests use: a YAML loader that
accepts the short intrinsic tags (`!Ref`, `!GetAtt`, `!Sub`, ...) and `table_key_schema`, the
cache table's key schema as the API's tests build their DynamoDB table from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from anime_pipeline.layers import LAMBDA_UNZIPPED_LIMIT_BYTES
from anime_pipeline.paths import REPO_ROOT

DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_BUILD_DIR = REPO_ROOT / ".aws-sam" / "build"


# ---------------------------------------------------------------------------------------------
# CloudFormation YAML
# ---------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags into their long JSON form."""


def _construct_intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    # `!Ref X` -> {"Ref": X}; `!GetAtt A.B` -> {"Fn::GetAtt": ["A", "B"]}; `!Sub ...` -> {"Fn::Sub": ...}
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_cfn_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template, short intrinsic tags included."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # a SafeLoader subclass: no arbitrary objects
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{path}: not a CloudFormation template (no Resources section)")
    return data


def table_key_schema(
    template_path: Path = DEFAULT_TEMPLATE, logical_id: str = "CacheTable"
) -> dict[str, Any]:
    """The cache table's key schema from the template, as `create_table` keyword arguments.

    Returns `{"KeySchema": [...], "AttributeDefinitions": [...], "BillingMode": ...,
    "ttl_attribute": "expires_at"}`: pass everything but `ttl_attribute` to boto3's
    `create_table` (with a `TableName`), and `ttl_attribute` to `update_time_to_live`.
    """
    props = load_cfn_template(template_path)["Resources"][logical_id]["Properties"]
    return {
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
        "ttl_attribute": props["TimeToLiveSpecification"]["AttributeName"],
    }


# ---------------------------------------------------------------------------------------------
# Sizes of the `sam build` output
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartSize:
    """One unzipped part of a function's deployment: its code or one layer."""

    name: str
    path: str
    bytes: int


@dataclass(frozen=True)
class FunctionSize:
    """A function's code plus its layers, unzipped, against Lambda's limit."""

    function: str
    parts: tuple[PartSize, ...]
    limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES

    @property
    def total(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def within_limit(self) -> bool:
        return self.total <= self.limit


def dir_size(path: Path) -> int:
    """Bytes of every regular file under `path` (what the zip unpacks to); links are not followed."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            total += st.st_size
    return total


def _resolve_uri(uri: Any, build_dir: Path, what: str) -> Path:
    if not isinstance(uri, str):
        raise ValueError(f"{what}: expected a local path, got {uri!r} (run `sam build` first)")
    path = Path(uri)
    path = path if path.is_absolute() else build_dir / path
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return path


def measure_sam_build(build_dir: Path = DEFAULT_BUILD_DIR) -> list[FunctionSize]:
    """Unzipped size of each function in a `sam build` output folder, code plus layers.

    Args:
        build_dir: the folder holding the built `template.yaml` (default `.aws-sam/build`).

    Raises:
        FileNotFoundError: the build output, a function's code or a layer folder is missing.
    """
    template_path = build_dir / "template.yaml"
    if not template_path.exists():
        raise FileNotFoundError(f"{template_path} not found: run `sam build` first")
    template = load_cfn_template(template_path)
    resources: dict[str, Any] = template["Resources"]
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    results = []
    for logical_id, resource in sorted(resources.items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        code = _resolve_uri(props.get("CodeUri"), build_dir, f"{logical_id} CodeUri")
        parts = [PartSize(logical_id, str(code), dir_size(code))]
        # SAM adds a function's own Layers to the Globals ones.
        for ref in [*global_layers, *props.get("Layers", [])]:
            if not (isinstance(ref, dict) and "Ref" in ref):
                raise ValueError(f"{logical_id}: layer {ref!r} is not a layer of this template")
            layer_id = ref["Ref"]
            uri = resources[layer_id]["Properties"]["ContentUri"]
            layer = _resolve_uri(uri, build_dir, f"{layer_id} ContentUri")
            parts.append(PartSize(layer_id, str(layer), dir_size(layer)))
        results.append(FunctionSize(logical_id, tuple(parts)))
    return results


def _format_report(sizes: list[FunctionSize]) -> str:
    lines = []
    for fs in sizes:
        status = "ok" if fs.within_limit else "OVER THE LIMIT"
        lines.append(f"{fs.function}: {fs.total:,} of {fs.limit:,} bytes unzipped ({status})")
        for part in fs.parts:
            lines.append(f"  {part.name:<24} {part.bytes:>14,}  {part.path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """`sam-size`: the size check, or `--write-template ARCH PATH`."""
    if args.write_template:
        arch, path = args.write_template
        print(write_arch_template(arch, Path(path)))  # noqa: T201 - the CLI's output
        return 0
    return _size_check(args)


def _size_check(args: argparse.Namespace) -> int:
    """`anime-build sam-size`: print the sizes; exit 1 when a function is over the limit."""
    try:
        sizes = measure_sam_build(Path(args.build_dir))
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"sam-size: {exc}\n")
        return 2
    if args.limit is not None:
        sizes = [FunctionSize(s.function, s.parts, args.limit) for s in sizes]
    if args.json:
        payload = [{**asdict(s), "total": s.total, "within_limit": s.within_limit} for s in sizes]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(_format_report(sizes) + "\n")
    return 0 if all(s.within_limit for s in sizes) else 1


ARCHITECTURES = ("x86_64", "arm64")


def arch_template(text: str, arch: str) -> str:
    """template.yaml's text for another instruction set: the `Architecture` parameter and every layer's
    `CompatibleArchitectures` and `BuildArchitecture` (SAM reads the latter literally, so it cannot be a
    parameter). The dependencies layer must then be built for it (`make layers-arm64`)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: one of {', '.join(ARCHITECTURES)}")
    if arch == "x86_64":
        return text
    parameter = "  Architecture:\n    Type: String\n    Default: x86_64\n    AllowedValues: [x86_64]\n"
    if parameter not in text or "BuildArchitecture: x86_64" not in text:
        raise ValueError("template.yaml no longer has the x86_64 Architecture parameter and layer metadata")
    text = text.replace(parameter, parameter.replace("x86_64", arch))
    text = text.replace("BuildArchitecture: x86_64", f"BuildArchitecture: {arch}")
    # `anime-build layers --arch arm64` builds that layer in its own folder (`layers.default_deps_dir`).
    text = text.replace("ContentUri: layers/dependencies/", f"ContentUri: layers/dependencies-{arch}/")
    return text.replace("CompatibleArchitectures: [x86_64]", f"CompatibleArchitectures: [{arch}]")


def write_arch_template(arch: str, out: Path, template: Path = Path("template.yaml")) -> Path:
    """Write `arch_template` of `template` to `out` (`make deploy-check ARCH=arm64`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(arch_template(template.read_text(encoding="utf-8"), arch), encoding="utf-8")
    if arch != "x86_64":
        # The layer's `sam build` step (BuildMethod makefile) copies its python/ folder: the same
        # Makefile serves the arm64 folder.
        layer = template.parent / "layers" / f"dependencies-{arch}"
        layer.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template.parent / "layers" / "dependencies" / "Makefile", layer / "Makefile")
    return out


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `sam-size` subcommand."""
    parser = subparsers.add_parser(
        "sam-size",
        help="check that each built Lambda function plus its layers fits in 262,144,000 bytes unzipped",
        description="Read the `sam build` output (.aws-sam/build/template.yaml) and add up, per "
        "function, the unzipped bytes of its code and every layer it uses (built layers from the "
        "build folder, unbuilt ones such as the artifacts layer from their source folder). Exits 1 "
        "if a function exceeds Lambda's limit, 2 if the build output or a layer folder is missing.",
    )
    parser.add_argument(
        "--build-dir",
        default=str(DEFAULT_BUILD_DIR),
        help="folder with the built template.yaml (default: %(default)s)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help=f"byte limit per function (default: Lambda's {LAMBDA_UNZIPPED_LIMIT_BYTES:,})",
    )
    parser.add_argument("--json", action="store_true", help="print the sizes as JSON")
    parser.add_argument(
        "--write-template",
        nargs=2,
        metavar=("ARCH", "PATH"),
        help="instead: write template.yaml for ARCH (x86_64 or arm64) to PATH and exit",
    )
    parser.set_defaults(func=run)
