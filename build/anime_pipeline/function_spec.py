"""A Lambda function as template.yaml declares it, and its code and layers laid out as Lambda's.

`read_function` reads one `AWS::Serverless::Function` (Globals merged in, as SAM does): its Handler,
CodeUri, Layers (each layer resource's ContentUri in the same template), Environment, Runtime,
MemorySize, Timeout and Tracing. Intrinsics are resolved the way a local run needs them: `!Ref` to a
parameter gives its default (or an override), `!Ref`/`!GetAtt` to a resource of the stack gives ""
(no such resource exists locally: the functions read an empty name as "not configured"), pseudo
parameters get fixed local values.

`assemble_layout` builds what Lambda mounts: the function code as `task/` (/var/task) and every layer
merged in order into `opt/` (/opt), with symlinks instead of copies. Environment values that name
/opt or /var/task (ARTIFACTS_DIR: /opt/anime-artifacts) are pointed at those folders.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anime_pipeline.deploy_check import DEFAULT_TEMPLATE, load_cfn_template

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
# The machine names `platform.machine()` reports for each Lambda architecture.
HOST_MACHINES = {"x86_64": ("x86_64", "amd64"), "arm64": ("aarch64", "arm64")}
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_STACK_NAME = "local"
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class FunctionSpecError(ValueError):
    """template.yaml does not describe the requested function in a way this tool can run."""


class LayersNotBuiltError(FileNotFoundError):
    """A layer's content folder is missing or empty."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a function: its logical id, its content folder and where Lambda extracts it.

    `mount` is the folder under /opt the content lands in: "" for a layer zipped from its ContentUri,
    "python" for the makefile-built dependencies layer, whose build output is its python/ folder.
    """

    logical_id: str
    content: Path
    mount: str = ""
    requirements: Path | None = None  # what a pip-built layer must hold (its requirements.txt)


@dataclass(frozen=True)
class FunctionSpec:
    """What Lambda needs to run one function of the template."""

    logical_id: str
    handler: str
    runtime: str
    code_dir: Path
    layers: tuple[LayerSpec, ...]
    environment: dict[str, str]
    memory_mb: int
    timeout_s: int
    architecture: str
    tracing: bool

    @property
    def python_version(self) -> str:
        """The runtime's Python version: 3.12 for `python3.12`."""
        if not self.runtime.startswith("python"):
            raise FunctionSpecError(f"{self.logical_id}: runtime {self.runtime!r} is not a Python runtime")
        return self.runtime.removeprefix("python")


@dataclass(frozen=True)
class LambdaLayout:
    """The folders standing in for /var/task and /opt."""

    task: Path
    opt: Path

    def localise(self, value: str) -> str:
        """`value` with a leading /opt or /var/task pointed at this layout's folders."""
        for lambda_root, local in (("/opt", self.opt), ("/var/task", self.task)):
            if value == lambda_root or value.startswith(lambda_root + "/"):
                return str(local) + value[len(lambda_root) :]
        return value


@dataclass
class _Resolver:
    """Resolves CloudFormation intrinsics to local values (see the module docstring)."""

    parameters: dict[str, Any]
    resources: Mapping[str, Any]
    region: str

    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::StackName": LOCAL_STACK_NAME,
            "AWS::Region": self.region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{LOCAL_ACCOUNT_ID}:stack/local/0",
        }
        if name not in values:
            raise FunctionSpecError(f"unsupported pseudo parameter {name}")
        return values[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return ""
        raise FunctionSpecError(f"!Ref {name}: neither a parameter nor a resource of the template")

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return _scalar(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return ""  # ${Resource.Attribute}: a resource that does not exist locally
            return _scalar(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return ""
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self.sub(text, variables)
            if key == "Fn::Join":
                separator, items = arg
                resolved = self.resolve(items)
                return separator.join(
                    _scalar(v) for v in (resolved if isinstance(resolved, list) else [resolved])
                )
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key.startswith("Fn::"):
                raise FunctionSpecError(f"unsupported intrinsic {key} in a function's properties")
        return {k: self.resolve(v) for k, v in value.items()}


def _scalar(value: Any) -> str:
    """An environment-variable string, as CloudFormation turns a number or boolean into one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    return str(value)


def _parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    declared = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise FunctionSpecError(f"unknown template parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        value: Any = overrides.get(name, spec.get("Default", ""))
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            value = [item.strip() for item in value.split(",")]
        values[name] = value
    return values


def function_ids(template_path: Path = DEFAULT_TEMPLATE) -> list[str]:
    """Logical ids of the template's functions."""
    resources = load_cfn_template(template_path)["Resources"]
    return sorted(k for k, v in resources.items() if v.get("Type") == SERVERLESS_FUNCTION)


def read_function(
    logical_id: str,
    template_path: Path = DEFAULT_TEMPLATE,
    *,
    parameters: Mapping[str, str] | None = None,
    region: str | None = None,
) -> FunctionSpec:
    """The function `logical_id` of the template, Globals merged in and intrinsics resolved locally.

    Raises:
        FunctionSpecError: no such function, or a property this tool cannot resolve.
    """
    template = load_cfn_template(template_path)
    resources: dict[str, Any] = template["Resources"]
    resource = resources.get(logical_id)
    if not resource or resource.get("Type") != SERVERLESS_FUNCTION:
        known = ", ".join(function_ids(template_path))
        raise FunctionSpecError(f"unknown function {logical_id!r}; the template's functions: {known}")
    resolver = _Resolver(
        parameters=_parameter_values(template, parameters or {}),
        resources=resources,
        region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    globals_ = resolver.resolve((template.get("Globals") or {}).get("Function") or {})
    props = resolver.resolve(resource.get("Properties") or {})

    def prop(name: str, default: Any = None) -> Any:
        return props.get(name, globals_.get(name, default))

    # SAM merges maps (Environment.Variables) and appends lists (Layers) from Globals.
    env_vars = {
        **((globals_.get("Environment") or {}).get("Variables") or {}),
        **((props.get("Environment") or {}).get("Variables") or {}),
    }
    base = template_path.parent
    # Layers stay unresolved: a `!Ref` to a layer names the resource whose ContentUri is wanted.
    raw_globals = (template.get("Globals") or {}).get("Function") or {}
    raw_props = resource.get("Properties") or {}
    layer_refs = [*(raw_globals.get("Layers") or []), *(raw_props.get("Layers") or [])]
    for key in ("Handler", "CodeUri", "Runtime"):
        if not isinstance(prop(key), str) or not prop(key):
            raise FunctionSpecError(f"{logical_id}: no {key} (a local path is needed for CodeUri)")
    architectures = prop("Architectures", ["x86_64"])
    return FunctionSpec(
        logical_id=logical_id,
        handler=prop("Handler"),
        runtime=prop("Runtime"),
        code_dir=(base / prop("CodeUri")).resolve(),
        layers=tuple(_layer(ref, resources, base) for ref in layer_refs),
        environment={name: _scalar(value) for name, value in env_vars.items()},
        memory_mb=int(prop("MemorySize", 128)),
        timeout_s=int(prop("Timeout", 3)),
        architecture=architectures[0],
        tracing=prop("Tracing") == "Active",
    )


def _layer(ref: Any, resources: Mapping[str, Any], base: Path) -> LayerSpec:
    """A layer reference (`!Ref SomeLayer`) resolved to the folder Lambda would extract."""
    if not (isinstance(ref, dict) and isinstance(ref.get("Ref"), str) and ref["Ref"] in resources):
        raise FunctionSpecError(f"layer {ref!r} is not a layer resource of this template")
    logical_id = ref["Ref"]
    resource = resources[logical_id]
    uri = resource.get("Properties", {}).get("ContentUri")
    if not isinstance(uri, str):
        raise FunctionSpecError(f"{logical_id}: ContentUri must be a local folder, got {uri!r}")
    content = (base / uri).resolve()
    build_method = (resource.get("Metadata") or {}).get("BuildMethod")
    if build_method == "makefile":
        # The layer's Makefile (layers/dependencies/Makefile) ships exactly its python/ folder,
        # built by `anime-build layers`; the Makefile and requirements.txt stay behind.
        requirements = content / "requirements.txt"
        return LayerSpec(
            logical_id,
            content / "python",
            mount="python",
            requirements=requirements if requirements.is_file() else None,
        )
    if build_method is not None:
        raise FunctionSpecError(f"{logical_id}: BuildMethod {build_method!r} needs `sam build`")
    return LayerSpec(logical_id, content)


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_requirements(site: Path, requirements: Path) -> list[str]:
    """The pinned `name==version` lines of `requirements` with no matching .dist-info in `site`."""
    installed = set()
    for info in site.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        installed.add((_normalised(name), version))
    missing = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        name, sep, version = requirement.partition("==")
        if sep and (_normalised(name.split("[", 1)[0].strip()), version.strip()) not in installed:
            missing.append(requirement)
    return missing


def check_layers_built(spec: FunctionSpec, overrides: Mapping[str, Path] | None = None) -> None:
    """LayersNotBuiltError naming the first layer that is missing, empty or older than its requirements."""
    overrides = overrides or {}
    hint = "run `make build` (or `anime-build layers` once the artifacts exist)"
    for layer in spec.layers:
        content = overrides.get(layer.logical_id, layer.content)
        if not content.is_dir() or not any(content.iterdir()):
            raise LayersNotBuiltError(
                f"{spec.logical_id}: layer {layer.logical_id} is not built "
                f"({content} is missing or empty): {hint}"
            )
        missing = missing_requirements(content, layer.requirements) if layer.requirements else []
        if missing:
            raise LayersNotBuiltError(
                f"{spec.logical_id}: layer {layer.logical_id} in {content} is older than "
                f"{layer.requirements}, it lacks {', '.join(missing)}: {hint}"
            )


def check_architecture(spec: FunctionSpec) -> None:
    """FunctionSpecError when this machine cannot run the layers' native code (built for the template's)."""
    machine = platform.machine().lower()
    if machine not in HOST_MACHINES.get(spec.architecture, ()):
        raise FunctionSpecError(
            f"{spec.logical_id} runs on {spec.architecture} (so does its layers' native code); "
            f"this machine is {machine}"
        )


def merge_tree(target: Path, source: Path) -> None:
    """Overlay `source`'s entries onto the folder `target` with symlinks; later sources win.

    Lambda extracts a function's layers into /opt in order, a later file replacing an earlier one; a
    folder present in two layers holds both contents, so such a folder becomes a real folder of links.
    """
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir():
            if dest.is_symlink():
                earlier = Path(os.readlink(dest))
                dest.unlink()
                merge_tree(dest, earlier)
            merge_tree(dest, entry)
            continue
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        dest.symlink_to(entry.absolute())


def assemble_layout(
    spec: FunctionSpec, root: Path, layer_overrides: Mapping[str, Path] | None = None
) -> LambdaLayout:
    """Lay out `spec`'s code and layers under `root` as Lambda mounts them.

    Args:
        spec: the function.
        root: an empty scratch folder; gets `task` (→ the code folder) and `opt` (merged layers).
        layer_overrides: layer logical id → a folder to use as that layer's content folder instead
            (e.g. the artifacts layer of a test bundle: a folder holding `anime-artifacts/`).

    Raises:
        LayersNotBuiltError: a layer's content is missing or empty.
    """
    overrides = layer_overrides or {}
    unknown = sorted(set(overrides) - {layer.logical_id for layer in spec.layers})
    if unknown:
        raise FunctionSpecError(f"{spec.logical_id} has no layer(s) {', '.join(unknown)}")
    check_layers_built(spec, overrides)
    if not (spec.code_dir / (spec.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")).is_file():
        raise FunctionSpecError(f"{spec.logical_id}: handler {spec.handler} not found in {spec.code_dir}")
    layout = LambdaLayout(task=root / "task", opt=root / "opt")
    root.mkdir(parents=True, exist_ok=True)
    layout.task.symlink_to(spec.code_dir)
    layout.opt.mkdir()
    for layer in spec.layers:
        content = overrides.get(layer.logical_id, layer.content)
        merge_tree(layout.opt / layer.mount, content.absolute())
    return layout
