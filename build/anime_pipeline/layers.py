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
* test suites (including numpy's test-only `_core/_simd` extension, 1.5 MB), `numpy/f2py`, `*.pyi`,
  `__pycache__` (pip runs with `--no-compile`: .pyc files compiled by this machine's Python would
  not match Lambda's 3.12 anyway);
* symbols the dynamic loader never uses (`strip --strip-unneeded`, what Debian's dh_strip does to
  shared libraries; `.dynsym` stays): chroma-hnswlib's .so 9.2 MB → 0.6 MB, tokenizers 9.9 → 7.6 MB.
  Every stripped file is checked before it replaces the original: strip tools rewrite the segment
  layout of libraries that auditwheel's patchelf has edited (numpy's OpenBLAS, `_multiarray_umath`)
  into one the loader refuses ("ELF load command address/offset not page-aligned"), so such a file
  keeps its original bytes (`elf_segments_loadable`).

Finally the layer is imported by a Python 3.12 interpreter when one is on this machine and the
architecture matches (`check_layer_imports`): numpy, onnxruntime, tokenizers, hnswlib and the app's
stack must load and compute from the layer alone. The same interpreter then serves every API event in
`events/` from the built artifacts and byte-compiles exactly the modules that took
(`compile_imported_modules`, 6.5 MB of .pyc for ~390 modules), and the shared code layer is
compiled with checked hashes: /opt is read-only on Lambda, so without them every cold start compiles
fastapi, pydantic, numpy & co. again (measured with Python 3.12 on this layer: init 3.1-3.4 s
without, 1.7-2.3 s with).

Then it prints the size breakdown against the limit and exits 1 when over.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from anime_pipeline.paths import REPO_ROOT, BuildPaths
from anime_pipeline.workers import run_json_worker
from anime_recommender.artifacts import MANIFEST, bundle_sizes

LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
PYTHON_VERSION = "3.12"
Arch = Literal["x86_64", "arm64"]
PLATFORMS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
REQUIREMENTS = REPO_ROOT / "layers" / "dependencies" / "requirements.txt"
EVENTS = REPO_ROOT / "events"
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
    (
        "test suites",
        (
            "*/tests",
            "*/testing/tests",
            "numpy/_core/_*_tests.*.so",
            "numpy/_core/tests",
            # numpy's SIMD test harness (`numpy._core._simd`): imported by numpy's tests only.
            "numpy/_core/_simd.*.so",
        ),
    ),
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
    for tag in PLATFORMS[arch]:
        cmd += ["--platform", tag]
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
        report.removed["unneeded symbols (strip --strip-unneeded)"] = strip_shared_objects(site, strip_tool)
    report.after = tree_size(site)
    return report


PT_LOAD = 1
LOADER_PAGE_SIZE = 4096  # Lambda's x86_64 and arm64 kernels both use 4 KiB pages


def elf_segments_loadable(path: Path) -> bool:
    """True unless `path` is an ELF file with a PT_LOAD segment the dynamic loader would refuse.

    glibc maps each loadable segment with mmap, so a segment's file offset and virtual address must
    agree modulo the page size (and its own alignment); otherwise dlopen fails with "ELF load command
    address/offset not page-aligned". Non-ELF files pass.
    """
    with path.open("rb") as handle:
        header = handle.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:  # ELF64 only (all we ship)
            return True
        order = "<" if header[5] == 1 else ">"
        (table_offset,) = struct.unpack_from(order + "Q", header, 0x20)
        entry_size, entries = struct.unpack_from(order + "HH", header, 0x36)
        handle.seek(table_offset)
        table = handle.read(entry_size * entries)
    for entry in range(entries):
        kind, _, offset, vaddr, _, _, _, align = struct.unpack_from(
            order + "IIQQQQQQ", table, entry * entry_size
        )
        if kind == PT_LOAD and (vaddr - offset) % max(LOADER_PAGE_SIZE, min(align, 65_536)) != 0:
            return False
    return True


def strip_shared_objects(site: Path, tool: str) -> int:
    """Strip every shared object (keeping those a strip would make unloadable); returns bytes saved."""
    saved = 0
    for path in site.rglob("*.so*"):
        if not path.is_file() or path.is_symlink() or not elf_segments_loadable(path):
            continue
        stripped = path.with_name(path.name + ".stripped")
        for mode in ("--strip-unneeded", "--strip-debug"):
            subprocess.run([tool, mode, str(path), "-o", str(stripped)], check=True, capture_output=True)
            if elf_segments_loadable(stripped):
                saved += path.stat().st_size - stripped.stat().st_size
                stripped.replace(path)
                break
        stripped.unlink(missing_ok=True)
    return saved


# What the layer must be able to do on its own (Lambda adds only boto3 and the standard library).
LAYER_IMPORT_CHECK = """
import numpy, onnxruntime, tokenizers, hnswlib, pydantic_core, fastapi, mangum, aws_lambda_powertools
a = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
assert float((a @ a.T)[2, 2]) == 366.0
index = hnswlib.Index(space="ip", dim=4)
index.init_index(max_elements=3)
index.add_items(a, [7, 8, 9])
assert index.knn_query(a[2:], k=1)[0][0][0] in (7, 8, 9)
assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("layer imports ok:", numpy.__version__, onnxruntime.__version__, tokenizers.__version__)
"""


# Run by python3.12 with the layer on its path: start the API handler on real artifacts, send it
# every API event, then write unchecked-hash .pyc files for the layer modules that were imported.
COMPILE_IMPORTED = """
import importlib.util, json, os, py_compile, sys
site, functions_api, events = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, functions_api)
import app
class Context:
    function_name = "ApiFunction"; function_version = "$LATEST"; memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:ApiFunction"
    aws_request_id = "layer-build"; log_group_name = "build"; log_stream_name = "build"
    def get_remaining_time_in_millis(self): return 30000
for name in sorted(os.listdir(events)):
    if name.endswith(".json") and not name.startswith("delta_update"):
        with open(os.path.join(events, name)) as fh:
            app.handler(json.load(fh), Context())
count = size = 0
for module in list(sys.modules.values()):
    source = getattr(module, "__file__", None) or ""
    if source.startswith(site + os.sep) and source.endswith(".py"):
        target = importlib.util.cache_from_source(source)
        py_compile.compile(source, cfile=target, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        count += 1
        size += os.path.getsize(target)
print("COMPILED " + json.dumps({"modules": count, "bytes": size}))
"""


def compile_imported_modules(
    site: Path, python: str, *, runtime_dir: Path, shared_code: Path, artifacts_dir: Path
) -> dict[str, int]:
    """Byte-compile (for `python`) the layer modules the API imports while serving `events/`.

    Returns {"modules": n, "bytes": size of the .pyc files}. Raises RuntimeError if the handler fails.
    """
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(shared_code), str(site), str(runtime_dir)]),
        "ARTIFACTS_DIR": str(artifacts_dir),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "LOG_LEVEL": "ERROR",
    }
    command = [python, "-s", "-B", "-c", COMPILE_IMPORTED, str(site), str(REPO_ROOT / "functions" / "api")]
    result = run_json_worker(
        [*command, str(EVENTS)],
        marker="COMPILED",
        env=env,
        timeout_s=300,
        what="compiling the layer's modules",
    )
    return {key: int(value) for key, value in result.items()}


def find_python312() -> str | None:
    """A Python 3.12 interpreter on this machine (pyenv's or on PATH), if any."""
    for candidate in (
        shutil.which("python3.12"),
        *sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")),
    ):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def check_layer_imports(site: Path, python: str, runtime_dir: Path | None = None) -> str:
    """Import and exercise the layer with `python`, only the layer (+ `runtime_dir`) on its path.

    Raises RuntimeError with the interpreter's error when anything fails to load.
    """
    paths = [str(site), *([str(runtime_dir)] if runtime_dir else [])]
    proc = subprocess.run(
        [python, "-s", "-E", "-B", "-c", f"import sys; sys.path[:0] = {paths!r}\n{LAYER_IMPORT_CHECK}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the dependencies layer does not load with {python}:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip()


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
        with tempfile.TemporaryDirectory() as runtime:
            # The checks below need what Lambda's runtime provides besides the layer (boto3 & deps).
            provided = Path(runtime) / "requirements.txt"
            provided.write_text("boto3\n")
            subprocess.run(
                pip_install_command(provided, Path(runtime), config.arch), check=True, capture_output=True
            )
            trim = trim_layer(
                config.deps_dir, strip_tool=find_strip_tool(config.arch) if config.strip else None
            )
            log(f"dependencies: {trim.before:,} B installed -> {trim.after:,} B after trimming")
            for rule, size in trim.removed.items():
                if size:
                    log(f"    removed {rule:<48} {_mb(size)}")
            python = find_python312() if config.arch == platform.machine() else None
            if not python:
                log(f"layer import check and .pyc skipped: no python3.12 for {config.arch} on this machine")
            else:
                log(check_layer_imports(config.deps_dir, python, runtime_dir=Path(runtime)))
                if (config.artifacts_dir / MANIFEST).is_file():
                    compiled = compile_imported_modules(
                        config.deps_dir,
                        python,
                        runtime_dir=Path(runtime),
                        shared_code=config.shared_code,
                        artifacts_dir=config.artifacts_dir,
                    )
                    pyc = _mb(compiled["bytes"])
                    log(f"byte-compiled {compiled['modules']} imported modules: {pyc} of .pyc")
                    # Our own code too, checked-hash: it is edited in place, so a stale .pyc must not win.
                    subprocess.run(
                        [
                            python,
                            "-m",
                            "compileall",
                            "-q",
                            "--invalidation-mode",
                            "checked-hash",
                            str(config.shared_code),
                        ],
                        check=True,
                        capture_output=True,
                    )
                else:
                    log(f".pyc skipped: no artifacts in {config.artifacts_dir} to start the API on")
    sizes = measure(config)
    return LayersResult(trim=trim, sizes=sizes, seconds=round(time.perf_counter() - started, 1))


def synthetic_bundle(
    n: int,
    out_dir: Path,
    model_dir: Path,
    *,
    k: int = 20,
    M: int = 16,
    seed: int = 0,
    synopses: bool = True,
) -> Path:
    """A bundle for a synthetic n-anime catalogue, for the size budget only.

    Sizes depend on n, the dims, each space's index kind and M, not on vector content, so the
    indexes hold random unit vectors of the shipped model's dims (ef_construction is small, for speed). With
    `synopses` (the default: the budget must hold for a build that merged a synopsis file) ~85 % of
    the anime carry ~600 characters of story text, which the catalogue and the lexical index store,
    and the bundle has a story index (random v3-dim rows for them, flat int8 as the index stage's).
    """
    import numpy as np

    from anime_pipeline.synthetic import synthetic_catalogue
    from anime_recommender.artifacts import SPACE_KINDS, STORY, STORY_KIND, STORY_OUTPUT, write_bundle
    from anime_recommender.encoder import CONFIG_FILE, EncoderConfig
    from anime_recommender.index import HNSW_KIND, index_class
    from anime_recommender.neighbours import NeighbourLists

    catalogue = synthetic_catalogue(n, seed, synopses=synopses)
    rng = np.random.default_rng(seed)
    ids = np.array(catalogue.ids, dtype=np.int64)
    neighbour_ids = ids[rng.integers(0, len(ids), size=(len(ids), k))]
    scores = -np.sort(-rng.random((len(ids), k)), axis=1)
    dims = EncoderConfig.load(model_dir / CONFIG_FILE).outputs
    indexes = {
        # Each space as the index stage builds it (V4 hnswlib, V3 flat int8): sizes follow the kind.
        space: index_class(SPACE_KINDS.get(space, HNSW_KIND)).build(
            ids, rng.standard_normal((len(ids), dim)), M=M, ef_construction=16, threads=2
        )
        for space, dim in dims.items()
    }
    told = np.array([a.id for a in catalogue if a.synopsis], dtype=np.int64)
    if len(told):
        story_rows = rng.standard_normal((len(told), dims[STORY_OUTPUT]))
        indexes[STORY] = index_class(STORY_KIND).build(told, story_rows)
    write_bundle(
        out_dir,
        catalogue=catalogue,
        neighbours=NeighbourLists(ids=ids, neighbour_ids=neighbour_ids, scores=scores),
        model_dir=model_dir,
        indexes=indexes,
        extra={"synthetic": True, "note": "random unit vectors: for the size budget only"},
    )
    return out_dir


def default_deps_dir(arch: Arch) -> Path:
    """The dependencies layer's python/ folder for `arch`."""
    return REPO_ROOT / "layers" / ("dependencies" if arch == "x86_64" else f"dependencies-{arch}") / "python"


def default_config(paths: BuildPaths) -> LayersConfig:
    """`anime-build layers` without arguments: install, trim and measure for x86_64."""
    return LayersConfig(deps_dir=default_deps_dir("x86_64"), artifacts_dir=paths.artifacts_dir)


def config_from_args(args: argparse.Namespace, artifacts_dir: Path) -> LayersConfig:
    """The layers configuration the CLI arguments describe, measuring the bundle in `artifacts_dir`."""
    arch: Arch = args.arch
    return LayersConfig(
        deps_dir=Path(args.deps_dir) if args.deps_dir else default_deps_dir(arch),
        artifacts_dir=artifacts_dir,
        arch=arch,
        install=not args.no_install,
        strip=not args.no_strip,
        limit=args.limit,
    )


def run_and_report(config: LayersConfig) -> LayersResult:
    """Build the layers and print the size breakdown."""
    result = build_layers(config, log=_say)
    _say(result.sizes.render())
    return result


def run_default(paths: BuildPaths) -> LayersResult:
    """The layers stage with its defaults (what `anime-build all` runs).

    Raises:
        LayerBudgetExceeded: a function with its layers is over Lambda's unzipped limit.
    """
    result = run_and_report(default_config(paths))
    if not result.sizes.ok:
        raise LayerBudgetExceeded(f"over the {result.sizes.limit:,}-byte unzipped limit (sizes above)")
    return result


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build layers`."""
    paths = BuildPaths.from_env()
    artifacts = Path(args.artifacts_dir) if args.artifacts_dir else paths.artifacts_dir
    if args.synthetic:
        model_dir = Path(args.model_dir) if args.model_dir else artifacts / "model"
        artifacts = paths.work / f"synthetic-{args.synthetic}" / "anime-artifacts"
        _say(f"synthetic {args.synthetic}-anime bundle (random unit vectors) -> {artifacts}")
        synthetic_bundle(args.synthetic, artifacts, model_dir, M=args.M, synopses=not args.no_synopses)
    result = run_and_report(config_from_args(args, artifacts))
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
        "--no-synopses",
        action="store_true",
        help="--synthetic without story text (default: ~85 %% of the anime have ~600 characters)",
    )
    p.add_argument(
        "--M", type=int, default=16, help="hnswlib M for --synthetic indexes (default %(default)s)"
    )
    p.add_argument("--limit", type=int, default=LAMBDA_UNZIPPED_LIMIT_BYTES, help="bytes (default: Lambda's)")
    p.add_argument("--json", help="also write the result as JSON to this file")
    p.set_defaults(func=run)
