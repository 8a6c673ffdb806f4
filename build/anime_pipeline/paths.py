"""Where each build stage reads and writes: one place, so stages agree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BuildPaths:
    """Locations of every intermediate and final build artifact.

    `work` holds intermediates (default `.work/`, or $ANIME_WORK_DIR);
    `artifacts_layer` is the content of the Lambda artifacts layer
    (default `layers/artifacts/`, or $ANIME_ARTIFACTS_LAYER_DIR).
    """

    work: Path
    artifacts_layer: Path
    # A story-text file the default ingest merges (with the anime only it has): $ANIME_STORYTEXT,
    # which `make build STORYTEXT=...` sets together with a work and layer folder of its own.
    storytext: Path | None = None

    @classmethod
    def from_env(cls) -> BuildPaths:
        """Paths from the environment, defaulting to folders inside the repository."""
        work = Path(os.environ.get("ANIME_WORK_DIR", REPO_ROOT / ".work"))
        layer = Path(os.environ.get("ANIME_ARTIFACTS_LAYER_DIR", REPO_ROOT / "layers" / "artifacts"))
        storytext = os.environ.get("ANIME_STORYTEXT") or None
        return cls(work=work, artifacts_layer=layer, storytext=Path(storytext) if storytext else None)

    @property
    def catalogue(self) -> Path:
        return self.work / "catalogue" / "catalogue.jsonl.gz"

    @property
    def ingest_report(self) -> Path:
        return self.work / "catalogue" / "ingest_report.json"

    @property
    def neighbours(self) -> Path:
        return self.work / "teacher" / "neighbours_v2.npz"

    @property
    def triplets(self) -> Path:
        return self.work / "triplets" / "triplets.npz"

    @property
    def models(self) -> Path:
        return self.work / "models"

    @property
    def eval(self) -> Path:
        return self.work / "eval"

    @property
    def artifacts_dir(self) -> Path:
        """The folder inside the artifacts layer; Lambda mounts it at /opt/anime-artifacts."""
        return self.artifacts_layer / "anime-artifacts"
