"""Tenant resolution: header (id or slug), subdomain, /t/{slug}/ path; cache invalidation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from servicedesk.app import create_app
from servicedesk.core.cache import CACHE_HITS
from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, Role, User
from servicedesk.tenancy import service as tenancy
from tests.conftest import Session, client_for, test_settings


async def test_header_by_slug_and_by_id(client: httpx.AsyncClient, admin: Session) -> None:
    auth = {"Authorization": f"Bearer {admin.access_token}"}
    by_slug = await client.get("/api/v1/me", headers={**auth, "X-Tenant-ID": admin.org.slug})
    by_id = await client.get("/api/v1/me", headers={**auth, "X-Tenant-ID": str(admin.org.id)})
    assert by_slug.status_code == by_id.status_code == 200
    assert by_slug.json()["id"] == by_id.json()["id"] == str(admin.user.id)


async def test_path_prefix(client: httpx.AsyncClient, admin: Session) -> None:
    auth = {"Authorization": f"Bearer {admin.access_token}"}
    r = await client.get(f"/t/{admin.org.slug}/api/v1/me", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == admin.user.email


@pytest.fixture
async def subdomain_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        test_settings(SERVICEDESK_BASE_DOMAIN="desk.example.test"), database_url=database_url
    )
    async with client_for(app) as c:
        yield c
    await app.state.runtime.db.dispose()


async def test_subdomain(subdomain_client: httpx.AsyncClient, admin: Session) -> None:
    auth = {"Authorization": f"Bearer {admin.access_token}"}
    r = await subdomain_client.get(
        "/api/v1/me", headers={**auth, "Host": f"{admin.org.slug}.desk.example.test"}
    )
    assert r.status_code == 200, r.text
    # A host outside the base domain names no tenant.
    r = await subdomain_client.get(
        "/api/v1/me", headers={**auth, "Host": f"{admin.org.slug}.evil.test"}
    )
    assert r.status_code == 404
    assert r.json()["code"] == "tenant_required"


async def test_header_wins_over_path(
    client: httpx.AsyncClient, admin: Session, other_org: Organization
) -> None:
    """The header comes first: the token of org A is refused when the header names org B."""
    auth = {"Authorization": f"Bearer {admin.access_token}"}
    r = await client.get(
        f"/t/{admin.org.slug}/api/v1/me", headers={**auth, "X-Tenant-ID": other_org.slug}
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("headers", "path", "code"),
    [
        ({}, "/api/v1/auth/login", "tenant_required"),
        ({"X-Tenant-ID": "no-such-org"}, "/api/v1/auth/login", "tenant_not_found"),
        (
            {"X-Tenant-ID": "00000000-0000-0000-0000-000000000000"},
            "/api/v1/auth/login",
            "tenant_not_found",
        ),
        ({"X-Tenant-ID": "x" * 300}, "/api/v1/auth/login", "tenant_not_found"),
        ({"X-Tenant-ID": "'; DROP TABLE users; --"}, "/api/v1/auth/login", "tenant_not_found"),
        ({}, "/t/no-such-org/api/v1/auth/login", "tenant_not_found"),
    ],
)
async def test_missing_or_unknown_tenant(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, code: str
) -> None:
    r = await client.post(
        path, json={"email": "a@example.com", "password": "whatever1"}, headers=headers
    )
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def set_org_active(runtime: Runtime, org_id: uuid.UUID, *, active: bool) -> None:
    async with runtime.db.session() as session:
        org = await tenancy.get_organization(session, org_id)
        org.is_active = active
    tenancy.invalidate_tenant(org_id)


async def test_deactivated_org_stops_resolving(
    client: httpx.AsyncClient,
    admin: Session,
    runtime: Runtime,
) -> None:
    # Admins cannot switch their own organization off (it would lock everyone out).
    r = await client.patch("/api/v1/organization", json={"is_active": False}, headers=admin.headers)
    assert r.status_code == 422
    assert (await client.get("/api/v1/me", headers=admin.headers)).status_code == 200
    # The platform operator can; the cached tenant is invalidated at once.
    await set_org_active(runtime, admin.org.id, active=False)
    r = await client.get("/api/v1/me", headers=admin.headers)
    assert r.status_code == 404
    assert r.json()["code"] == "tenant_not_found"


async def test_resolution_is_cached(admin: Session, client: httpx.AsyncClient) -> None:
    tenancy.tenant_cache.invalidate_tag(f"org:{admin.org.id}")
    before_hits = CACHE_HITS.labels("tenants", "l1")._value.get()  # type: ignore[attr-defined]
    for _ in range(3):
        assert (await client.get("/api/v1/me", headers=admin.headers)).status_code == 200
    after_hits = CACHE_HITS.labels("tenants", "l1")._value.get()  # type: ignore[attr-defined]
    assert after_hits - before_hits >= 2


async def test_same_email_in_two_orgs_are_two_users(
    make_org: Callable[..., Awaitable[Organization]],
    make_user: Callable[..., Awaitable[User]],
    login: Callable[..., Awaitable[Session]],
    client: httpx.AsyncClient,
) -> None:
    a, b = await make_org("A"), await make_org("B")
    ua = await make_user(a, Role.AGENT, email="same@example.com")
    ub = await make_user(b, Role.AGENT, email="same@example.com")
    sa, sb = await login(ua, a), await login(ub, b)
    assert (await client.get("/api/v1/me", headers=sa.headers)).json()["id"] == str(ua.id)
    assert (await client.get("/api/v1/me", headers=sb.headers)).json()["id"] == str(ub.id)
