"""Settings read from the environment once per container (cold start): the artifact store's
(`StoreSettings`, both functions) and the API function's (`ApiSettings`, extending them).

A missing, empty or malformed variable fails at import time with an error naming the variable,
so a misconfigured deployment never starts serving. The delta function's settings extend
`StoreSettings` in `delta/settings.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from anime_recommender.prefetch import DEFAULT_ARTIFACTS_DIR
from anime_recommender.store import ArtifactStore, LocalArtifactStore, S3ArtifactStore


class SettingsError(RuntimeError):
    """The environment does not describe a valid configuration; the message names each variable."""


def _upper_level(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


# Accepts "info", " Debug " etc. as environment values; shared by every function's settings.
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper_level)]

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def read_env_settings(cls: type[SettingsT], label: str) -> SettingsT:
    """Build a settings model from the environment; `SettingsError` naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        raise SettingsError(f"invalid {label} configuration: {describe_env_errors(exc)}") from None


class StoreSettings(BaseSettings):
    """Where published versions and the pointer live; neither bucket nor local store = layer only."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    artifacts_dir: Path = Field(
        default=DEFAULT_ARTIFACTS_DIR,
        description="Folder with manifest.json, catalogue, model, indexes (the artifacts layer).",
    )
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
    def _empty_store_is_unset(cls, value: object) -> object:
        # SAM passes optional parameters as empty strings; treat them as "not configured".
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


class ApiSettings(StoreSettings):
    """Configuration of the recommendation API (one env var per field, upper-case names)."""

    cache_table_name: str | None = Field(
        default=None, description="DynamoDB cache table; unset or empty → in-process LRU cache."
    )
    cache_endpoint_url: str | None = Field(
        default=None, description="DynamoDB endpoint override (moto, DynamoDB Local); unset in AWS."
    )
    cache_ttl_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)
    cache_timeout_seconds: float = Field(
        default=0.25, gt=0, le=5, description="Connect and read timeout of each cache call."
    )
    cache_max_item_bytes: int = Field(
        default=100_000, ge=1_024, le=350_000, description="Larger (compressed) responses are not cached."
    )
    local_cache_size: int = Field(default=2_048, ge=0, le=1_000_000)
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; empty = none."
    )
    max_query_length: int = Field(default=2_048, ge=64, le=65_536, description="Bytes of query string.")
    max_body_bytes: int = Field(default=16_384, ge=256, le=1_048_576)
    max_import_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1_024,
        le=4_500_000,
        description="Bytes of an uploaded list (POST /recommendations/import). API Gateway base64-encodes "
        "binary bodies (4/3 larger) inside Lambda's 6 MB payload, hence at most ~4.5 MB.",
    )
    max_import_expanded_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1_024,
        le=256 * 1024 * 1024,
        description="Bytes of a list once decompressed.",
    )
    max_import_entries: int = Field(
        default=10_000, ge=1, le=100_000, description="Entries of an uploaded list."
    )
    max_text_length: int = Field(default=300, ge=8, le=4_096, description="Characters of q in /search.")
    onnx_threads: int = Field(default=1, ge=1, le=64)
    log_level: LogLevel = "INFO"
    powertools_service_name: str = Field(default="anime-recommender-api", min_length=1)
    powertools_metrics_namespace: str = Field(default="AnimeRecommender", min_length=1)

    @field_validator("cache_table_name", "cache_endpoint_url", mode="before")
    @classmethod
    def _empty_cache_is_unset(cls, value: object) -> object:
        # As StoreSettings' (SAM passes unset parameters as ""); its own name, or it would replace that one.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("https://", "http://")):
                raise ValueError(f"origin {origin!r} must start with https:// or http://")
        return value

    @classmethod
    def from_env(cls) -> ApiSettings:
        """Read and validate the environment; raise `SettingsError` naming each bad variable."""
        return read_env_settings(cls, "API")


def describe_env_errors(exc: ValidationError) -> str:
    """'VARIABLE: message; …' for each invalid environment variable of a settings model."""
    return "; ".join(
        f"{str(err['loc'][0]).upper() if err['loc'] else '?'}: {err['msg']}" for err in exc.errors()
    )
