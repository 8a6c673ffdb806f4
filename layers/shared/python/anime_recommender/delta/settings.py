"""Environment settings of the delta-update function (the artifact store's part is the domain's)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from anime_recommender.settings import LogLevel, StoreSettings, read_env_settings


class DeltaSettings(StoreSettings):
    """Configuration of the delta-update function."""

    catalogue_source_url: str | None = Field(
        default=None,
        description="s3://bucket/key or https:// URL of the new catalogue (the event may override).",
    )
    synopses_source_url: str | None = Field(
        default=None,
        description="s3://bucket/key, https:// URL or path of a synopsis file (CSV/TSV/JSONL keyed by "
        "MyAnimeList id, as `anime-build ingest --synopses`) merged into each new catalogue; unset: the "
        "serving bundle's story text is carried on.",
    )
    max_removed_fraction: float = Field(default=0.10, ge=0, le=1)
    max_skipped_fraction: float = Field(default=0.05, ge=0, le=1)
    onnx_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="threads of the index worker's hnswlib inserts (it embeds the few added and changed "
        "anime with one onnxruntime thread, beside the function's own work)",
    )
    work_dir: Path = Field(default=Path("/tmp/anime-delta"))
    log_level: LogLevel = "INFO"
    powertools_service_name: str = Field(default="anime-delta-update", min_length=1)
    powertools_metrics_namespace: str = Field(default="AnimeRecommender", min_length=1)

    @field_validator("catalogue_source_url", "synopses_source_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @classmethod
    def from_env(cls) -> DeltaSettings:
        """Read and validate the environment; `SettingsError` naming each bad variable."""
        return read_env_settings(cls, "delta-update")
