"""Sign-in, tokens and sessions, through HTTP against the real database.

Covers login (tokens, cookies, the login-attempt log), credential errors that do not tell an
unknown email from a wrong password (also by timing), lockout, account states, access-token
validation, refresh-token rotation and reuse detection, logout and session management, cookie
authentication with the double-submit CSRF check, rate limits and malformed input.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from servicedesk.core.clock import utc_now
from servicedesk.core.runtime import Runtime
from servicedesk.core.security import PasswordHashing, hash_token
from servicedesk.models import Organization, RefreshToken, Role, User, UserStatus
from tests.conftest import PASSWORD, Session, client_for, tenant

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
REGISTER = "/api/v1/auth/register"
ME = "/api/v1/me"
MY_SESSIONS = "/api/v1/me/sessions"

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Session]]

PROBLEM_FIELDS = ("type", "title", "status", "detail", "request_id")


# Helpers ---------------------------------------------------------------------------------


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and code)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    for field in PROBLEM_FIELDS:
        assert body.get(field) is not None, f"problem without {field}: {body}"
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
        assert body["type"].endswith(code), body
    return body


async def post_login(
    c: httpx.AsyncClient, org: Organization, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await c.post(LOGIN, json={"email": email, "password": password}, headers=tenant(org))


def bearer(org: Organization, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **tenant(org)}


def set_cookies(r: httpx.Response) -> dict[str, Any]:
    """The Set-Cookie headers of a response, by cookie name (morsels with their attributes)."""
    cookies: dict[str, Any] = {}
    for header in r.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            cookies[name] = morsel
    return cookies


async def refresh_with(c: httpx.AsyncClient, org: Organization, token: str) -> httpx.Response:
    return await c.post(REFRESH, json={"refresh_token": token}, headers=tenant(org))


async def attempts_for(c: httpx.AsyncClient, admin: Session, email: str) -> list[dict[str, Any]]:
    r = await c.get(
        "/api/v1/login-attempts", params={"email": email, "limit": 200}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def db_user(runtime: Runtime, user: User) -> User:
    async with runtime.db.tenant_session(user.organization_id) as s:
        row = await s.get(User, user.id)
        assert row is not None
        return row


async def update_user_row(runtime: Runtime, user: User, **values: Any) -> None:
    async with runtime.db.tenant_session(user.organization_id) as s:
        row = await s.get(User, user.id)
        assert row is not None
        for field, value in values.items():
            setattr(row, field, value)


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# 1. Successful sign-in -------------------------------------------------------------------


async def test_login_success_returns_tokens_cookies_and_logs(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    make_user: MakeUser,
    admin: Session,
) -> None:
    user = await make_user(org)
    assert user.last_login_at is None
    before = utc_now()

    r = await post_login(client, org, user.email)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert body["access_token"] and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]
    assert body["user"]["id"] == str(user.id)
    assert body["user"]["email"] == user.email
    assert "password_hash" not in body["user"]
    assert body["user"]["last_login_at"] is not None

    cookies = set_cookies(r)
    assert {"sd_access", "sd_refresh", "sd_csrf"} <= set(cookies)
    assert cookies["sd_access"].value == body["access_token"]
    assert cookies["sd_refresh"].value == body["refresh_token"]
    assert cookies["sd_csrf"].value
    for name in ("sd_access", "sd_refresh"):
        assert cookies[name]["httponly"] is True, name
    assert not cookies["sd_csrf"]["httponly"]
    for name in ("sd_access", "sd_refresh", "sd_csrf"):
        assert cookies[name]["samesite"].lower() == "lax", name
        assert cookies[name]["path"] == "/", name
        assert int(cookies[name]["max-age"]) > 0, name

    # The access token works and last_login_at was stored.
    me = await client.get(ME, headers=bearer(org, body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["last_login_at"] is not None
    stored = await db_user(runtime, user)
    assert stored.last_login_at is not None
    assert stored.last_login_at >= before - timedelta(seconds=1)

    rows = await attempts_for(client, admin, user.email)
    assert len(rows) == 1
    assert rows[0]["success"] is True
    assert rows[0]["reason"] == "ok"
    assert rows[0]["user_id"] == str(user.id)
    assert rows[0]["ip"]


async def test_login_email_is_case_insensitive(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    r = await post_login(client, org, "  " + user.email.upper() + " ")
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == str(user.id)


# 2. Unknown email and wrong password look alike -----------------------------------------


async def test_unknown_email_and_wrong_password_are_indistinguishable(
    app: object,
    runtime: Runtime,
    org: Organization,
    make_user: MakeUser,
    admin: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A costlier Argon2 profile than the test default, so the hash dominates the request
    # time and skipping it on one path would show clearly.
    slow = PasswordHashing(time_cost=2, memory_kib=32768, parallelism=1)
    monkeypatch.setattr(runtime, "hasher", slow)
    user = await make_user(org)  # hashed with the slow profile

    unknown_times: list[float] = []
    wrong_times: list[float] = []
    unknown_emails = [f"nobody-{uuid.uuid4().hex[:8]}@example.com" for _ in range(4)]
    async with client_for(app) as c:
        # Warm up the path (tenant cache, connections).
        await post_login(c, org, f"warm-{uuid.uuid4().hex[:8]}@example.com", "whatever-1")
        bodies = []
        for email in unknown_emails:
            t0 = time.perf_counter()
            r_unknown = await post_login(c, org, email, "Wrong-Password-1")
            unknown_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r_wrong = await post_login(c, org, user.email, "Wrong-Password-1")
            wrong_times.append(time.perf_counter() - t0)
            bodies.append((assert_problem(r_unknown, 401), assert_problem(r_wrong, 401)))

    for unknown, wrong in bodies:
        assert unknown["code"] == wrong["code"] == "invalid_credentials"
        assert unknown["detail"] == wrong["detail"]
        assert unknown["title"] == wrong["title"]

    unknown_median = statistics.median(unknown_times)
    wrong_median = statistics.median(wrong_times)
    assert unknown_median >= 0.3 * wrong_median, (unknown_times, wrong_times)

    rows = await attempts_for_client(app, admin, unknown_emails[0])
    assert [(a["success"], a["reason"], a["user_id"]) for a in rows] == [
        (False, "unknown_email", None)
    ]
    rows = await attempts_for_client(app, admin, user.email)
    assert len(rows) == 4
    assert all(not a["success"] and a["reason"] == "bad_password" for a in rows)
    assert all(a["user_id"] == str(user.id) for a in rows)


async def attempts_for_client(app: object, admin: Session, email: str) -> list[dict[str, Any]]:
    async with client_for(app) as c:
        return await attempts_for(c, admin, email)


async def test_user_of_another_org_cannot_sign_in_here(
    client: httpx.AsyncClient, org: Organization, other_org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    r = await post_login(client, other_org, user.email)
    assert_problem(r, 401, "invalid_credentials")


# 3. Lockout ------------------------------------------------------------------------------


async def test_lockout_after_repeated_failures_and_unlock(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    make_user: MakeUser,
    admin: Session,
) -> None:
    user = await make_user(org)
    threshold = runtime.settings.lockout_threshold
    assert threshold == 5
    for _ in range(threshold - 1):
        r = await post_login(client, org, user.email, "Wrong-Password-1")
        assert_problem(r, 401, "invalid_credentials")
    # The failure that reaches the threshold locks and says so.
    r = await post_login(client, org, user.email, "Wrong-Password-1")
    body = assert_problem(r, 403, "account_locked")
    assert body["locked_until"]

    # Locked: even the right password is refused.
    r = await post_login(client, org, user.email)
    assert_problem(r, 403, "account_locked")
    stored = await db_user(runtime, user)
    assert stored.locked_until is not None and stored.locked_until > utc_now()

    rows = await attempts_for(client, admin, user.email)
    assert rows[0]["reason"] == "locked" and rows[0]["success"] is False
    audit = await client.get(
        "/api/v1/audit-log",
        params={"action": "user.locked", "record_id": str(user.id)},
        headers=admin.headers,
    )
    assert audit.status_code == 200, audit.text
    assert len(audit.json()["items"]) == 1

    # Once the lock has run out, the right password works and the state is reset.
    await update_user_row(runtime, user, locked_until=utc_now() - timedelta(minutes=1))
    r = await post_login(client, org, user.email)
    assert r.status_code == 200, r.text
    stored = await db_user(runtime, user)
    assert stored.failed_login_count == 0
    assert stored.locked_until is None


async def test_success_resets_failed_login_count(
    client: httpx.AsyncClient, runtime: Runtime, org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    for _ in range(3):
        assert_problem(
            await post_login(client, org, user.email, "Wrong-Password-1"),
            401,
            "invalid_credentials",
        )
    assert (await db_user(runtime, user)).failed_login_count == 3

    assert (await post_login(client, org, user.email)).status_code == 200
    assert (await db_user(runtime, user)).failed_login_count == 0

    # Without the reset, 3 + 4 failures would have crossed the threshold of 5.
    for _ in range(4):
        assert_problem(
            await post_login(client, org, user.email, "Wrong-Password-1"),
            401,
            "invalid_credentials",
        )
    assert (await db_user(runtime, user)).failed_login_count == 4


# 4. Account states -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (UserStatus.PENDING, "account_pending"),
        (UserStatus.REJECTED, "account_rejected"),
        (UserStatus.SUSPENDED, "account_suspended"),
    ],
)
async def test_not_approved_accounts_cannot_sign_in(
    client: httpx.AsyncClient,
    org: Organization,
    make_user: MakeUser,
    admin: Session,
    status: UserStatus,
    code: str,
) -> None:
    user = await make_user(org, status=status)
    r = await post_login(client, org, user.email)
    body = assert_problem(r, 403, code)
    assert "access_token" not in body
    assert "sd_access" not in set_cookies(r)

    # A wrong password does not reveal the account's state.
    r = await post_login(client, org, user.email, "Wrong-Password-1")
    assert_problem(r, 401, "invalid_credentials")

    rows = await attempts_for(client, admin, user.email)
    assert [a["reason"] for a in rows] == ["bad_password", code]
    assert not any(a["success"] for a in rows)


async def test_deactivated_account_cannot_sign_in(
    client: httpx.AsyncClient, runtime: Runtime, org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    await update_user_row(runtime, user, is_active=False)
    r = await post_login(client, org, user.email)
    assert_problem(r, 403, "account_deactivated")


# 5. Access tokens ------------------------------------------------------------------------


async def test_invalid_access_tokens_are_refused(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
) -> None:
    user = await make_user(org)
    session = await login(user, org)
    good = session.access_token
    ok = await client.get(ME, headers=bearer(org, good))
    assert ok.status_code == 200, ok.text

    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})

    def issue(token_type: str, *, org_id: uuid.UUID = org.id, lifetime: float = 600) -> str:
        token, _ = runtime.signer.issue(
            subject=user.id,
            organization_id=org_id,
            token_type=token_type,
            lifetime=timedelta(seconds=lifetime),
            session_version=0,
        )
        return token

    other_user = await make_user(org)
    forged_payload = b64url({**claims, "sub": str(other_user.id)})
    bad: dict[str, str] = {
        "payload changed, signature kept": f"{header}.{forged_payload}.{signature}",
        "signed with another key": jwt.encode(claims, b"k" * 32, algorithm="HS256"),
        "signature removed": f"{header}.{payload}.",
        "alg none": f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, capitalised": f"{b64url({'alg': 'None', 'typ': 'JWT'})}.{payload}.",
        "expired": issue("access", lifetime=-10),
        "refresh type": issue("refresh"),
        "mfa type": issue("mfa"),
        "opaque refresh token": session.refresh_token,
        "garbage": "not-a-token",
        "three garbage parts": "aaa.bbb.ccc",
    }
    for name, token in bad.items():
        r = await client.get(ME, headers=bearer(org, token))
        body = assert_problem(r, 401, "invalid_token")
        assert r.headers.get("www-authenticate") == "Bearer", name
        assert body["code"] == "invalid_token", name

    # No token at all.
    assert_problem(await client.get(ME, headers=tenant(org)), 401, "not_authenticated")
    # An Authorization header of another scheme is no token either.
    r = await client.get(ME, headers={"Authorization": f"Basic {good}", **tenant(org)})
    assert_problem(r, 401, "not_authenticated")


def test_remembered_access_tokens_still_expire_and_keep_their_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signer remembers verified access tokens (core/security.py); a remembered one is
    refused once it expires, and the memory is bounded."""
    from servicedesk.core import security

    signer = security.TokenSigner("s" * 32)
    user, org_id = uuid.uuid4(), uuid.uuid4()
    token, expires = signer.issue(
        subject=user, organization_id=org_id, token_type="access", lifetime=timedelta(seconds=2)
    )
    claims = signer.verify(token, token_type="access")
    assert signer.verify(token, token_type="access") is claims  # remembered
    # The same string asked for as another type is decoded again, and refused.
    with pytest.raises(security.InvalidTokenError):
        signer.verify(token, token_type="refresh")
    time.sleep(max(0.0, (expires - utc_now()).total_seconds()) + 0.05)
    with pytest.raises(security.InvalidTokenError):
        signer.verify(token, token_type="access")
    monkeypatch.setattr(security, "VERIFIED_ACCESS_TOKENS", 3)
    for _ in range(5):
        more, _ = signer.issue(
            subject=user, organization_id=org_id, token_type="access", lifetime=timedelta(1)
        )
        signer.verify(more, token_type="access")
    assert len(signer._verified) == 3


async def test_access_token_is_bound_to_its_organization(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
) -> None:
    admin_a = await make_user(org, Role.ADMIN)
    session = await login(admin_a, org)
    assert (await client.get("/api/v1/users", headers=session.headers)).status_code == 200

    # A's token sent to B.
    for path in (ME, "/api/v1/users", "/api/v1/login-attempts", "/api/v1/audit-log"):
        r = await client.get(path, headers=bearer(other_org, session.access_token))
        assert_problem(r, 401, "invalid_token")

    # A validly signed token naming B, for the user id of A: B has no such user.
    token_b, _ = runtime.signer.issue(
        subject=admin_a.id,
        organization_id=other_org.id,
        token_type="access",
        lifetime=timedelta(minutes=5),
        session_version=0,
    )
    for path in (ME, "/api/v1/users", f"/api/v1/users/{admin_a.id}", "/api/v1/audit-log"):
        r = await client.get(path, headers=bearer(other_org, token_b))
        assert_problem(r, 401, "invalid_token")
    # ...and it is not good in A either.
    r = await client.get(ME, headers=bearer(org, token_b))
    assert_problem(r, 401, "invalid_token")


# 6. Refresh ------------------------------------------------------------------------------


async def test_refresh_rotates_the_token(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser, login: Login
) -> None:
    session = await login(await make_user(org), org)
    r = await refresh_with(client, org, session.refresh_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["refresh_token"] != session.refresh_token
    assert body["access_token"] != session.access_token
    assert set_cookies(r)["sd_refresh"].value == body["refresh_token"]

    me = await client.get(ME, headers=bearer(org, body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(session.user.id)

    # The old token is spent.
    r = await refresh_with(client, org, session.refresh_token)
    assert_problem(r, 401)


async def test_refresh_token_reuse_revokes_the_family(
    client: httpx.AsyncClient,
    org: Organization,
    make_user: MakeUser,
    login: Login,
    admin: Session,
) -> None:
    session = await login(await make_user(org), org)
    listed = await client.get(MY_SESSIONS, headers=session.headers)
    assert listed.status_code == 200, listed.text
    [family] = [s["id"] for s in listed.json()]

    first = session.refresh_token
    r = await refresh_with(client, org, first)
    assert r.status_code == 200, r.text
    second = r.json()["refresh_token"]
    r = await refresh_with(client, org, second)
    assert r.status_code == 200, r.text
    newest = r.json()["refresh_token"]

    # The first token again: theft. The whole session ends, the newest token with it.
    assert_problem(await refresh_with(client, org, first), 401, "refresh_token_reused")
    assert_problem(await refresh_with(client, org, newest), 401, "invalid_refresh_token")
    assert (await client.get(MY_SESSIONS, headers=session.headers)).json() == []

    audit = await client.get(
        "/api/v1/audit-log", params={"action": "session.reuse_detected"}, headers=admin.headers
    )
    assert audit.status_code == 200, audit.text
    entries = [e for e in audit.json()["items"] if e["record_id"] == family]
    assert len(entries) == 1
    assert entries[0]["actor_id"] == str(session.user.id)


async def test_refresh_token_is_bound_to_its_organization(
    client: httpx.AsyncClient,
    org: Organization,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
) -> None:
    session = await login(await make_user(org), org)
    r = await refresh_with(client, other_org, session.refresh_token)
    assert_problem(r, 401, "invalid_refresh_token")
    # It was not consumed by the failed attempt.
    r = await refresh_with(client, org, session.refresh_token)
    assert r.status_code == 200, r.text


async def test_expired_refresh_token_is_refused(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    make_user: MakeUser,
    login: Login,
) -> None:
    session = await login(await make_user(org), org)
    async with runtime.db.tenant_session(org.id) as s:
        row = (
            await s.execute(
                select(RefreshToken).where(
                    RefreshToken.token_hash == hash_token(session.refresh_token)
                )
            )
        ).scalar_one()
        row.expires_at = utc_now() - timedelta(seconds=1)
    r = await refresh_with(client, org, session.refresh_token)
    assert_problem(r, 401, "invalid_refresh_token")


async def test_refresh_without_or_with_unknown_token_is_refused(
    client: httpx.AsyncClient, org: Organization
) -> None:
    assert_problem(await client.post(REFRESH, headers=tenant(org)), 401, "invalid_refresh_token")
    assert_problem(await refresh_with(client, org, "x" * 43), 401, "invalid_refresh_token")


# 7. Logout and sessions ------------------------------------------------------------------


async def test_logout_ends_the_session_and_clears_cookies(
    app: object, org: Organization, make_user: MakeUser, admin: Session
) -> None:
    user = await make_user(org)
    async with client_for(app) as c:
        r = await post_login(c, org, user.email)
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]
        assert c.cookies.get("sd_access")

        r = await c.post(LOGOUT, json={"refresh_token": refresh}, headers=tenant(org))
        assert r.status_code == 204, r.text
        assert r.content == b""
        cleared = set_cookies(r)
        for name in ("sd_access", "sd_refresh", "sd_csrf"):
            assert name in cleared, name
            assert cleared[name]["max-age"] in ("0", 0), name
            assert c.cookies.get(name) is None, name

        assert_problem(await refresh_with(c, org, refresh), 401, "invalid_refresh_token")

    audit = await audit_entries(app, admin, "session.revoked")
    assert any(e["actor_id"] == str(user.id) for e in audit)


async def audit_entries(app: object, admin: Session, action: str) -> list[dict[str, Any]]:
    async with client_for(app) as c:
        r = await c.get("/api/v1/audit-log", params={"action": action}, headers=admin.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_logout_with_cookie_needs_csrf(
    app: object, org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    async with client_for(app) as c:
        r = await post_login(c, org, user.email)
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]

        assert_problem(await c.post(LOGOUT, headers=tenant(org)), 403, "csrf_failed")
        r = await c.post(LOGOUT, headers={"X-CSRF-Token": c.cookies["sd_csrf"], **tenant(org)})
        assert r.status_code == 204, r.text
    async with client_for(app) as c:
        assert_problem(await refresh_with(c, org, refresh), 401, "invalid_refresh_token")


async def test_admin_ends_all_sessions_of_a_user(
    client: httpx.AsyncClient,
    org: Organization,
    make_user: MakeUser,
    login: Login,
    admin: Session,
) -> None:
    user = await make_user(org)
    one = await login(user, org)
    two = await login(user, org)
    listed = await client.get(f"/api/v1/users/{user.id}/sessions", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()) == 2

    r = await client.delete(f"/api/v1/users/{user.id}/sessions", headers=admin.headers)
    assert r.status_code == 204, r.text

    for s in (one, two):
        assert_problem(await refresh_with(client, org, s.refresh_token), 401)
        assert_problem(await client.get(ME, headers=s.headers), 401, "invalid_token")
    listed = await client.get(f"/api/v1/users/{user.id}/sessions", headers=admin.headers)
    assert listed.json() == []
    # The admin's own session is untouched; the user can sign in again.
    assert (await client.get(ME, headers=admin.headers)).status_code == 200
    fresh = await login(user, org)
    assert (await client.get(ME, headers=fresh.headers)).status_code == 200


async def test_suspending_a_user_ends_their_sessions(
    client: httpx.AsyncClient,
    org: Organization,
    make_user: MakeUser,
    login: Login,
    admin: Session,
) -> None:
    user = await make_user(org)
    session = await login(user, org)
    assert (await client.get(ME, headers=session.headers)).status_code == 200

    r = await client.post(f"/api/v1/users/{user.id}/suspend", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "suspended"

    assert_problem(await client.get(ME, headers=session.headers), 401, "invalid_token")
    assert_problem(await refresh_with(client, org, session.refresh_token), 401)
    assert_problem(await post_login(client, org, user.email), 403, "account_suspended")


async def test_list_and_end_own_sessions(
    app: object, org: Organization, make_user: MakeUser, login: Login
) -> None:
    user = await make_user(org)
    first = await login(user, org)
    async with client_for(app, headers={"User-Agent": "second-browser"}) as c2:
        r = await post_login(c2, org, user.email)
        assert r.status_code == 200, r.text
        second_refresh = r.json()["refresh_token"]
        # Cookie-authenticated listing marks the session the cookie belongs to as current.
        r = await c2.get(MY_SESSIONS, headers=tenant(org))
        assert r.status_code == 200, r.text
        sessions = r.json()
        assert len(sessions) == 2
        current = [s for s in sessions if s["current"]]
        assert len(current) == 1
        assert current[0]["user_agent"] == "second-browser"
        second_id = current[0]["id"]
        for s in sessions:
            assert set(s) >= {"id", "started_at", "last_used_at", "expires_at", "ip"}

    async with client_for(app) as c:
        r = await c.delete(f"{MY_SESSIONS}/{second_id}", headers=first.headers)
        assert r.status_code == 204, r.text
        assert_problem(await refresh_with(c, org, second_refresh), 401, "invalid_refresh_token")
        r = await c.get(MY_SESSIONS, headers=first.headers)
        remaining = [s["id"] for s in r.json()]
        assert len(remaining) == 1
        assert second_id not in remaining
        # The other session lives on.
        assert (await refresh_with(c, org, first.refresh_token)).status_code == 200


async def test_cannot_end_another_users_session(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser, login: Login
) -> None:
    victim = await login(await make_user(org), org)
    attacker = await login(await make_user(org), org)
    [victim_session] = (await client.get(MY_SESSIONS, headers=victim.headers)).json()

    r = await client.delete(f"{MY_SESSIONS}/{victim_session['id']}", headers=attacker.headers)
    assert r.status_code in (204, 404), r.text
    listed = (await client.get(MY_SESSIONS, headers=victim.headers)).json()
    assert [s["id"] for s in listed] == [victim_session["id"]]
    assert (await refresh_with(client, org, victim.refresh_token)).status_code == 200


# 8. Cookie authentication and CSRF -------------------------------------------------------


async def test_cookie_auth_and_csrf(app: object, org: Organization, make_user: MakeUser) -> None:
    user = await make_user(org)
    async with client_for(app) as c:
        # Without cookies there is no session.
        assert_problem(await c.get(ME, headers=tenant(org)), 401, "not_authenticated")
        r = await post_login(c, org, user.email)
        assert r.status_code == 200, r.text
        csrf = c.cookies["sd_csrf"]

        # Safe request: the cookie is enough.
        r = await c.get(ME, headers=tenant(org))
        assert r.status_code == 200, r.text
        assert r.json()["id"] == str(user.id)

        # Unsafe request: the CSRF header must echo the cookie.
        r = await c.patch(ME, json={"first_name": "New"}, headers=tenant(org))
        assert_problem(r, 403, "csrf_failed")
        r = await c.patch(
            ME, json={"first_name": "New"}, headers={"X-CSRF-Token": "wrong", **tenant(org)}
        )
        assert_problem(r, 403, "csrf_failed")
        assert (await c.get(ME, headers=tenant(org))).json()["first_name"] == "Test"

        r = await c.patch(
            ME, json={"first_name": "New"}, headers={"X-CSRF-Token": csrf, **tenant(org)}
        )
        assert r.status_code == 200, r.text
        assert r.json()["first_name"] == "New"

        access = c.cookies["sd_access"]

    # The CSRF header without its cookie is not enough either.
    async with client_for(app, cookies={"sd_access": access}) as c:
        r = await c.patch(
            ME, json={"first_name": "Other"}, headers={"X-CSRF-Token": csrf, **tenant(org)}
        )
        assert_problem(r, 403, "csrf_failed")
        r = await c.get(ME, headers=tenant(org))
        assert r.status_code == 200, r.text
        assert r.json()["first_name"] == "New"


async def test_cookie_refresh_needs_csrf(
    app: object, org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    async with client_for(app) as c:
        r = await post_login(c, org, user.email)
        assert r.status_code == 200, r.text
        old_refresh = c.cookies["sd_refresh"]

        assert_problem(await c.post(REFRESH, headers=tenant(org)), 403, "csrf_failed")
        r = await c.post(REFRESH, headers={"X-CSRF-Token": "nope", **tenant(org)})
        assert_problem(r, 403, "csrf_failed")
        assert c.cookies["sd_refresh"] == old_refresh

        r = await c.post(REFRESH, headers={"X-CSRF-Token": c.cookies["sd_csrf"], **tenant(org)})
        assert r.status_code == 200, r.text
        assert r.json()["refresh_token"] != old_refresh
        assert c.cookies["sd_refresh"] == r.json()["refresh_token"]
        assert c.cookies["sd_access"] == r.json()["access_token"]
        # The rotated cookie session still works.
        assert (await c.get(ME, headers=tenant(org))).status_code == 200


async def test_bearer_requests_need_no_csrf(
    client: httpx.AsyncClient, org: Organization, make_user: MakeUser, login: Login
) -> None:
    session = await login(await make_user(org), org)
    r = await client.patch(ME, json={"first_name": "Bearer"}, headers=session.headers)
    assert r.status_code == 200, r.text
    assert r.json()["first_name"] == "Bearer"


# 9. Rate limits --------------------------------------------------------------------------


def assert_rate_limited(r: httpx.Response, window: int) -> None:
    body = assert_problem(r, 429, "rate_limited")
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert body["retry_after"] == retry_after


async def test_login_rate_limit_per_account(
    app: object, org: Organization, make_user: MakeUser
) -> None:
    user = await make_user(org)
    spellings = [user.email, user.email.upper(), user.email.capitalize()]
    for i in range(10):
        async with client_for(app) as c:
            r = await post_login(c, org, spellings[i % 3])
            assert r.status_code == 200, (i, r.text)
    async with client_for(app) as c:
        # Even the right password, from a fresh IP, waits now.
        assert_rate_limited(await post_login(c, org, user.email.upper()), 60)
        # Another account is not affected.
        other = await make_user(org)
        assert (await post_login(c, org, other.email)).status_code == 200


async def test_login_rate_limit_per_ip(app: object, org: Organization, make_user: MakeUser) -> None:
    async with client_for(app) as c:
        for i in range(30):
            r = await post_login(c, org, f"probe-{i}-{uuid.uuid4().hex[:6]}@example.com")
            assert_problem(r, 401, "invalid_credentials")
        user = await make_user(org)
        assert_rate_limited(await post_login(c, org, user.email), 60)
    # Another client IP is not affected.
    async with client_for(app) as c:
        assert (await post_login(c, org, user.email)).status_code == 200


async def test_register_rate_limit_per_ip(app: object, org: Organization) -> None:
    def form(i: int) -> dict[str, str]:
        return {
            "first_name": "Reg",
            "last_name": f"User{i}",
            "email": f"reg-{i}-{uuid.uuid4().hex[:6]}@example.com",
            "company_id": f"MA{9000 + i}",
            "password": PASSWORD,
        }

    async with client_for(app) as c:
        for i in range(10):
            r = await c.post(REGISTER, json=form(i), headers=tenant(org))
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "pending"
        assert_rate_limited(await c.post(REGISTER, json=form(10), headers=tenant(org)), 3600)
    async with client_for(app) as c:
        r = await c.post(REGISTER, json=form(11), headers=tenant(org))
        assert r.status_code == 201, r.text


# 10. Bad input ---------------------------------------------------------------------------


async def test_malformed_login_bodies(client: httpx.AsyncClient, org: Organization) -> None:
    json_headers = {"Content-Type": "application/json", **tenant(org)}
    r = await client.post(LOGIN, content=b'{"email": "a@b.c", ', headers=json_headers)
    assert_problem(r, 400, "malformed_body")
    r = await client.post(LOGIN, content=b'["a@b.c", "pw"]', headers=json_headers)
    assert_problem(r, 400, "malformed_body")

    def locs(body: dict[str, Any]) -> list[list[str]]:
        return [e["loc"] for e in body["errors"]]

    r = await client.post(LOGIN, json={"email": "a@example.com"}, headers=tenant(org))
    assert ["body", "password"] in locs(assert_problem(r, 422, "validation_error"))

    r = await client.post(LOGIN, json={"password": PASSWORD}, headers=tenant(org))
    assert ["body", "email"] in locs(assert_problem(r, 422, "validation_error"))

    r = await client.post(
        LOGIN,
        json={"email": "a@example.com", "password": PASSWORD, "role": "admin"},
        headers=tenant(org),
    )
    assert ["body", "role"] in locs(assert_problem(r, 422, "validation_error"))

    r = await client.post(
        LOGIN, json={"email": "a@example.com", "password": "p" * 2000}, headers=tenant(org)
    )
    assert ["body", "password"] in locs(assert_problem(r, 422, "validation_error"))

    r = await client.post(LOGIN, json={"email": "", "password": ""}, headers=tenant(org))
    errors = locs(assert_problem(r, 422, "validation_error"))
    assert ["body", "email"] in errors and ["body", "password"] in errors


async def test_login_needs_a_known_tenant(client: httpx.AsyncClient) -> None:
    body = {"email": "a@example.com", "password": PASSWORD}
    assert_problem(await client.post(LOGIN, json=body), 404, "tenant_required")
    r = await client.post(LOGIN, json=body, headers={"X-Tenant-ID": "no-such-org-0000"})
    assert_problem(r, 404, "tenant_not_found")
    r = await client.post(LOGIN, json=body, headers={"X-Tenant-ID": str(uuid.uuid4())})
    assert_problem(r, 404, "tenant_not_found")
