"""Test harness: a real PostgreSQL (embedded by default, or DATABASE_URL), built by migrations.

Each xdist worker gets its own database, migrated with Alembic (so every run tests the
migrations). Tests isolate by creating their own organizations with random slugs; nothing is
shared between tests but the schema.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from servicedesk.accounts import service as accounts
from servicedesk.accounts.schemas import UserCreate
from servicedesk.app import create_app
from servicedesk.config import Settings
from servicedesk.core import migrate
from servicedesk.core.actor import SYSTEM
from servicedesk.core.embedded import EmbeddedPostgres, ensure_database
from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, Role, User, UserStatus
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.schemas import OrganizationCreate

REQUIRE_SERVICES = os.environ.get("SERVICEDESK_REQUIRE_SERVICES") == "1"
PG15_URL = os.environ.get(
    "SERVICEDESK_TEST_PG15_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SERVICEDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "Correct-Horse-Battery-9"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a machine service is absent, unless CI demands it (then fail)."""
    if _reachable(host, port):
        return
    message = f"{name} at {host}:{port} is not reachable"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (SERVICEDESK_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def test_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "SERVICEDESK_ENV": "test",
        "SECRET_KEY": "test-secret-" + "x" * 40,
        "SERVICEDESK_COOKIE_SECURE": False,
        # A cheap Argon2id profile for tests only; production keeps the defaults.
        "SERVICEDESK_ARGON2_TIME_COST": 1,
        "SERVICEDESK_ARGON2_MEMORY_KIB": 8192,
        "SERVICEDESK_ARGON2_PARALLELISM": 1,
        "SERVICEDESK_LOG_JSON": True,
        "SERVICEDESK_TENANT_CACHE_SECONDS": 60,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="session")
def server_url(worker_id: str) -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL if set, else an embedded one for this worker."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    data_dir = Path(tempfile.mkdtemp(prefix=f"sd-pg-{worker_id}-"))
    server = EmbeddedPostgres(data_dir / "pg")
    url = server.start(database="postgres")
    try:
        yield url
    finally:
        server.stop()


def fresh_database(server_url: str, name: str) -> str:
    """Drop and recreate database `name` on the server; return its URL."""
    admin = make_url(server_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ensure_database(server_url, name)
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(server_url: str, worker_id: str) -> str:
    url = fresh_database(server_url, f"servicedesk_test_{worker_id}")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings() -> Settings:
    return test_settings()


@pytest.fixture(scope="session")
async def app(settings: Settings, database_url: str) -> AsyncIterator[object]:
    application = create_app(settings, database_url=database_url)
    yield application
    await application.state.runtime.db.dispose()


@pytest.fixture(scope="session")
def runtime(app: object) -> Runtime:
    return app.state.runtime  # type: ignore[attr-defined, no-any-return]


_ips = itertools.count(1)


def client_for(app: object, *, ip: str | None = None, **kwargs: object) -> httpx.AsyncClient:
    """An HTTP client into the app; each gets its own client IP so rate limits are per test."""
    n = next(_ips)
    ip = ip or f"10.{(os.getpid() % 250)}.{n // 250}.{n % 250 + 1}"
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest.fixture
def make_org(runtime: Runtime) -> Callable[..., Awaitable[Organization]]:
    async def factory(name: str = "Org") -> Organization:
        slug = f"t{secrets.token_hex(5)}"
        async with runtime.db.session() as session:
            return await tenancy.create_organization(
                session, OrganizationCreate(slug=slug, name=name), actor=SYSTEM
            )

    return factory


@pytest.fixture
async def org(make_org: Callable[..., Awaitable[Organization]]) -> Organization:
    return await make_org("Acme Test")


@pytest.fixture
async def other_org(make_org: Callable[..., Awaitable[Organization]]) -> Organization:
    return await make_org("Other Test")


_company_ids = itertools.count(1000)


@pytest.fixture
def make_user(runtime: Runtime) -> Callable[..., Awaitable[User]]:
    async def factory(
        org: Organization,
        role: Role = Role.REQUESTER,
        *,
        email: str | None = None,
        password: str = PASSWORD,
        status: UserStatus = UserStatus.APPROVED,
        department_id: uuid.UUID | None = None,
    ) -> User:
        email = email or f"{role}-{secrets.token_hex(4)}@example.com"
        async with runtime.db.tenant_session(org.id) as session:
            user = await accounts.do_create_user(
                session,
                runtime.hasher,
                UserCreate(
                    email=email,
                    password=password,
                    first_name="Test",
                    last_name=role.capitalize(),
                    role=role,
                    company_id=f"MA{next(_company_ids) % 10000:04d}",
                    department_id=department_id,
                ),
                organization_id=org.id,
                actor=SYSTEM,
            )
            if status != UserStatus.APPROVED:
                user.status = status
        return user

    return factory


@dataclass
class Session:
    """A signed-in user with the headers that authenticate as them in their organization."""

    user: User
    org: Organization
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "X-Tenant-ID": self.org.slug}


@pytest.fixture
def login(app: object) -> Callable[..., Awaitable[Session]]:
    async def do_login(user: User, org: Organization, password: str = PASSWORD) -> Session:
        async with client_for(app) as c:
            r = await c.post(
                "/api/v1/auth/login",
                json={"email": user.email, "password": password},
                headers={"X-Tenant-ID": org.slug},
            )
        assert r.status_code == 200, r.text
        body = r.json()
        return Session(user, org, body["access_token"], body["refresh_token"])

    return do_login


@pytest.fixture
async def admin(
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
    login: Callable[..., Awaitable[Session]],
) -> Session:
    return await login(await make_user(org, Role.ADMIN), org)


def tenant(org: Organization) -> dict[str, str]:
    return {"X-Tenant-ID": org.slug}
