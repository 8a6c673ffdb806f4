"""`anime-build layers`: trimming rules and the size budget, on small fake layers (no pip by default)."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.cli import main
from anime_pipeline.index_stage import brute_force_top_k, choose_ef
from anime_pipeline.layers import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    LayersConfig,
    elf_segments_loadable,
    find_python312,
    measure,
    pip_install_command,
    strip_shared_objects,
    trim_layer,
)
from anime_recommender.index import VectorIndex


def _write(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path.as_posix()


def _dist(site: Path, name: str, version: str, files: dict[str, int]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Name: {name}\n")
    rows = []
    for rel, size in files.items():
        _write(site / rel, size)
        rows.append(f"{rel},sha256={hashlib.sha256(b'x' * size).hexdigest()},{size}")
    rows.append(f"{info.name}/METADATA,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    site = tmp_path / "python"
    _dist(site, "botocore", "1.0", {"botocore/__init__.py": 100, "botocore/data/s3.json": 5000})
    _dist(site, "huggingface_hub", "1.0", {"huggingface_hub/__init__.py": 3000})
    _dist(site, "python_dateutil", "2.9.0.post0", {"dateutil/__init__.py": 700})
    _dist(
        site,
        "numpy",
        "2.4.6",
        {
            "numpy/__init__.py": 1000,
            "numpy/_core/tests/test_x.py": 4000,
            "numpy/_core/_umath_tests.cpython-312-x86_64-linux-gnu.so": 300,
            "numpy/f2py/__init__.py": 900,
            "numpy/__init__.pyi": 50,
        },
    )
    _dist(
        site,
        "onnxruntime",
        "1.32.0",
        {
            "onnxruntime/__init__.py": 200,
            "onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so": 9000,
            "onnxruntime/capi/libonnxruntime.so.1.32.0": 8000,
            "onnxruntime/capi/libonnxruntime_providers_shared.so": 10,
            "onnxruntime/transformers/big.py": 2000,
            "onnxruntime/__pycache__/x.cpython-311.pyc": 400,
        },
    )
    return site


def test_trim_removes_what_the_runtime_never_loads(fake_site: Path) -> None:
    report = trim_layer(fake_site, strip_tool=None)
    assert report.removed["runtime-provided dists: botocore"] >= 5100
    assert report.removed["runtime-provided dists: python_dateutil"] >= 700
    assert report.removed["unused dists: huggingface_hub"] >= 3000
    assert report.removed["test suites"] == 4300
    assert report.removed["onnxruntime C-API lib"] == 8000
    assert report.removed["onnxruntime offline tools"] == 2000
    assert report.removed["__pycache__"] == 400
    assert report.removed["numpy f2py"] == 900 and report.removed["type stubs"] == 50
    for gone in ("botocore", "dateutil", "huggingface_hub", "numpy/_core/tests", "onnxruntime/transformers"):
        assert not (fake_site / gone).exists()
    # what the runtime loads stays
    for kept in (
        "numpy/__init__.py",
        "onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so",
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
        "numpy-2.4.6.dist-info/METADATA",
    ):
        assert (fake_site / kept).is_file(), kept
    assert report.after == report.before - sum(report.removed.values())


def _config(tmp_path: Path, site: Path, limit: int) -> LayersConfig:
    artifacts = tmp_path / "anime-artifacts"
    _write(artifacts / "index_v4" / "index.bin", 7000)
    _write(artifacts / "manifest.json", 100)
    shared = tmp_path / "shared"
    _write(shared / "anime_recommender" / "index.py", 500)
    fn = tmp_path / "functions" / "api"
    _write(fn / "app.py", 300)
    return LayersConfig(
        deps_dir=site,
        artifacts_dir=artifacts,
        install=False,
        shared_code=shared,
        function_dirs=(fn,),
        limit=limit,
    )


def test_size_report_sums_every_layer_and_the_function(fake_site: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, fake_site, limit=LAMBDA_UNZIPPED_LIMIT_BYTES)
    report = measure(config)
    deps = sum(p.stat().st_size for p in fake_site.rglob("*") if p.is_file())
    assert report.total == deps + 7100 + 500 + 300
    assert report.layer_totals["artifacts"] == 7100
    assert report.layers["artifacts"] == {"index_v4": 7000, "manifest.json": 100}
    assert report.ok
    text = report.render()
    assert "TOTAL" in text and "OK" in text and "index_v4" in text


def test_size_check_fails_over_the_limit(fake_site: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, fake_site, limit=1000)
    assert not measure(config).ok
    assert "OVER THE LIMIT" in measure(config).render()
    args = [
        "layers",
        "--no-install",
        "--deps-dir",
        str(fake_site),
        "--artifacts-dir",
        str(config.artifacts_dir),
    ]
    assert main([*args, "--limit", "1000"]) == 1
    assert main([*args, "--limit", str(10**9)]) == 0


@pytest.mark.parametrize(
    ("arch", "platform"), [("x86_64", "manylinux2014_x86_64"), ("arm64", "manylinux2014_aarch64")]
)
def test_pip_command_targets_lambda_wheels(tmp_path: Path, arch: str, platform: str) -> None:
    cmd = pip_install_command(tmp_path / "req.txt", tmp_path / "python", arch)  # type: ignore[arg-type]
    joined = " ".join(cmd)
    assert f"--platform {platform}" in joined and "--only-binary=:all:" in cmd
    assert "--python-version 3.12" in joined and "--implementation cp" in joined
    assert "--no-compile" in cmd and f"--target {tmp_path / 'python'}" in joined


def test_choose_ef_picks_the_smallest_ef_reaching_the_gate() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1200, 24)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1200, dtype=np.int64) * 5
    index = VectorIndex.build(ids, vecs, M=8, ef_construction=40)
    queries = vecs[:200]
    truth = brute_force_top_k(vecs, queries, 10)
    np.testing.assert_array_equal(truth[:, 0], np.arange(200))  # each item is its own nearest
    ef, recall, by_ef = choose_ef(index, ids, vecs, queries, k=10, target=0.99)
    assert recall >= 0.99 and index.params.ef == ef
    assert all(r < 0.99 for e, r in by_ef.items() if e < ef)


def _elf(loads: list[tuple[int, int]]) -> bytes:
    """A minimal little-endian ELF64 header plus one PT_LOAD program header per (offset, vaddr)."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, len(loads))  # e_phentsize, e_phnum
    table = b"".join(
        struct.pack("<IIQQQQQQ", 1, 4, off, vaddr, vaddr, 16, 16, 0x1000) for off, vaddr in loads
    )
    return bytes(header) + table


def test_elf_check_flags_segments_the_loader_refuses(tmp_path: Path) -> None:
    # A segment whose file offset and address disagree modulo the page size is what strip tools made
    # of numpy's patchelf-edited OpenBLAS; dlopen refuses it ("address/offset not page-aligned").
    good, bad, text = tmp_path / "good.so", tmp_path / "bad.so", tmp_path / "x.txt"
    good.write_bytes(_elf([(0, 0), (0x288800, 0x289800)]))
    bad.write_bytes(_elf([(0, 0), (0x1621098, 0x166B000)]))
    text.write_text("not an ELF file")
    assert elf_segments_loadable(good) and elf_segments_loadable(text)
    assert not elf_segments_loadable(bad)


def test_strip_keeps_the_original_when_stripping_would_break_it(tmp_path: Path) -> None:
    # A stand-in strip tool that always produces a misaligned file: the library keeps its bytes.
    site = tmp_path / "python"
    library = site / "numpy.libs" / "libopenblas.so"
    library.parent.mkdir(parents=True)
    original = _elf([(0, 0), (0x288800, 0x289800)]) + b"\0" * 4096
    library.write_bytes(original)
    tool = tmp_path / "strip"
    tool.write_text(
        "#!/usr/bin/env python3\nimport sys, pathlib\n"
        f"pathlib.Path(sys.argv[-1]).write_bytes({_elf([(0, 0), (0x1621098, 0x166B000)])!r})\n"
    )
    tool.chmod(0o755)
    assert strip_shared_objects(site, str(tool)) == 0
    assert library.read_bytes() == original
    assert [p.name for p in library.parent.iterdir()] == ["libopenblas.so"]  # no temp file left


@pytest.mark.slow
def test_real_dependencies_layer_is_trimmed_and_under_budget(tmp_path: Path) -> None:
    # The real pip install + trim + strip; with a python3.12 here, build_layers also imports the
    # layer and runs numpy, hnswlib and onnxruntime from it (and raises if anything fails to load).
    from anime_pipeline.layers import build_layers

    site = tmp_path / "python"
    logged: list[str] = []
    build_layers(LayersConfig(deps_dir=site, artifacts_dir=tmp_path / "none"), log=logged.append)
    assert not (site / "botocore").exists() and not (site / "huggingface_hub").exists()
    assert (site / "onnxruntime" / "capi").is_dir() and (
        site / "hnswlib.cpython-312-x86_64-linux-gnu.so"
    ).is_file()
    out = subprocess.run(["du", "-sb", str(site)], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[0]) < 125_000_000
    assert all(elf_segments_loadable(so) for so in site.rglob("*.so*"))
    if find_python312():
        assert any(line.startswith("layer imports ok") for line in logged)


def test_the_synthetic_budget_bundle_carries_story_text_and_its_lexical_index(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from anime_pipeline.layers import synthetic_bundle
    from anime_recommender.artifacts import load_bundle

    bundle = load_bundle(synthetic_bundle(300, tmp_path / "anime-artifacts", tiny_model_dir, M=8))
    told = [a for a in bundle.catalogue if a.synopsis]
    assert 0.7 < len(told) / len(bundle.catalogue) < 0.95
    assert bundle.lexical is not None
    # the story index a build with synopses ships is in the budget: one row per anime with a synopsis
    assert bundle.story is not None and bundle.story.ids.tolist() == sorted(a.id for a in told)
    # a made-up word of one synopsis (the tail of the vocabulary) finds that anime
    counts = Counter(w.strip(".").lower() for a in told for w in set(a.synopsis.split()))
    rare = next(
        w for a in told for w in a.synopsis.split() if counts[w.strip(".").lower()] == 1 and len(w) > 6
    )
    owner = next(a.id for a in told if rare in a.synopsis.split())
    assert bundle.lexical.search(rare.strip(".").lower(), 1)[0].anime_id == owner
