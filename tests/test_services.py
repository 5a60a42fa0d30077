"""Machine services: Redis-backed rate limits shared across processes; PostgreSQL 15 support.

With SERVICEDESK_REQUIRE_SERVICES=1 (CI) these fail instead of skipping when a service is down.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select, text

from servicedesk.app import create_app
from servicedesk.core import migrate
from servicedesk.core.db import Database
from servicedesk.core.ratelimit import RateLimiter
from servicedesk.models import Organization
from tests.conftest import (
    PG15_URL,
    REDIS_URL,
    client_for,
    fresh_database,
    require_service,
    test_settings,
)


def _require_redis() -> None:
    parsed = urlparse(REDIS_URL)
    require_service("Redis", parsed.hostname or "127.0.0.1", parsed.port or 6379)


@pytest.fixture
async def redis_limiter() -> RateLimiter:
    _require_redis()
    return RateLimiter(REDIS_URL)


async def test_redis_rate_limit_is_shared_between_limiters(redis_limiter: RateLimiter) -> None:
    """Two limiters (two processes) on one Redis count the same window."""
    other = RateLimiter(REDIS_URL)
    key = secrets.token_hex(6)
    await redis_limiter.hit("3/minute", "test", key)
    await other.hit("3/minute", "test", key)
    await redis_limiter.hit("3/minute", "test", key)
    with pytest.raises(Exception, match="Too many requests") as info:
        await other.hit("3/minute", "test", key)
    assert info.value.headers["Retry-After"].isdigit()  # type: ignore[attr-defined]


async def test_login_limit_across_two_app_processes(database_url: str, org: Organization) -> None:
    """Per-account login limit holds across two app instances sharing REDIS_URL."""
    _require_redis()
    settings = test_settings(REDIS_URL=REDIS_URL, SERVICEDESK_RATE_LOGIN_ACCOUNT="4/minute")
    app1 = create_app(settings, database_url=database_url)
    app2 = create_app(settings, database_url=database_url)
    email = f"shared-{secrets.token_hex(4)}@example.com"
    statuses = []
    try:
        for i in range(6):
            app = app1 if i % 2 == 0 else app2
            async with client_for(app) as c:
                r = await c.post(
                    "/api/v1/auth/login",
                    json={"email": email, "password": "not-the-password"},
                    headers={"X-Tenant-ID": org.slug},
                )
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["Retry-After"]) >= 1
    finally:
        await app1.state.runtime.db.dispose()
        await app2.state.runtime.db.dispose()
    assert statuses[:4] == [401, 401, 401, 401]
    assert statuses[4:] == [429, 429]


async def test_postgresql_15_runs_migrations_and_rls(worker_id: str) -> None:
    """The machine's PostgreSQL 15 (no pgvector) takes the migrations and enforces RLS."""
    parsed = urlparse(PG15_URL)
    require_service("PostgreSQL 15", parsed.hostname or "127.0.0.1", parsed.port or 5432)
    url = fresh_database(PG15_URL, f"servicedesk_pg15_{worker_id}")
    migrate.upgrade(url)
    db = Database(url, app_role="servicedesk_app", pool_size=2)
    try:
        async with db.session() as session:
            version = (await session.execute(text("SHOW server_version_num"))).scalar_one()
            a = Organization(slug=f"a{secrets.token_hex(4)}", name="A")
            b = Organization(slug=f"b{secrets.token_hex(4)}", name="B")
            session.add_all([a, b])
        assert int(version) >= 150000
        async with db.tenant_session(a.id) as session:
            visible = (
                await session.execute(select(func.count()).select_from(Organization))
            ).scalar_one()
        assert visible == 1
    finally:
        await db.dispose()
