"""The process-wide objects a request needs, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from servicedesk.config import Settings
from servicedesk.core.db import Database
from servicedesk.core.ratelimit import RateLimiter
from servicedesk.core.security import PasswordHashing, SecretBox, TokenSigner
from servicedesk.core.storage import Storage, build_storage


@dataclass
class Runtime:
    settings: Settings
    db: Database
    hasher: PasswordHashing
    signer: TokenSigner
    secrets: SecretBox
    limiter: RateLimiter
    storage: Storage
    extras: dict[str, Any]

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Runtime:
        secret = settings.resolved_secret_key()
        return cls(
            settings=settings,
            db=Database(
                database_url, app_role=settings.app_db_role, pool_size=settings.db_pool_size
            ),
            hasher=PasswordHashing(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            ),
            signer=TokenSigner(secret),
            secrets=SecretBox(secret),
            limiter=RateLimiter(settings.redis_url),
            storage=build_storage(settings),
            extras={},
        )


def get_runtime(conn: HTTPConnection) -> Runtime:
    runtime: Runtime = conn.app.state.runtime
    return runtime
