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
    storytext_source_url: str | None = Field(
        default=None,
        description="s3://bucket/key, https:// URL or path of a story-text file keyed by MyAnimeList id "
        "(the story-text JSONL or the synopsis CSV, as `anime-build ingest --storytext`) merged into each "
        "new catalogue; unset: SYNOPSES_SOURCE_URL, else the serving bundle's story text is carried on.",
    )
    synopses_source_url: str | None = Field(
        default=None,
        description="the older name of STORYTEXT_SOURCE_URL (a synopsis file), used when that is unset.",
    )
    storytext_adds: bool = Field(
        default=False,
        description="whether the anime only the story-text file has join the catalogue (as the build's "
        "`--storytext-adds`: a bundle built with them needs it, or the update refuses the shrink).",
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

    @field_validator("catalogue_source_url", "storytext_source_url", "synopses_source_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("storytext_adds", mode="before")
    @classmethod
    def _empty_flag_is_false(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return False
        return value

    @property
    def story_text_url(self) -> str | None:
        """Where the story-text file is: STORYTEXT_SOURCE_URL, else the older SYNOPSES_SOURCE_URL."""
        return self.storytext_source_url or self.synopses_source_url

    @classmethod
    def from_env(cls) -> DeltaSettings:
        """Read and validate the environment; `SettingsError` naming each bad variable."""
        return read_env_settings(cls, "delta-update")
