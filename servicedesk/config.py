"""Settings, read once from the environment (prefix-free names, as operators expect)."""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

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
    db_pool_size: int = Field(20, alias="SERVICEDESK_DB_POOL_SIZE")

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
    rate_preview_user: str = Field("60/minute", alias="SERVICEDESK_RATE_PREVIEW_USER")

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

    # Notifications (docs/notifications.md): outgoing mail, web push, de-duplication, digests.
    smtp_url: str | None = Field(None, alias="SMTP_URL")
    """`smtp://user:pass@host:587` (STARTTLS when offered), `smtps://…:465`; unset: no email."""
    smtp_from: str = Field("servicedesk@localhost", alias="SMTP_FROM")
    smtp_timeout_seconds: float = Field(30.0, gt=0, alias="SERVICEDESK_SMTP_TIMEOUT_SECONDS")
    mail_domain: str | None = Field(None, alias="SERVICEDESK_MAIL_DOMAIN")
    """Right-hand side of Message-IDs; unset: the domain of `SMTP_FROM`."""
    public_url: str = Field("http://localhost:8000", alias="SERVICEDESK_PUBLIC_URL")
    """Where people reach the desk; links in emails and push messages start with it."""
    vapid_private_key: str | None = Field(None, alias="SERVICEDESK_VAPID_PRIVATE_KEY")
    """Web push signing key (base64url raw P-256 key or PEM); unset: no web push."""
    vapid_public_key: str | None = Field(None, alias="SERVICEDESK_VAPID_PUBLIC_KEY")
    """The application server key browsers subscribe with (base64url, uncompressed point)."""
    vapid_subject: str = Field("mailto:servicedesk@localhost", alias="SERVICEDESK_VAPID_SUBJECT")
    push_hosts: str = Field(
        "fcm.googleapis.com,push.services.mozilla.com,push.apple.com,notify.windows.com",
        alias="SERVICEDESK_PUSH_HOSTS",
    )
    """Push services a subscription may point at (host or parent domain, comma-separated):
    the server POSTs to the endpoint, so it must not be any address a client names."""
    notify_dedup_minutes: int = Field(10, ge=0, le=1440, alias="SERVICEDESK_NOTIFY_DEDUP_MINUTES")
    notify_digest_threshold: int = Field(
        5, ge=1, le=1000, alias="SERVICEDESK_NOTIFY_DIGEST_THRESHOLD"
    )
    """N: a user who was sent N emails in the last M minutes gets the next ones as a digest."""
    notify_digest_minutes: int = Field(10, ge=1, le=1440, alias="SERVICEDESK_NOTIFY_DIGEST_MINUTES")
    """M: the window of the digest threshold, and how long a digest collects."""
    email_max_attempts: int = Field(5, ge=1, le=50, alias="SERVICEDESK_EMAIL_MAX_ATTEMPTS")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must look like smtp://user:pass@host:port or smtps://host")
        parts.port  # noqa: B018  # raises ValueError on a port that is not a number
        return value

    # Jobs (docs/jobs.md): the outbox dispatcher, workers, retries, periodic jobs.
    inprocess_worker: bool | None = Field(None, alias="SERVICEDESK_INPROCESS_WORKER")
    """Run dispatcher, worker and scheduler inside `servicedesk serve`; unset: only when
    DATABASE_URL is unset (the embedded default)."""
    jobs_concurrency: int = Field(8, ge=1, le=500, alias="SERVICEDESK_JOBS_CONCURRENCY")
    jobs_max_attempts: int = Field(8, ge=1, le=100, alias="SERVICEDESK_JOBS_MAX_ATTEMPTS")
    jobs_retry_base_seconds: float = Field(2.0, gt=0, alias="SERVICEDESK_JOBS_RETRY_BASE_SECONDS")
    jobs_retry_max_seconds: float = Field(3600.0, gt=0, alias="SERVICEDESK_JOBS_RETRY_MAX_SECONDS")
    jobs_poll_seconds: float = Field(2.0, gt=0, le=60, alias="SERVICEDESK_JOBS_POLL_SECONDS")
    """Fallback polling of the outbox and the queue (both also wake on LISTEN/NOTIFY)."""
    jobs_heartbeat_seconds: float = Field(10.0, gt=0, alias="SERVICEDESK_JOBS_HEARTBEAT_SECONDS")
    jobs_stalled_seconds: float = Field(60.0, gt=0, alias="SERVICEDESK_JOBS_STALLED_SECONDS")
    """A worker silent this long is dead: its running jobs are retried elsewhere."""
    jobs_dispatch_batch: int = Field(200, ge=1, le=5000, alias="SERVICEDESK_JOBS_DISPATCH_BATCH")
    jobs_retention_days: int = Field(30, ge=1, alias="SERVICEDESK_JOBS_RETENTION_DAYS")
    attachment_purge_days: int = Field(30, ge=0, le=3650, alias="SERVICEDESK_ATTACHMENT_PURGE_DAYS")
    """Days a deleted attachment (or one of a deleted comment) keeps its stored file."""
    handler_modules: str | None = Field(None, alias="SERVICEDESK_HANDLER_MODULES")
    """Comma-separated modules with handlers, replacing the built-in list (see core/jobs.py)."""
    extra_handler_modules: str | None = Field(None, alias="SERVICEDESK_EXTRA_HANDLER_MODULES")
    """Comma-separated modules with handlers, added to the list."""

    # Live updates and the shared cache (docs/live.md).
    redis_prefix: str = Field("servicedesk", min_length=1, alias="SERVICEDESK_REDIS_PREFIX")
    """Start of every Redis key and pub/sub channel; deployments sharing a Redis need their own."""
    live_presence_seconds: float = Field(30.0, gt=0, alias="SERVICEDESK_LIVE_PRESENCE_SECONDS")
    live_typing_seconds: float = Field(5.0, gt=0, alias="SERVICEDESK_LIVE_TYPING_SECONDS")
    live_replying_seconds: float = Field(30.0, gt=0, alias="SERVICEDESK_LIVE_REPLYING_SECONDS")
    live_sse_heartbeat_seconds: float = Field(
        15.0, gt=0, alias="SERVICEDESK_LIVE_SSE_HEARTBEAT_SECONDS"
    )
    live_sse_max_seconds: float = Field(300.0, gt=0, alias="SERVICEDESK_LIVE_SSE_MAX_SECONDS")
    """An SSE stream ends after this long; the browser reconnects and resumes by Last-Event-ID."""
    live_send_queue: int = Field(500, ge=1, alias="SERVICEDESK_LIVE_SEND_QUEUE")
    """Messages waiting for one slow client before its connection is closed (1013)."""
    live_max_connections: int = Field(20_000, ge=1, alias="SERVICEDESK_LIVE_MAX_CONNECTIONS")
    """WebSocket + SSE connections one process accepts."""
    tenant_cache_seconds: float = Field(60.0, alias="SERVICEDESK_TENANT_CACHE_SECONDS")
    user_cache_seconds: float = Field(30.0, alias="SERVICEDESK_USER_CACHE_SECONDS")
    """How long a process trusts its cached authorization facts of a user (docs/live.md)."""
    category_cache_seconds: float = Field(300.0, alias="SERVICEDESK_CATEGORY_CACHE_SECONDS")
    ticket_cache_seconds: float = Field(60.0, alias="SERVICEDESK_TICKET_CACHE_SECONDS")
    log_level: str = Field("INFO", alias="SERVICEDESK_LOG_LEVEL")
    gc_threshold: str = Field("50000,20,10", alias="SERVICEDESK_GC_THRESHOLD")
    """Python's cyclic GC thresholds for server processes (gen0 allocations, gen1, gen2).
    CPython's 700,10,10 makes full collections of a large heap stall the event loop."""
    log_json: bool = Field(True, alias="SERVICEDESK_LOG_JSON")
    run_migrations_on_start: bool = Field(True, alias="SERVICEDESK_MIGRATE_ON_START")

    @field_validator("gc_threshold")
    @classmethod
    def _gc_threshold(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",")]
        if len(parts) != 3 or not all(p.isdigit() and 0 < int(p) <= 10_000_000 for p in parts):
            raise ValueError("three positive integers, e.g. 50000,20,10")
        return ",".join(parts)

    @property
    def gc_thresholds(self) -> tuple[int, int, int]:
        a, b, c = (int(p) for p in self.gc_threshold.split(","))
        return a, b, c

    @field_validator("app_db_role")
    @classmethod
    def _role_name(cls, value: str) -> str:
        # Tenant sessions switch to this role for row-level security; it cannot be switched off.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("must be a lowercase PostgreSQL role name")
        return value

    @field_validator(
        "rate_login_ip",
        "rate_login_account",
        "rate_refresh_ip",
        "rate_register_ip",
        "rate_preview_user",
    )
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
    def runs_inprocess_worker(self) -> bool:
        """Whether `servicedesk serve` runs the job system in its own process."""
        if self.inprocess_worker is not None:
            return self.inprocess_worker
        return not self.database_url

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
