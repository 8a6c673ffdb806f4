"""Stage `layers`: the Lambda dependencies layer (trimmed), the artifacts layer, and the size budget.

Lambda refuses a function whose code plus all its layers exceed 262,144,000 bytes unzipped. The naive
`pip install` of our runtime requirements alone is ~264 MB (measured for cp312 x86_64), so this stage
installs Lambda's wheels with pip's cross-platform flags and then removes, measuring each rule, what
the runtime never loads:

* distributions the Lambda Python runtime already provides (boto3, botocore, s3transfer, jmespath,
  python-dateutil, six, urllib3): pulled in by aws-xray-sdk, ~30 MB;
* distributions nothing imports at runtime (checked with `sys.modules` after importing the app's
  stack): huggingface_hub + hf_xet (tokenizers only needs them for `from_pretrained`), fsspec,
  filelock, tqdm, PyYAML, click, httpx/httpcore/h11, packaging, protobuf, flatbuffers;
* `onnxruntime/capi/libonnxruntime.so.*` (35 MB): the C-API library; the Python binding
  `onnxruntime_pybind11_state` links the runtime statically (no NEEDED entry) and was verified to run
  without it; onnxruntime's `tools/`, `transformers/`, `quantization/` (offline tooling);
* test suites, `numpy/f2py`, `*.pyi`, `__pycache__` (pip runs with `--no-compile`: .pyc files compiled
  by this machine's Python would not match Lambda's 3.12 anyway);
* debug info in shared objects (`strip --strip-debug`: chroma-hnswlib's .so is 9.2 MB → 0.7 MB).

Then it prints the size breakdown against the limit and exits 1 when over.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from anime_pipeline.paths import REPO_ROOT, BuildPaths
from anime_recommender.artifacts import bundle_sizes

LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
PYTHON_VERSION = "3.12"
Arch = Literal["x86_64", "arm64"]
PLATFORMS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
REQUIREMENTS = REPO_ROOT / "layers" / "dependencies" / "requirements.txt"
SHARED_CODE = REPO_ROOT / "layers" / "shared" / "python"
FUNCTION_DIRS = (REPO_ROOT / "functions" / "api", REPO_ROOT / "functions" / "delta_update")

# Provided by the Lambda python3.12 runtime (/var/runtime); shipping them would only shadow it.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python_dateutil", "six", "urllib3")
# Installed as dependencies of what we ship, never imported on our code paths.
UNUSED_AT_RUNTIME = (
    "huggingface_hub",
    "hf_xet",
    "fsspec",
    "filelock",
    "tqdm",
    "PyYAML",
    "click",
    "httpx",
    "httpcore",
    "h11",
    "packaging",
    "protobuf",
    "flatbuffers",
)
# Path patterns (relative to the layer's python/ folder) the runtime never loads.
TRIM_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("__pycache__", ("*/__pycache__", "__pycache__")),
    ("test suites", ("*/tests", "*/testing/tests", "numpy/_core/_*_tests.*.so", "numpy/_core/tests")),
    ("onnxruntime C-API lib", ("onnxruntime/capi/libonnxruntime.so.*",)),
    (
        "onnxruntime offline tools",
        ("onnxruntime/tools", "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/datasets"),
    ),
    ("numpy f2py", ("numpy/f2py",)),
    ("type stubs", ("*.pyi",)),
)


class LayerBudgetExceeded(RuntimeError):
    """The function plus its layers are over Lambda's unzipped limit."""


@dataclass
class TrimReport:
    """Bytes removed per rule (in order) and what was left."""

    removed: dict[str, int] = field(default_factory=dict)
    before: int = 0
    after: int = 0


@dataclass
class SizeReport:
    """Every part's size, per layer, and the total against the limit."""

    layers: dict[str, dict[str, int]]
    function_code: dict[str, int]
    limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES

    @property
    def layer_totals(self) -> dict[str, int]:
        """Total bytes per layer."""
        return {name: sum(parts.values()) for name, parts in self.layers.items()}

    @property
    def worst_function(self) -> tuple[str, int]:
        """The function whose code plus all layers is largest, and that total."""
        layers_total = sum(self.layer_totals.values())
        name, code = max(self.function_code.items(), key=lambda kv: kv[1], default=("(none)", 0))
        return name, layers_total + code

    @property
    def total(self) -> int:
        """Bytes Lambda counts for the largest function (code + every layer)."""
        return self.worst_function[1]

    @property
    def ok(self) -> bool:
        """True when under the limit."""
        return self.total <= self.limit

    def render(self) -> str:
        """A human-readable breakdown."""
        lines = []
        for name, parts in self.layers.items():
            lines.append(f"layer {name}: {_mb(sum(parts.values()))}")
            for part, size in sorted(parts.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {part:<44} {_mb(size)}")
        for name, size in self.function_code.items():
            lines.append(f"function code {name}: {_mb(size)}")
        fn, total = self.worst_function
        verdict = "OK" if self.ok else "OVER THE LIMIT"
        lines.append(
            f"TOTAL ({fn} + {len(self.layers)} layers): {total:,} bytes of {self.limit:,} "
            f"({100 * total / self.limit:.1f}%, headroom {self.limit - total:,}) -> {verdict}"
        )
        return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size:>13,} B ({size / 1e6:7.2f} MB)"


def tree_size(path: Path) -> int:
    """Apparent bytes of all files under `path` (what Lambda counts unzipped); 0 when absent."""
    if path.is_file():
        return path.stat().st_size
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---------------------------------------------------------------------------------------------
# dependencies layer
# ---------------------------------------------------------------------------------------------


def pip_install_command(requirements: Path, target: Path, arch: Arch) -> list[str]:
    """The pip command that installs Lambda's cp312 manylinux wheels into `target`."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-compile", "--only-binary=:all:"]
    for platform in PLATFORMS[arch]:
        cmd += ["--platform", platform]
    cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--upgrade"]
    return cmd + ["--target", str(target), "-r", str(requirements)]


def install_dependencies(requirements: Path, target: Path, arch: Arch) -> None:
    """Fresh `pip install --target` of the requirements for Lambda's platform."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run(pip_install_command(requirements, target, arch), check=True)


def _dist_infos(site: Path) -> dict[str, Path]:
    """Normalised distribution name → its .dist-info folder."""
    out = {}
    for info in site.glob("*.dist-info"):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        out[name.lower().replace("-", "_").replace(".", "_")] = info
    return out


def remove_distribution(site: Path, name: str) -> int:
    """Delete an installed distribution's files (from its RECORD) and dist-info; returns bytes."""
    info = _dist_infos(site).get(name.lower().replace("-", "_"))
    if info is None:
        return 0
    removed = 0
    record = info / "RECORD"
    rels = (
        [line.split(",", 1)[0] for line in record.read_text().splitlines() if line] if record.exists() else []
    )
    for rel in rels:
        path = (site / rel).resolve()
        if path.is_file() and site.resolve() in path.parents:
            removed += path.stat().st_size
            path.unlink()
    if info.exists():
        removed += tree_size(info)
        shutil.rmtree(info)
    # Empty package folders left behind by the RECORD-based deletion.
    for folder in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in patterns)


def trim_layer(site: Path, *, strip_tool: str | None) -> TrimReport:
    """Remove what the runtime never loads; bytes removed per rule."""
    report = TrimReport(before=tree_size(site))
    for label, names in (("runtime-provided dists", RUNTIME_PROVIDED), ("unused dists", UNUSED_AT_RUNTIME)):
        for name in names:
            report.removed[f"{label}: {name}"] = remove_distribution(site, name)
    for label, patterns in TRIM_PATTERNS:
        removed = 0
        # Deepest first, so a matched folder is removed once, not its children again.
        for path in sorted(site.rglob("*"), key=lambda p: -len(p.parts)):
            if not path.exists() or not _matches(path.relative_to(site).as_posix(), patterns):
                continue
            removed += tree_size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        report.removed[label] = removed
    if strip_tool:
        report.removed["debug info (strip --strip-debug)"] = strip_shared_objects(site, strip_tool)
    report.after = tree_size(site)
    return report


def strip_shared_objects(site: Path, tool: str) -> int:
    """Strip debug sections from every shared object; returns bytes saved."""
    saved = 0
    for path in site.rglob("*.so*"):
        if not path.is_file() or path.is_symlink():
            continue
        before = path.stat().st_size
        subprocess.run([tool, "--strip-debug", str(path)], check=True, capture_output=True)
        saved += before - path.stat().st_size
    return saved


def find_strip_tool(arch: Arch) -> str:
    """`llvm-strip` handles both architectures; GNU `strip` only this machine's (x86_64)."""
    for tool in ("llvm-strip", *(("strip",) if arch == "x86_64" else ("aarch64-linux-gnu-strip",))):
        if found := shutil.which(tool):
            return found
    raise FileNotFoundError(f"no strip tool for {arch}: install llvm (llvm-strip) or pass --no-strip")


def dependency_parts(site: Path, top: int = 12) -> dict[str, int]:
    """The layer's largest top-level entries (dist-info folders folded into 'other')."""
    sizes = {p.name: tree_size(p) for p in site.iterdir()}
    ranked = sorted(((n, s) for n, s in sizes.items() if not n.endswith(".dist-info")), key=lambda kv: -kv[1])
    parts = dict(ranked[:top])
    parts["other"] = sum(sizes.values()) - sum(parts.values())
    return parts


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------


@dataclass
class LayersConfig:
    """Inputs of `anime-build layers`."""

    deps_dir: Path
    artifacts_dir: Path
    arch: Arch = "x86_64"
    requirements: Path = REQUIREMENTS
    install: bool = True
    strip: bool = True
    shared_code: Path = SHARED_CODE
    function_dirs: tuple[Path, ...] = FUNCTION_DIRS
    limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES


@dataclass
class LayersResult:
    """Trim report and size breakdown."""

    trim: TrimReport | None
    sizes: SizeReport
    seconds: float


def measure(config: LayersConfig) -> SizeReport:
    """Size breakdown of the dependencies, code and artifacts layers plus each function's code."""
    layers = {
        f"dependencies ({config.arch})": dependency_parts(config.deps_dir)
        if config.deps_dir.exists()
        else {},
        "shared code (layers/shared/python)": {"anime_recommender": tree_size(config.shared_code)},
        "artifacts": bundle_sizes(config.artifacts_dir) if config.artifacts_dir.exists() else {},
    }
    functions = {d.name: tree_size(d) for d in config.function_dirs}
    return SizeReport(layers=layers, function_code=functions, limit=config.limit)


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def build_layers(config: LayersConfig, log: Callable[[str], None] = _say) -> LayersResult:
    """Install and trim the dependencies layer (unless `install` is off), then check the budget."""
    started = time.perf_counter()
    trim = None
    if config.install:
        log(f"pip install ({config.arch}, cp{PYTHON_VERSION.replace('.', '')}) -> {config.deps_dir}")
        install_dependencies(config.requirements, config.deps_dir, config.arch)
        trim = trim_layer(config.deps_dir, strip_tool=find_strip_tool(config.arch) if config.strip else None)
        log(f"dependencies: {trim.before:,} B installed -> {trim.after:,} B after trimming")
        for rule, size in trim.removed.items():
            if size:
                log(f"    removed {rule:<48} {_mb(size)}")
    sizes = measure(config)
    return LayersResult(trim=trim, sizes=sizes, seconds=round(time.perf_counter() - started, 1))


def synthetic_bundle(
    n: int, out_dir: Path, model_dir: Path, *, k: int = 20, M: int = 16, seed: int = 0
) -> Path:
    """A bundle for a synthetic n-anime catalogue, for the size budget only.

    Sizes depend on n, the dims and M, not on vector content, so the indexes hold random unit
    vectors of the shipped model's dims (and ef_construction is small to keep this quick).
    """
    import numpy as np

    from anime_pipeline.synthetic import synthetic_catalogue
    from anime_recommender.artifacts import write_bundle
    from anime_recommender.encoder import CONFIG_FILE, EncoderConfig
    from anime_recommender.index import VectorIndex
    from anime_recommender.neighbours import NeighbourLists

    catalogue = synthetic_catalogue(n, seed)
    rng = np.random.default_rng(seed)
    ids = np.array(catalogue.ids, dtype=np.int64)
    neighbour_ids = ids[rng.integers(0, len(ids), size=(len(ids), k))]
    scores = -np.sort(-rng.random((len(ids), k)), axis=1)
    dims = EncoderConfig.load(model_dir / CONFIG_FILE).outputs
    indexes = {
        space: VectorIndex.build(
            ids, rng.standard_normal((len(ids), dim)), M=M, ef_construction=16, threads=2
        )
        for space, dim in dims.items()
    }
    write_bundle(
        out_dir,
        catalogue=catalogue,
        neighbours=NeighbourLists(ids=ids, neighbour_ids=neighbour_ids, scores=scores),
        model_dir=model_dir,
        indexes=indexes,
        extra={"synthetic": True, "note": "random unit vectors: for the size budget only"},
    )
    return out_dir


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build layers`."""
    paths = BuildPaths.from_env()
    arch: Arch = args.arch
    default_deps = REPO_ROOT / "layers" / ("dependencies" if arch == "x86_64" else f"dependencies-{arch}")
    artifacts = Path(args.artifacts_dir) if args.artifacts_dir else paths.artifacts_dir
    if args.synthetic:
        model_dir = Path(args.model_dir) if args.model_dir else artifacts / "model"
        artifacts = paths.work / f"synthetic-{args.synthetic}" / "anime-artifacts"
        _say(f"synthetic {args.synthetic}-anime bundle (random unit vectors) -> {artifacts}")
        synthetic_bundle(args.synthetic, artifacts, model_dir, M=args.M)
    config = LayersConfig(
        deps_dir=Path(args.deps_dir) if args.deps_dir else default_deps / "python",
        artifacts_dir=artifacts,
        arch=arch,
        install=not args.no_install,
        strip=not args.no_strip,
        limit=args.limit,
    )
    result = build_layers(config, log=_say)
    _say(result.sizes.render())
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    return 0 if result.sizes.ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build layers`."""
    p = subparsers.add_parser(
        "layers",
        help="build the trimmed dependencies layer and check function + layers against 262,144,000 bytes",
        description="pip-installs layers/dependencies/requirements.txt as Lambda cp312 manylinux wheels "
        "into layers/dependencies/python (arm64: layers/dependencies-arm64/python), removes what the "
        "runtime never loads (each rule measured), and prints the size of every part and layer (deps, "
        "shared code, artifacts from `anime-build index`) plus each function's code against Lambda's "
        "unzipped limit. Exits 1 when over.",
    )
    p.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64", help="Lambda architecture")
    p.add_argument("--deps-dir", help="target python/ folder of the dependencies layer")
    p.add_argument("--artifacts-dir", help="artifact bundle to measure (default: BuildPaths.artifacts_dir)")
    p.add_argument("--no-install", action="store_true", help="measure the existing layers only (no pip)")
    p.add_argument("--no-strip", action="store_true", help="keep debug info in shared objects")
    p.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help="measure with a synthetic N-anime bundle (random vectors of the shipped dims), e.g. 40000",
    )
    p.add_argument("--model-dir", help="model folder for --synthetic (default: the bundle's model/)")
    p.add_argument(
        "--M", type=int, default=16, help="hnswlib M for --synthetic indexes (default %(default)s)"
    )
    p.add_argument("--limit", type=int, default=LAMBDA_UNZIPPED_LIMIT_BYTES, help="bytes (default: Lambda's)")
    p.add_argument("--json", help="also write the result as JSON to this file")
    p.set_defaults(func=run)
