"""Registration, user and department administration, the organization, platform creation of
organizations, the audit log, and tenant isolation of every route that takes an id."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update

from servicedesk.accounts import service as accounts
from servicedesk.accounts.schemas import DepartmentCreate
from servicedesk.app import create_app
from servicedesk.core.actor import SYSTEM
from servicedesk.core.runtime import Runtime
from servicedesk.models import AuditLog, Department, Organization, Role, User, UserStatus
from tests.conftest import PASSWORD, Session, client_for, tenant
from tests.conftest import test_settings as make_settings

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Session]]

_company_ids = itertools.count(9999, -1)


# Helpers ---------------------------------------------------------------------------------


def registration(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Rita",
        "last_name": "Register",
        "email": f"reg-{secrets.token_hex(4)}@example.com",
        "company_id": f"MA{next(_company_ids):04d}",
        "password": PASSWORD,
    }
    body.update(overrides)
    return body


async def count_users(runtime: Runtime, org: Organization) -> int:
    async with runtime.db.session() as session:
        result = await session.execute(
            select(func.count()).select_from(User).where(User.organization_id == org.id)
        )
        return int(result.scalar_one())


async def row_of(runtime: Runtime, table: str, row_id: uuid.UUID) -> dict[str, Any]:
    """The whole row, read in a system session (no tenant binding)."""
    async with runtime.db.session() as session:
        result = await session.execute(
            text(f"SELECT * FROM {table} WHERE id = :id"),  # noqa: S608 (fixed table names)
            {"id": row_id},
        )
        return dict(result.mappings().one())


async def make_department(
    runtime: Runtime, org: Organization, name: str | None = None, *, active: bool = True
) -> Department:
    async with runtime.db.tenant_session(org.id) as session:
        department = await accounts.do_create_department(
            session,
            DepartmentCreate(name=name or f"Dept {secrets.token_hex(3)}"),
            organization_id=org.id,
            actor=SYSTEM,
        )
        department.is_active = active
    return department


async def deactivate_in_db(runtime: Runtime, user: User) -> None:
    async with runtime.db.session() as session:
        await session.execute(update(User).where(User.id == user.id).values(is_active=False))


async def sign_in(app: object, user: User, org: Organization, **kwargs: Any) -> httpx.Response:
    async with client_for(app, **kwargs) as c:
        return await c.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": PASSWORD},
            headers=tenant(org),
        )


async def all_pages(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        r = await client.get(path, params=query, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def audit_entries(
    client: httpx.AsyncClient, admin: Session, **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(
        "/api/v1/audit-log", params={"limit": 200, **params}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


_SOME_ID = "6a0e2c55-6f1c-4c3e-9d0e-2f9a4b1c7d11"
TAMPERED_CURSORS = [
    pytest.param("not-a-cursor", id="garbage"),
    pytest.param("%%%", id="not-base64"),
    pytest.param(b64([1, 2]), id="short-list"),
    pytest.param(b64({"a": 1}), id="object"),
    pytest.param(b64(["x", "2024-01-01T00:00:00+00:00", _SOME_ID]), id="rank-not-int"),
    pytest.param(b64([0, "2024-01-01T00:00:00", _SOME_ID]), id="naive-time"),
    pytest.param(b64([0, "2024-01-01T00:00:00+00:00", "not-a-uuid"]), id="bad-uuid"),
    pytest.param(b64([True, "2024-01-01T00:00:00+00:00", _SOME_ID]), id="rank-bool"),
    pytest.param(b64([2**40, "2024-01-01T00:00:00+00:00", _SOME_ID]), id="rank-beyond-int4"),
    pytest.param(b64([7, "2024-01-01T00:00:00+00:00", _SOME_ID]), id="rank-unknown"),
]


# Registration ----------------------------------------------------------------------------


async def test_registration_waits_for_approval(
    app: object, client: httpx.AsyncClient, org: Organization, admin: Session
) -> None:
    body = registration(middle_name="Q", suffix="Jr.")
    r = await client.post("/api/v1/auth/register", json=body, headers=tenant(org))
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["status"] == "pending"
    assert user["role"] == "requester"
    assert user["organization_id"] == str(org.id)
    assert user["email"] == body["email"]
    assert user["full_name"] == "Rita Q Register Jr."
    assert user["approved_at"] is None
    assert "password" not in user
    assert "password_hash" not in user

    async with client_for(app) as c:
        login_body = {"email": body["email"], "password": PASSWORD}
        r = await c.post("/api/v1/auth/login", json=login_body, headers=tenant(org))
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "account_pending"

        r = await client.post(f"/api/v1/users/{user['id']}/approve", headers=admin.headers)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "approved"
        assert r.json()["approved_at"] is not None

        r = await c.post("/api/v1/auth/login", json=login_body, headers=tenant(org))
        assert r.status_code == 200, r.text
        assert r.json()["access_token"]


async def test_registration_needs_a_tenant(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/register", json=registration())
    assert r.status_code == 404
    assert r.json()["code"] == "tenant_required"
    r = await client.post(
        "/api/v1/auth/register", json=registration(), headers={"X-Tenant-ID": "no-such-org-x"}
    )
    assert r.status_code == 404
    assert r.json()["code"] == "tenant_not_found"


async def test_registration_with_a_department(
    client: httpx.AsyncClient, org: Organization, runtime: Runtime
) -> None:
    department = await make_department(runtime, org)
    r = await client.get("/api/v1/auth/departments", headers=tenant(org))
    assert r.status_code == 200
    assert [d["id"] for d in r.json()] == [str(department.id)]
    r = await client.post(
        "/api/v1/auth/register",
        json=registration(department_id=str(department.id)),
        headers=tenant(org),
    )
    assert r.status_code == 201, r.text
    assert r.json()["department_id"] == str(department.id)


_BAD_REGISTRATIONS = [
    pytest.param({"company_id": "XX1234"}, None, id="company-id-prefix"),
    pytest.param({"company_id": "MA123"}, None, id="company-id-short"),
    pytest.param({"company_id": "MA12345"}, None, id="company-id-long"),
    pytest.param({"company_id": "ma1234"}, None, id="company-id-lowercase"),
    pytest.param(
        {"company_id": "MA\u0661\u0662\u0663\u0664"}, None, id="company-id-non-ascii-digits"
    ),
    pytest.param({"email": "not-an-email"}, None, id="email-no-at"),
    pytest.param({"email": "a@b"}, None, id="email-no-tld"),
    pytest.param({"email": ""}, None, id="email-empty"),
    pytest.param({"password": "Ab1-xyz"}, None, id="password-short"),
    pytest.param({"password": "password123"}, "weak_password", id="password-common"),
    pytest.param({"password": "PASSWORD123"}, "weak_password", id="password-common-case"),
    pytest.param(
        {"email": "rita.register@example.com", "password": "rita.register@example.com"},
        "weak_password",
        id="password-is-email",
    ),
    pytest.param({"password": "a" * 129}, None, id="password-too-long"),
    pytest.param({"role": "admin"}, None, id="extra-role"),
    pytest.param({"status": "approved"}, None, id="extra-status"),
    pytest.param({"organization_id": _SOME_ID}, None, id="extra-organization"),
    pytest.param({"is_active": True}, None, id="extra-is-active"),
    pytest.param({"first_name": "A" * 101}, None, id="first-name-101"),
    pytest.param({"last_name": "B" * 101}, None, id="last-name-101"),
    pytest.param({"middle_name": "C" * 101}, None, id="middle-name-101"),
    pytest.param({"suffix": "D" * 21}, None, id="suffix-21"),
    pytest.param({"first_name": "   "}, None, id="first-name-blank"),
    pytest.param({"first_name": "Jo\x00hn"}, None, id="name-nul"),
    pytest.param({"first_name": "Jo\x1b[31mhn"}, None, id="name-escape"),
    pytest.param({"last_name": "Sm\x7fith"}, None, id="name-del"),
    pytest.param({"middle_name": "A\nB"}, None, id="name-newline"),
    pytest.param({"suffix": "J\x08r"}, None, id="suffix-backspace"),
    pytest.param({"department_id": "not-a-uuid"}, None, id="department-not-uuid"),
]


@pytest.mark.parametrize(("overrides", "code"), _BAD_REGISTRATIONS)
async def test_registration_refuses_bad_input(
    client: httpx.AsyncClient,
    org: Organization,
    runtime: Runtime,
    overrides: dict[str, Any],
    code: str | None,
) -> None:
    r = await client.post(
        "/api/v1/auth/register", json=registration(**overrides), headers=tenant(org)
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == (code or "validation_error")
    assert problem["errors"], problem  # names the field(s)
    assert await count_users(runtime, org) == 0


@pytest.mark.parametrize("field", ["email", "company_id", "password", "first_name", "last_name"])
async def test_registration_requires_each_field(
    client: httpx.AsyncClient, org: Organization, runtime: Runtime, field: str
) -> None:
    body = registration()
    del body[field]
    r = await client.post("/api/v1/auth/register", json=body, headers=tenant(org))
    assert r.status_code == 422, r.text
    assert any(e["loc"][-1] == field for e in r.json()["errors"])
    assert await count_users(runtime, org) == 0


async def test_registration_refuses_a_taken_email_case_insensitively(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser, runtime: Runtime
) -> None:
    existing = await make_user(org, email=f"taken-{secrets.token_hex(3)}@example.com")
    before = await count_users(runtime, org)
    r = await client.post(
        "/api/v1/auth/register",
        json=registration(email=existing.email.upper().replace("@EXAMPLE.COM", "@Example.com")),
        headers=tenant(org),
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "email_taken"
    assert await count_users(runtime, org) == before


async def test_registration_refuses_a_taken_company_id(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser, runtime: Runtime
) -> None:
    existing = await make_user(org)
    before = await count_users(runtime, org)
    r = await client.post(
        "/api/v1/auth/register",
        json=registration(company_id=existing.company_id),
        headers=tenant(org),
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "company_id_taken"
    assert await count_users(runtime, org) == before


async def test_email_and_company_id_are_unique_per_organization_only(
    client: httpx.AsyncClient,
    org: Organization,
    other_org: Organization,
    make_user: MakeUser,
) -> None:
    elsewhere = await make_user(other_org)
    r = await client.post(
        "/api/v1/auth/register",
        json=registration(email=elsewhere.email, company_id=elsewhere.company_id),
        headers=tenant(org),
    )
    assert r.status_code == 201, r.text


async def test_registration_refuses_a_department_of_another_organization(
    client: httpx.AsyncClient, org: Organization, other_org: Organization, runtime: Runtime
) -> None:
    foreign = await make_department(runtime, other_org)
    inactive = await make_department(runtime, org, active=False)
    for department_id in (foreign.id, inactive.id, uuid.uuid4()):
        r = await client.post(
            "/api/v1/auth/register",
            json=registration(department_id=str(department_id)),
            headers=tenant(org),
        )
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "unknown_department"
    assert await count_users(runtime, org) == 0


async def test_registration_departments_list_only_the_tenants_active_ones(
    client: httpx.AsyncClient, org: Organization, other_org: Organization, runtime: Runtime
) -> None:
    active = await make_department(runtime, org)
    await make_department(runtime, org, active=False)
    await make_department(runtime, other_org)
    r = await client.get("/api/v1/auth/departments", headers=tenant(org))
    assert r.status_code == 200
    assert [d["id"] for d in r.json()] == [str(active.id)]


# Listing users ---------------------------------------------------------------------------


@pytest.fixture
async def population(org: Organization, make_user: MakeUser, runtime: Runtime) -> dict[str, User]:
    """A mix of users in `org` (besides the admin fixture, when it is used)."""
    people = {
        "approved1": await make_user(org, Role.REQUESTER, email=f"zed-{secrets.token_hex(3)}@x.io"),
        "pending1": await make_user(org, status=UserStatus.PENDING),
        "agent": await make_user(org, Role.AGENT),
        "pending2": await make_user(org, status=UserStatus.PENDING),
        "suspended": await make_user(org, status=UserStatus.SUSPENDED),
        "manager": await make_user(org, Role.MANAGER),
        "inactive": await make_user(org),
    }
    await deactivate_in_db(runtime, people["inactive"])
    return people


async def test_list_users_puts_pending_first_and_filters(
    client: httpx.AsyncClient, admin: Session, population: dict[str, User]
) -> None:
    r = await client.get("/api/v1/users", headers=admin.headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    ids = [i["id"] for i in items]
    # Pending first (newest first among them), then the rest; inactive hidden by default.
    assert ids[:2] == [str(population["pending2"].id), str(population["pending1"].id)]
    assert {i["status"] for i in items[2:]} <= {"approved", "suspended"}
    assert str(population["inactive"].id) not in ids
    assert str(admin.user.id) in ids
    assert len(ids) == 7

    r = await client.get(
        "/api/v1/users", params={"include_inactive": "true"}, headers=admin.headers
    )
    assert str(population["inactive"].id) in [i["id"] for i in r.json()["items"]]

    r = await client.get("/api/v1/users", params={"status": "pending"}, headers=admin.headers)
    assert {i["id"] for i in r.json()["items"]} == {
        str(population["pending1"].id),
        str(population["pending2"].id),
    }
    r = await client.get("/api/v1/users", params={"status": "suspended"}, headers=admin.headers)
    assert [i["id"] for i in r.json()["items"]] == [str(population["suspended"].id)]

    r = await client.get("/api/v1/users", params={"role": "agent"}, headers=admin.headers)
    assert [i["id"] for i in r.json()["items"]] == [str(population["agent"].id)]
    r = await client.get("/api/v1/users", params={"role": "admin"}, headers=admin.headers)
    assert [i["id"] for i in r.json()["items"]] == [str(admin.user.id)]

    zed = population["approved1"]
    r = await client.get("/api/v1/users", params={"q": "ZED-"}, headers=admin.headers)
    assert [i["id"] for i in r.json()["items"]] == [str(zed.id)]
    r = await client.get("/api/v1/users", params={"q": zed.company_id}, headers=admin.headers)
    assert [i["id"] for i in r.json()["items"]] == [str(zed.id)]
    # LIKE wildcards are literal.
    r = await client.get("/api/v1/users", params={"q": "%"}, headers=admin.headers)
    assert r.json()["items"] == []
    r = await client.get("/api/v1/users", params={"q": "_"}, headers=admin.headers)
    assert r.json()["items"] == []

    for bad in ({"status": "bogus"}, {"role": "root"}, {"limit": 0}, {"limit": 201}):
        r = await client.get("/api/v1/users", params=bad, headers=admin.headers)
        assert r.status_code == 422, (bad, r.text)


async def test_list_users_paginates_with_a_cursor(
    client: httpx.AsyncClient, admin: Session, population: dict[str, User]
) -> None:
    r = await client.get("/api/v1/users", params={"limit": 200}, headers=admin.headers)
    everyone = [i["id"] for i in r.json()["items"]]
    assert r.json()["next_cursor"] is None

    r = await client.get("/api/v1/users", params={"limit": 2}, headers=admin.headers)
    assert len(r.json()["items"]) == 2
    assert r.json()["next_cursor"]

    paged = await all_pages(client, "/api/v1/users", admin.headers, limit=2)
    assert [i["id"] for i in paged] == everyone
    paged = await all_pages(client, "/api/v1/users", admin.headers, limit=3)
    assert [i["id"] for i in paged] == everyone


@pytest.mark.parametrize("cursor", TAMPERED_CURSORS)
async def test_list_users_refuses_a_tampered_cursor(
    client: httpx.AsyncClient, admin: Session, cursor: str
) -> None:
    r = await client.get("/api/v1/users", params={"cursor": cursor}, headers=admin.headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_cursor"


# Managing users --------------------------------------------------------------------------


async def test_get_user(client: httpx.AsyncClient, admin: Session, make_user: MakeUser) -> None:
    user = await make_user(admin.org, Role.AGENT)
    r = await client.get(f"/api/v1/users/{user.id}", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == user.email
    assert r.json()["role"] == "agent"
    assert "password_hash" not in r.json()
    r = await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=admin.headers)
    assert r.status_code == 404
    r = await client.get("/api/v1/users/not-a-uuid", headers=admin.headers)
    assert r.status_code == 422


async def test_patch_role_and_department(
    client: httpx.AsyncClient,
    admin: Session,
    make_user: MakeUser,
    runtime: Runtime,
    other_org: Organization,
) -> None:
    user = await make_user(admin.org)
    department = await make_department(runtime, admin.org)
    r = await client.patch(
        f"/api/v1/users/{user.id}",
        json={"role": "agent", "department_id": str(department.id)},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "agent"
    assert r.json()["department_id"] == str(department.id)

    r = await client.patch(
        f"/api/v1/users/{user.id}", json={"department_id": None}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["department_id"] is None
    assert r.json()["role"] == "agent"

    foreign = await make_department(runtime, other_org)
    r = await client.patch(
        f"/api/v1/users/{user.id}",
        json={"department_id": str(foreign.id)},
        headers=admin.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "unknown_department"

    for body in (
        {"status": "approved"},
        {"is_active": False},
        {"email": "new@example.com"},
        {"organization_id": str(other_org.id)},
        {"password_hash": "x"},
        {"role": "root"},
        {"role": None},
    ):
        r = await client.patch(f"/api/v1/users/{user.id}", json=body, headers=admin.headers)
        assert r.status_code == 422, (body, r.text)
    row = await row_of(runtime, "users", user.id)
    assert row["role"] == "agent"
    assert row["status"] == "approved"
    assert row["is_active"] is True
    assert row["email"] == user.email
    assert row["organization_id"] == admin.org.id


async def test_role_change_applies_to_the_users_next_request(
    client: httpx.AsyncClient, admin: Session, make_user: MakeUser, login: Login
) -> None:
    member = await login(await make_user(admin.org), admin.org)
    r = await client.get("/api/v1/users", headers=member.headers)
    assert r.status_code == 403
    r = await client.patch(
        f"/api/v1/users/{member.user.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/users", headers=member.headers)
    assert r.status_code == 200, r.text


async def test_admin_cannot_change_own_role_or_deactivate_or_suspend_self(
    client: httpx.AsyncClient, admin: Session, runtime: Runtime
) -> None:
    me = admin.user.id
    r = await client.patch(f"/api/v1/users/{me}", json={"role": "agent"}, headers=admin.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "self_role_change"
    r = await client.delete(f"/api/v1/users/{me}", headers=admin.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "self_deactivation"
    r = await client.post(f"/api/v1/users/{me}/suspend", headers=admin.headers)
    assert r.status_code == 422, r.text
    row = await row_of(runtime, "users", me)
    assert (row["role"], row["status"], row["is_active"]) == ("admin", "approved", True)
    # Still signed in.
    assert (await client.get("/api/v1/me", headers=admin.headers)).status_code == 200
    # Changing own name (role unchanged) is fine.
    r = await client.patch(
        f"/api/v1/users/{me}", json={"role": "admin", "first_name": "Ada"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["first_name"] == "Ada"


_TRANSITIONS = [
    # (starting status, action, resulting status or None when illegal)
    ("pending", "approve", "approved"),
    ("pending", "reject", "rejected"),
    ("pending", "suspend", "suspended"),
    ("approved", "approve", None),
    ("approved", "reject", None),
    ("approved", "suspend", "suspended"),
    ("suspended", "approve", "approved"),
    ("suspended", "reject", None),
    ("suspended", "suspend", None),
    ("rejected", "approve", "approved"),
    ("rejected", "reject", None),
    ("rejected", "suspend", None),
]


@pytest.mark.parametrize(("start", "verb", "result"), _TRANSITIONS)
async def test_status_transitions(
    client: httpx.AsyncClient,
    admin: Session,
    make_user: MakeUser,
    runtime: Runtime,
    start: str,
    verb: str,
    result: str | None,
) -> None:
    user = await make_user(admin.org, status=UserStatus(start))
    r = await client.post(f"/api/v1/users/{user.id}/{verb}", headers=admin.headers)
    row = await row_of(runtime, "users", user.id)
    if result is None:
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_status_transition"
        assert row["status"] == start
    else:
        assert r.status_code == 200, r.text
        assert r.json()["status"] == result
        assert row["status"] == result


async def test_reinstating_a_suspended_user_lets_them_sign_in_again(
    app: object, client: httpx.AsyncClient, admin: Session, make_user: MakeUser
) -> None:
    """(Suspension ending sessions and blocking sign-in is covered in test_auth.py.)"""
    user = await make_user(admin.org)
    r = await client.post(f"/api/v1/users/{user.id}/suspend", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert (await sign_in(app, user, admin.org)).status_code == 403
    r = await client.post(f"/api/v1/users/{user.id}/approve", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert (await sign_in(app, user, admin.org)).status_code == 200


async def test_deactivate_and_reactivate(
    app: object,
    client: httpx.AsyncClient,
    admin: Session,
    make_user: MakeUser,
    login: Login,
    runtime: Runtime,
) -> None:
    member = await login(await make_user(admin.org, Role.AGENT), admin.org)
    r = await client.delete(f"/api/v1/users/{member.user.id}", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["is_active"] is False
    row = await row_of(runtime, "users", member.user.id)
    assert row["is_active"] is False
    assert row["status"] == "approved"  # a soft delete: the row stays as it was

    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 401
    r = await sign_in(app, member.user, admin.org)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "account_deactivated"
    # Hidden from the list unless asked for; still readable by id.
    r = await client.get("/api/v1/users", headers=admin.headers)
    assert str(member.user.id) not in [i["id"] for i in r.json()["items"]]
    r = await client.get(f"/api/v1/users/{member.user.id}", headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["is_active"] is False
    # Deactivating again is harmless.
    r = await client.delete(f"/api/v1/users/{member.user.id}", headers=admin.headers)
    assert r.status_code == 200

    r = await client.post(f"/api/v1/users/{member.user.id}/reactivate", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["is_active"] is True
    assert (await sign_in(app, member.user, admin.org)).status_code == 200
    # The old session stays ended.
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 401


_ADMIN_ROUTES = [
    ("GET", "/api/v1/users", None),
    ("POST", "/api/v1/users", "new-user"),
    ("GET", "/api/v1/users/{user}", None),
    ("PATCH", "/api/v1/users/{user}", {"role": "admin"}),
    ("DELETE", "/api/v1/users/{user}", None),
    ("POST", "/api/v1/users/{user}/approve", None),
    ("POST", "/api/v1/users/{user}/reject", None),
    ("POST", "/api/v1/users/{user}/suspend", None),
    ("POST", "/api/v1/users/{user}/reactivate", None),
    ("GET", "/api/v1/users/{user}/sessions", None),
    ("DELETE", "/api/v1/users/{user}/sessions", None),
    ("POST", "/api/v1/departments", {"name": "Sneaky"}),
    ("PATCH", "/api/v1/departments/{department}", {"name": "Sneaky"}),
    ("PATCH", "/api/v1/organization", {"name": "Sneaky"}),
    ("GET", "/api/v1/audit-log", None),
    ("GET", "/api/v1/login-attempts", None),
]


@pytest.mark.parametrize("role", [Role.REQUESTER, Role.AGENT, Role.MANAGER])
async def test_non_admins_are_refused_admin_routes(
    client: httpx.AsyncClient,
    org: Organization,
    make_user: MakeUser,
    login: Login,
    runtime: Runtime,
    role: Role,
) -> None:
    caller = await login(await make_user(org, role), org)
    target = await make_user(org, status=UserStatus.PENDING)
    department = await make_department(runtime, org, "Original")
    before = await row_of(runtime, "users", target.id)
    for method, path, body in _ADMIN_ROUTES:
        if body == "new-user":
            body = registration(role="admin")
        url = path.format(user=target.id, department=department.id)
        r = await client.request(method, url, json=body, headers=caller.headers)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["code"] == "insufficient_role", (method, url)
    assert await row_of(runtime, "users", target.id) == before
    assert (await row_of(runtime, "departments", department.id))["name"] == "Original"
    assert (await row_of(runtime, "users", caller.user.id))["role"] == role


async def test_admin_creates_an_approved_user(
    app: object, client: httpx.AsyncClient, admin: Session, runtime: Runtime
) -> None:
    body = registration(role="agent")
    r = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["status"], created["role"]) == ("approved", "agent")
    row = await row_of(runtime, "users", uuid.UUID(created["id"]))
    assert row["approved_by_id"] == admin.user.id
    r = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "email_taken"
    r = await client.post(
        "/api/v1/users", json=registration(status="suspended"), headers=admin.headers
    )
    assert r.status_code == 422


# Departments -----------------------------------------------------------------------------


async def test_departments_create_update_list(
    client: httpx.AsyncClient,
    admin: Session,
    make_user: MakeUser,
    login: Login,
    other_org: Organization,
    runtime: Runtime,
) -> None:
    r = await client.post(
        "/api/v1/departments",
        json={"name": "  Finance ", "head_email": "Boss@Example.com"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    finance = r.json()
    assert finance["name"] == "Finance"
    assert finance["head_email"] == "boss@example.com"
    assert finance["is_active"] is True

    for name in ("finance", "FINANCE", " Finance  "):
        r = await client.post("/api/v1/departments", json={"name": name}, headers=admin.headers)
        assert r.status_code == 409, (name, r.text)
        assert r.json()["code"] == "department_name_taken"

    r = await client.post("/api/v1/departments", json={"name": "Legal"}, headers=admin.headers)
    assert r.status_code == 201
    legal = r.json()

    for bad in ({"name": ""}, {"name": "x" * 121}, {"name": "a\x00b"}, {"extra": 1}):
        r = await client.post("/api/v1/departments", json=bad, headers=admin.headers)
        assert r.status_code == 422, (bad, r.text)

    r = await client.patch(
        f"/api/v1/departments/{legal['id']}", json={"name": "fInAnCe"}, headers=admin.headers
    )
    assert r.status_code == 409, r.text
    r = await client.patch(
        f"/api/v1/departments/{legal['id']}",
        json={"name": "Legal & Compliance", "is_active": False},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Legal & Compliance"
    assert r.json()["is_active"] is False
    # Renaming to its own name in another case is not a conflict with itself.
    r = await client.patch(
        f"/api/v1/departments/{finance['id']}", json={"name": "FINANCE"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text

    member = await login(await make_user(admin.org), admin.org)
    r = await client.get("/api/v1/departments", headers=member.headers)
    assert r.status_code == 200
    assert [d["name"] for d in r.json()] == ["FINANCE", "Legal & Compliance"]
    r = await client.get(f"/api/v1/departments/{finance['id']}", headers=member.headers)
    assert r.status_code == 200
    r = await client.post("/api/v1/departments", json={"name": "Mine"}, headers=member.headers)
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_role"
    r = await client.get("/api/v1/departments", headers=tenant(admin.org))
    assert r.status_code == 401

    # The same name in another organization is fine.
    await make_department(runtime, other_org, "Finance")

    entries = await audit_entries(client, admin, table="departments")
    actions = [(e["action"], e["record_id"]) for e in entries]
    assert ("department.created", finance["id"]) in actions
    assert ("department.updated", legal["id"]) in actions
    updated = next(
        e for e in entries if e["action"] == "department.updated" and e["record_id"] == legal["id"]
    )
    assert updated["old_values"] == {"name": "Legal", "is_active": True}
    assert updated["new_values"] == {"name": "Legal & Compliance", "is_active": False}


# The organization ------------------------------------------------------------------------


async def test_get_organization(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser, login: Login
) -> None:
    member = await login(await make_user(org), org)
    r = await client.get("/api/v1/organization", headers=member.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["slug"], body["name"]) == (str(org.id), org.slug, org.name)
    assert body["timezone"] == "UTC"
    r = await client.get("/api/v1/organization", headers=tenant(org))
    assert r.status_code == 401


async def test_update_organization(
    client: httpx.AsyncClient, admin: Session, runtime: Runtime
) -> None:
    r = await client.patch(
        "/api/v1/organization",
        json={"name": "Acme Renamed", "timezone": "Europe/Berlin"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["timezone"]) == ("Acme Renamed", "Europe/Berlin")
    r = await client.get("/api/v1/organization", headers=admin.headers)
    assert (r.json()["name"], r.json()["timezone"]) == ("Acme Renamed", "Europe/Berlin")

    r = await client.patch(
        "/api/v1/organization", json={"settings": {"reopen_window_days": 3}}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        "/api/v1/organization", json={"settings": {"brand_color": "#112233"}}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"] == {"reopen_window_days": 3, "brand_color": "#112233"}

    for bad in (
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": ""},
        {"settings": {"unknown_key": True}},
        {"settings": {"reopen_window_days": -1}},
        {"settings": {"brand_color": "red"}},
        {"slug": "hijack"},
        {"name": ""},
        {"name": "x" * 201},
    ):
        r = await client.patch("/api/v1/organization", json=bad, headers=admin.headers)
        assert r.status_code == 422, (bad, r.text)
    row = await row_of(runtime, "organizations", admin.org.id)
    assert (row["name"], row["timezone"], row["slug"]) == (
        "Acme Renamed",
        "Europe/Berlin",
        admin.org.slug,
    )
    assert row["settings"] == {"reopen_window_days": 3, "brand_color": "#112233"}

    entries = await audit_entries(client, admin, action="organization.updated")
    assert len(entries) == 3
    first = entries[-1]
    assert first["actor_id"] == str(admin.user.id)
    assert first["table_name"] == "organizations"
    assert first["record_id"] == str(admin.org.id)
    assert first["old_values"] == {"name": "Acme Test", "timezone": "UTC"}
    assert first["new_values"] == {"name": "Acme Renamed", "timezone": "Europe/Berlin"}


# Platform: creating organizations --------------------------------------------------------

PLATFORM_TOKEN = "platform-" + "p" * 40


@pytest.fixture
async def platform_app(database_url: str) -> AsyncIterator[object]:
    application = create_app(
        make_settings(SERVICEDESK_PLATFORM_TOKEN=PLATFORM_TOKEN), database_url=database_url
    )
    yield application
    await application.state.runtime.db.dispose()


async def test_platform_creation_is_off_without_a_token(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/platform/organizations",
        json={"slug": f"p{secrets.token_hex(4)}", "name": "Nope"},
        headers={"Authorization": "Bearer anything"},
    )
    assert r.status_code == 404, r.text


async def test_platform_creates_organizations(
    platform_app: object, app: object, runtime: Runtime
) -> None:
    slug = f"p{secrets.token_hex(5)}"
    good = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}
    async with client_for(platform_app) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {PLATFORM_TOKEN}x"},
            {"Authorization": f"Basic {PLATFORM_TOKEN}"},
            {"Authorization": PLATFORM_TOKEN},
        ):
            r = await c.post(
                "/api/v1/platform/organizations", json={"slug": slug, "name": "X"}, headers=headers
            )
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["code"] == "invalid_platform_token"

        r = await c.post(
            "/api/v1/platform/organizations",
            json={"slug": slug, "name": "Platform Made", "timezone": "Asia/Tokyo"},
            headers=good,
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert (created["slug"], created["name"], created["timezone"]) == (
            slug,
            "Platform Made",
            "Asia/Tokyo",
        )
        assert created["is_active"] is True

        r = await c.post(
            "/api/v1/platform/organizations", json={"slug": slug, "name": "Again"}, headers=good
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "slug_taken"

        for body in (
            {"slug": "Bad_Slug", "name": "X"},
            {"slug": "admin", "name": "X"},
            {"slug": "api", "name": "X"},
            {"slug": "-lead", "name": "X"},
            {"slug": "trail-", "name": "X"},
            {"slug": "a" * 64, "name": "X"},
            {"slug": "", "name": "X"},
            {"slug": f"p{secrets.token_hex(5)}", "name": ""},
            {"slug": f"p{secrets.token_hex(5)}", "name": "X", "timezone": "Nowhere/Land"},
            {"slug": f"p{secrets.token_hex(5)}", "name": "X", "is_active": False},
        ):
            r = await c.post("/api/v1/platform/organizations", json=body, headers=good)
            assert r.status_code == 422, (body, r.text)

    # It resolves by slug (in any app on the database).
    async with client_for(app) as c:
        r = await c.get("/api/v1/auth/departments", headers={"X-Tenant-ID": slug})
        assert r.status_code == 200, r.text
        assert r.json() == []
        r = await c.post(
            "/api/v1/auth/register", json=registration(), headers={"X-Tenant-ID": slug}
        )
        assert r.status_code == 201, r.text
        assert r.json()["organization_id"] == created["id"]

    async with runtime.db.session() as session:
        entries = (
            await session.execute(
                select(AuditLog).where(AuditLog.organization_id == uuid.UUID(created["id"]))
            )
        ).scalars()
        actions = {e.action for e in entries}
    assert "organization.created" in actions


# The audit log ---------------------------------------------------------------------------


async def test_admin_actions_are_audited_with_who_what_and_where(
    app: object,
    admin: Session,
    make_user: MakeUser,
    login: Login,
    runtime: Runtime,
) -> None:
    org = admin.org
    ip = f"192.0.2.{secrets.randbelow(250) + 1}"
    agent = f"audit-test/{secrets.token_hex(3)}"
    pending = await make_user(org, status=UserStatus.PENDING)
    promoted = await make_user(org)
    suspended = await make_user(org)
    deactivated = await make_user(org)
    signed_in = await make_user(org)
    await login(signed_in, org)

    steps = [
        ("POST", f"/api/v1/users/{pending.id}/approve", None, "user.approved", pending.id,
         {"status": "pending"}, {"status": "approved"}),
        ("PATCH", f"/api/v1/users/{promoted.id}", {"role": "manager"}, "user.role_changed",
         promoted.id, {"role": "requester"}, {"role": "manager"}),
        ("POST", f"/api/v1/users/{suspended.id}/suspend", None, "user.suspended", suspended.id,
         {"status": "approved"}, {"status": "suspended"}),
        ("DELETE", f"/api/v1/users/{deactivated.id}", None, "user.deactivated", deactivated.id,
         {"is_active": True}, {"is_active": False}),
        ("DELETE", f"/api/v1/users/{signed_in.id}/sessions", None, "session.revoked_all",
         signed_in.id, None, {"sessions_revoked": 1}),
    ]  # fmt: skip
    async with client_for(app, ip=ip, headers={"User-Agent": agent}) as c:
        for method, url, body, action, record_id, old, new in steps:
            r = await c.request(method, url, json=body, headers=admin.headers)
            assert r.status_code in (200, 204), (url, r.text)
            request_id = r.headers["X-Request-ID"]
            entries = await audit_entries(c, admin, action=action, record_id=str(record_id))
            assert len(entries) == 1, (action, entries)
            entry = entries[0]
            assert entry["actor_id"] == str(admin.user.id)
            assert entry["actor_type"] == "user"
            assert entry["table_name"] == "users"
            assert entry["old_values"] == old
            assert entry["new_values"] == new
            assert entry["ip"] == ip
            assert entry["user_agent"] == agent
            assert entry["request_id"] == request_id

        # A user ending their own session is audited with them as the actor.
        own = await login(await make_user(org), org)
        r = await c.get("/api/v1/me/sessions", headers=own.headers)
        family = r.json()[0]["id"]
        r = await c.delete(f"/api/v1/me/sessions/{family}", headers=own.headers)
        assert r.status_code == 204, r.text
        entries = await audit_entries(c, admin, action="session.revoked", record_id=family)
        assert len(entries) == 1
        assert entries[0]["actor_id"] == str(own.user.id)
        assert entries[0]["table_name"] == "refresh_tokens"
        assert entries[0]["request_id"] == r.headers["X-Request-ID"]
        assert entries[0]["user_agent"] == agent

        # A chosen request id is carried through.
        r = await c.post(
            f"/api/v1/users/{suspended.id}/approve",
            headers={**admin.headers, "X-Request-ID": "trace-0123456789"},
        )
        assert r.status_code == 200
        assert r.headers["X-Request-ID"] == "trace-0123456789"
        entries = await audit_entries(c, admin, action="user.approved", record_id=str(suspended.id))
        assert entries[0]["request_id"] == "trace-0123456789"

        # Registration is audited as anonymous, with the snapshot minus secrets.
        r = await c.post("/api/v1/auth/register", json=registration(), headers=tenant(org))
        assert r.status_code == 201
        entries = await audit_entries(c, admin, action="user.registered", record_id=r.json()["id"])
        assert entries[0]["actor_id"] is None
        assert entries[0]["actor_type"] == "anonymous"
        assert entries[0]["new_values"]["status"] == "pending"

        everything = json.dumps(await audit_entries(c, admin))
    assert "password_hash" not in everything
    assert "$argon2" not in everything
    assert PASSWORD not in everything


async def test_audit_log_filters_and_paginates(
    client: httpx.AsyncClient, admin: Session, make_user: MakeUser, login: Login
) -> None:
    users = [await make_user(admin.org, status=UserStatus.PENDING) for _ in range(3)]
    for user in users:
        r = await client.post(f"/api/v1/users/{user.id}/approve", headers=admin.headers)
        assert r.status_code == 200
    r = await client.patch(
        f"/api/v1/users/{users[0].id}", json={"role": "agent"}, headers=admin.headers
    )
    assert r.status_code == 200
    r = await client.post("/api/v1/departments", json={"name": "Audit"}, headers=admin.headers)
    department_id = r.json()["id"]
    member = await login(users[1], admin.org)
    r = await client.patch("/api/v1/me", json={"first_name": "Changed"}, headers=member.headers)
    assert r.status_code == 200, r.text

    everything = await audit_entries(client, admin)
    assert len(everything) >= 9
    times = [e["created_at"] for e in everything]
    assert times == sorted(times, reverse=True)

    approved = await audit_entries(client, admin, action="user.approved")
    assert {e["record_id"] for e in approved} == {str(u.id) for u in users}
    assert {e["action"] for e in approved} == {"user.approved"}

    user_actions = await audit_entries(client, admin, action="user.")
    assert {e["action"] for e in user_actions} >= {
        "user.approved",
        "user.role_changed",
        "user.created",
        "user.profile_updated",
    }
    assert all(e["action"].startswith("user.") for e in user_actions)
    assert await audit_entries(client, admin, action="user") == []  # not a prefix without '.'
    assert await audit_entries(client, admin, action="%.") == []

    by_member = await audit_entries(client, admin, actor_id=str(member.user.id))
    assert [e["action"] for e in by_member] == ["user.profile_updated"]
    by_admin = await audit_entries(client, admin, actor_id=str(admin.user.id))
    assert by_admin
    assert {e["actor_id"] for e in by_admin} == {str(admin.user.id)}

    departments = await audit_entries(client, admin, table="departments")
    assert [(e["action"], e["record_id"]) for e in departments] == [
        ("department.created", department_id)
    ]
    about_user = await audit_entries(client, admin, record_id=str(users[0].id))
    assert [e["action"] for e in about_user] == [
        "user.role_changed",
        "user.approved",
        "user.created",
    ]

    paged = await all_pages(client, "/api/v1/audit-log", admin.headers, limit=2)
    assert [e["id"] for e in paged] == [e["id"] for e in everything]
    paged = await all_pages(client, "/api/v1/audit-log", admin.headers, limit=3, action="user.")
    assert [e["id"] for e in paged] == [e["id"] for e in user_actions]

    for cursor in [p.values[0] for p in TAMPERED_CURSORS] + [
        b64(["2024-01-01T00:00:00", _SOME_ID])
    ]:
        r = await client.get("/api/v1/audit-log", params={"cursor": cursor}, headers=admin.headers)
        assert r.status_code == 400, (cursor, r.text)
        assert r.json()["code"] == "invalid_cursor"
    for bad in ({"actor_id": "nope"}, {"limit": 0}, {"limit": 500}, {"since": "yesterday"}):
        r = await client.get("/api/v1/audit-log", params=bad, headers=admin.headers)
        assert r.status_code == 422, (bad, r.text)

    r = await client.get("/api/v1/audit-log", headers=member.headers)
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_role"


# Tenant isolation ------------------------------------------------------------------------

_ID_ROUTES = [
    pytest.param("GET", "/api/v1/users/{user}", None, "approved", id="get-user"),
    pytest.param("PATCH", "/api/v1/users/{user}", {"role": "admin"}, "approved", id="patch-user"),
    pytest.param("DELETE", "/api/v1/users/{user}", None, "approved", id="deactivate-user"),
    pytest.param("POST", "/api/v1/users/{user}/approve", None, "pending", id="approve"),
    pytest.param("POST", "/api/v1/users/{user}/reject", None, "pending", id="reject"),
    pytest.param("POST", "/api/v1/users/{user}/suspend", None, "approved", id="suspend"),
    pytest.param("POST", "/api/v1/users/{user}/reactivate", None, "inactive", id="reactivate"),
    pytest.param("GET", "/api/v1/users/{user}/sessions", None, "approved", id="list-sessions"),
    pytest.param("DELETE", "/api/v1/users/{user}/sessions", None, "approved", id="end-sessions"),
    pytest.param("GET", "/api/v1/departments/{department}", None, "approved", id="get-dept"),
    pytest.param(
        "PATCH",
        "/api/v1/departments/{department}",
        {"name": "Hijacked"},
        "approved",
        id="patch-dept",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "state"), _ID_ROUTES)
async def test_ids_of_another_organization_are_not_found(
    client: httpx.AsyncClient,
    admin: Session,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
    runtime: Runtime,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    state: str,
) -> None:
    status = UserStatus.PENDING if state == "pending" else UserStatus.APPROVED
    victim = await make_user(other_org, status=status)
    victim_session = await login(victim, other_org) if state != "pending" else None
    if state == "inactive":
        await deactivate_in_db(runtime, victim)
    department = await make_department(runtime, other_org, "Theirs")
    user_before = await row_of(runtime, "users", victim.id)
    department_before = await row_of(runtime, "departments", department.id)

    url = path.format(user=victim.id, department=department.id)
    r = await client.request(method, url, json=body, headers=admin.headers)
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"

    assert await row_of(runtime, "users", victim.id) == user_before
    assert await row_of(runtime, "departments", department.id) == department_before
    if victim_session is not None and state != "inactive":
        r = await client.get("/api/v1/me", headers=victim_session.headers)
        assert r.status_code == 200, r.text
    async with runtime.db.session() as session:
        leaked = (
            await session.execute(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.record_id.in_([str(victim.id), str(department.id)]))
                .where(AuditLog.actor_id == admin.user.id)
            )
        ).scalar_one()
    assert leaked == 0


async def test_lists_never_show_another_organizations_rows(
    client: httpx.AsyncClient,
    admin: Session,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
    runtime: Runtime,
) -> None:
    # Activity in the other organization: users, a department, an approval, a sign-in.
    their_admin = await login(await make_user(other_org, Role.ADMIN), other_org)
    theirs = await make_user(
        other_org, status=UserStatus.PENDING, email=f"shared-{secrets.token_hex(3)}@example.com"
    )
    r = await client.post(f"/api/v1/users/{theirs.id}/approve", headers=their_admin.headers)
    assert r.status_code == 200
    r = await client.post(
        "/api/v1/departments", json={"name": "Theirs"}, headers=their_admin.headers
    )
    assert r.status_code == 201
    their_department = r.json()["id"]
    # Some activity of our own.
    ours = await make_user(admin.org, status=UserStatus.PENDING)
    await client.post(f"/api/v1/users/{ours.id}/approve", headers=admin.headers)

    their_ids = {str(their_admin.user.id), str(theirs.id), their_department, str(other_org.id)}

    users = await all_pages(client, "/api/v1/users", admin.headers, include_inactive="true")
    assert {u["organization_id"] for u in users} == {str(admin.org.id)}
    assert not their_ids & {u["id"] for u in users}
    r = await client.get("/api/v1/users", params={"q": "shared-"}, headers=admin.headers)
    assert r.json()["items"] == []

    entries = await all_pages(client, "/api/v1/audit-log", admin.headers, limit=200)
    assert entries
    assert not their_ids & {e["record_id"] for e in entries}
    assert not their_ids & {e["actor_id"] for e in entries}
    assert str(ours.id) in {e["record_id"] for e in entries}

    r = await client.get("/api/v1/departments", headers=admin.headers)
    assert their_department not in [d["id"] for d in r.json()]
    r = await client.get("/api/v1/login-attempts", headers=admin.headers)
    assert {a["user_id"] for a in r.json()["items"]} <= {str(admin.user.id)}

    # And the other way round: their admin does not see our rows.
    r = await client.get(f"/api/v1/users/{ours.id}", headers=their_admin.headers)
    assert r.status_code == 404
    theirs_audit = await all_pages(client, "/api/v1/audit-log", their_admin.headers, limit=200)
    assert str(ours.id) not in {e["record_id"] for e in theirs_audit}
