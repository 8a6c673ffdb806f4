"""Environment settings of the artifact store (both functions) and of the delta update."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from anime_recommender.delta.store import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from anime_recommender.settings import LogLevel, read_env_settings


class StoreSettings(BaseSettings):
    """Where published versions and the pointer live; neither bucket nor local store = layer only."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    artifacts_dir: Path = Field(default=Path("/opt/anime-artifacts"), description="The layer's bundle.")
    artifacts_bucket: str | None = Field(default=None, description="S3 bucket of published versions.")
    artifacts_pointer_key: str = Field(default="current.json", min_length=1)
    artifacts_prefix: str = Field(default="versions", min_length=1)
    artifacts_endpoint_url: str | None = Field(default=None, description="S3 endpoint override (moto).")
    artifacts_local_store: Path | None = Field(
        default=None,
        description="A local folder with the store's layout (local demo); used without a bucket.",
    )
    artifacts_cache_dir: Path = Field(
        default=Path("/tmp/anime-artifacts"), description="Where downloaded versions are kept (Lambda: /tmp)."
    )
    pointer_check_seconds: float = Field(default=60.0, ge=0, description="0 = check on every request.")

    @field_validator("artifacts_bucket", "artifacts_endpoint_url", "artifacts_local_store", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def store(self) -> ArtifactStore | None:
        """The configured store (S3 wins over a local folder), or None."""
        if self.artifacts_bucket:
            return S3ArtifactStore(
                self.artifacts_bucket,
                pointer_key=self.artifacts_pointer_key,
                prefix=self.artifacts_prefix,
                endpoint_url=self.artifacts_endpoint_url,
            )
        if self.artifacts_local_store is not None:
            return LocalArtifactStore(
                self.artifacts_local_store,
                pointer_key=self.artifacts_pointer_key,
                prefix=self.artifacts_prefix,
            )
        return None


class DeltaSettings(StoreSettings):
    """Configuration of the delta-update function."""

    catalogue_source_url: str | None = Field(
        default=None,
        description="s3://bucket/key or https:// URL of the new catalogue (the event may override).",
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

    @field_validator("catalogue_source_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @classmethod
    def from_env(cls) -> DeltaSettings:
        """Read and validate the environment; `SettingsError` naming each bad variable."""
        return read_env_settings(cls, "delta-update")
