"""All configuration, read from `BROKER_*` environment variables.

Defaults make a fresh checkout work: SQLite under `var/`, the demo pack,
a key ring under `var/keys`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

METRICS_TOKEN_MIN_CHARS: Final = 32


class Settings(BaseSettings):
    """The broker's settings; one instance is built per process and passed down."""

    # A refused value is not repeated in the error: some settings are secrets.
    model_config = SettingsConfigDict(
        env_prefix="BROKER_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    database_url: str = "sqlite:///./var/broker.db"
    key_dir: Path = Path("var/keys")
    kek_file: Path | None = None
    """The key-encryption key file (default: `kek` in `key_dir`); docs/operations.md."""
    policy_dir: Path = Path("policies/ondermijning")
    issuer: str = "https://sluis.example"
    audience: str = "sluis"
    audit_origin: str = "sluis.example/audit"
    checkpoint_key_name: str = "sluis.example/audit"

    access_token_ttl_seconds: int = Field(default=600, ge=30, le=900)
    token_leeway_seconds: int = Field(default=30, ge=0, le=30)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=8192, ge=1024)

    checkpoint_every_entries: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: float = Field(default=60.0, gt=0)

    policy_follow_seconds: float = Field(default=2.0, gt=0)
    audit_check_seconds: float = Field(default=2.0, gt=0)
    """How often each process checks that the log extends every checkpoint signed or seen."""

    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    db_pool_size: int = Field(default=20, ge=1)
    thread_limit: int = Field(default=40, ge=1)

    token_rate_per_minute: int = Field(default=60, ge=1)
    request_rate_per_minute: int = Field(default=6000, ge=1)
    fishing_subjects_per_hour: int = Field(default=200, ge=1)
    release_budget_per_hour: int = Field(default=1000, ge=1)
    """Signals one client, and one acting person, may be released in an hour (each its own
    budget); over it, 429 and an `alert` entry."""
    disclosure_page_size: int = Field(default=100, ge=1, le=1000)
    """Signals one disclosure answer carries at most; `next_page` continues it."""
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    """How long a first answer stored under an Idempotency-Key is replayed; `broker
    retention run` deletes older ones."""
    replay_days: int = Field(default=30, ge=0, le=366)
    """How long the request journal keeps each accountable request in blind form, for
    `broker policy impact` to replay; 0 keeps none (`broker retention run` deletes older)."""

    metrics_token: SecretStr | None = None
    """The bearer token `/metrics` asks of its scraper (at least 32 characters); unset or
    empty, `/metrics` is off (404)."""

    log_level: str = "INFO"
    debug: bool = False

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token(cls, value: object) -> object:
        if value == "":
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text) < METRICS_TOKEN_MIN_CHARS:
            raise ValueError(f"must be at least {METRICS_TOKEN_MIN_CHARS} characters")
        return value

    @property
    def token_url(self) -> str:
        """The token endpoint's URL: the `aud` a client assertion must carry."""
        return self.issuer.rstrip("/") + "/oauth/token"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def get_settings() -> Settings:
    """Read the settings from the environment now (never at import time)."""
    return Settings()
