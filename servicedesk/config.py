"""Settings, read once from the environment (prefix-free names, as operators expect)."""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob an operator can turn; `docs/configuration.md` lists them with defaults."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development", alias="SERVICEDESK_ENV"
    )
    database_url: str | None = Field(None, alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    data_dir: Path = Field(Path("var"), alias="SERVICEDESK_DATA_DIR")
    secret_key: str | None = Field(None, alias="SECRET_KEY")
    app_db_role: str = Field("servicedesk_app", alias="SERVICEDESK_DB_ROLE")
    db_pool_size: int = Field(10, alias="SERVICEDESK_DB_POOL_SIZE")

    platform_token: str | None = Field(None, alias="SERVICEDESK_PLATFORM_TOKEN")
    """Bearer token for `POST /api/v1/platform/organizations`; unset disables the route."""
    base_domain: str | None = Field(None, alias="SERVICEDESK_BASE_DOMAIN")
    cookie_secure: bool = Field(True, alias="SERVICEDESK_COOKIE_SECURE")
    https: bool = Field(False, alias="SERVICEDESK_HTTPS")

    access_token_minutes: int = Field(15, alias="SERVICEDESK_ACCESS_TOKEN_MINUTES")
    refresh_token_days: int = Field(7, alias="SERVICEDESK_REFRESH_TOKEN_DAYS")
    mfa_token_minutes: int = Field(5, alias="SERVICEDESK_MFA_TOKEN_MINUTES")
    lockout_threshold: int = Field(5, alias="SERVICEDESK_LOCKOUT_THRESHOLD")
    lockout_minutes: int = Field(15, alias="SERVICEDESK_LOCKOUT_MINUTES")

    # Argon2id cost. Defaults follow argon2-cffi's RFC 9106 "low memory" profile.
    argon2_time_cost: int = Field(3, alias="SERVICEDESK_ARGON2_TIME_COST")
    argon2_memory_kib: int = Field(65536, alias="SERVICEDESK_ARGON2_MEMORY_KIB")
    argon2_parallelism: int = Field(4, alias="SERVICEDESK_ARGON2_PARALLELISM")

    # Rate limits in the `limits` notation ("N/period"), per client IP and per account.
    rate_login_ip: str = Field("30/minute", alias="SERVICEDESK_RATE_LOGIN_IP")
    rate_login_account: str = Field("10/minute", alias="SERVICEDESK_RATE_LOGIN_ACCOUNT")
    rate_refresh_ip: str = Field("60/minute", alias="SERVICEDESK_RATE_REFRESH_IP")
    rate_register_ip: str = Field("10/hour", alias="SERVICEDESK_RATE_REGISTER_IP")

    # File attachments: where bodies are stored, the upload limit, download link lifetime.
    storage_backend: Literal["local", "s3"] = Field("local", alias="SERVICEDESK_STORAGE_BACKEND")
    files_dir: Path | None = Field(None, alias="SERVICEDESK_FILES_DIR")
    """Directory of the `local` backend; unset: `<data dir>/files`."""
    s3_bucket: str | None = Field(None, alias="SERVICEDESK_S3_BUCKET")
    s3_prefix: str = Field("", alias="SERVICEDESK_S3_PREFIX")
    s3_endpoint_url: str | None = Field(None, alias="SERVICEDESK_S3_ENDPOINT_URL")
    """Unset: AWS S3; set for MinIO, Ceph, R2 and other S3-compatible servers."""
    s3_region: str | None = Field(None, alias="SERVICEDESK_S3_REGION")
    s3_access_key_id: str | None = Field(None, alias="SERVICEDESK_S3_ACCESS_KEY_ID")
    s3_secret_access_key: str | None = Field(None, alias="SERVICEDESK_S3_SECRET_ACCESS_KEY")
    """Both keys unset: boto3's own chain (AWS_* variables, profile, instance role)."""
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, alias="SERVICEDESK_MAX_UPLOAD_BYTES")
    download_link_seconds: int = Field(300, ge=1, alias="SERVICEDESK_DOWNLOAD_LINK_SECONDS")

    tenant_cache_seconds: float = Field(60.0, alias="SERVICEDESK_TENANT_CACHE_SECONDS")
    log_level: str = Field("INFO", alias="SERVICEDESK_LOG_LEVEL")
    log_json: bool = Field(True, alias="SERVICEDESK_LOG_JSON")
    run_migrations_on_start: bool = Field(True, alias="SERVICEDESK_MIGRATE_ON_START")

    @field_validator("app_db_role")
    @classmethod
    def _role_name(cls, value: str) -> str:
        # Tenant sessions switch to this role for row-level security; it cannot be switched off.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("must be a lowercase PostgreSQL role name")
        return value

    @field_validator("rate_login_ip", "rate_login_account", "rate_refresh_ip", "rate_register_ip")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parsed = parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '30/minute': {exc}") from exc
        if len(parsed) != 1:
            raise ValueError("give exactly one limit, like '30/minute'")
        return value

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    def resolved_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
