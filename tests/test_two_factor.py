"""TOTP two-factor authentication through the API: enrolment, two-step sign-in, replay and
lockout, recovery codes, disabling, and the audit trail of it all."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select, update

from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, RecoveryCode, Role, User
from tests.conftest import PASSWORD, Session, client_for, tenant

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Session]]


# Helpers ---------------------------------------------------------------------------------


def wrong_code(secret: str) -> str:
    """A six-digit code that matches no time step near now (so the server must refuse it)."""
    totp = pyotp.TOTP(secret)
    now = datetime.now(UTC)
    near = {totp.at(now + timedelta(seconds=30 * k)) for k in range(-3, 4)}
    return next(code for code in (f"{i:06d}" for i in range(100)) if code not in near)


async def set_last_step(runtime: Runtime, user_id: uuid.UUID, step: int | None) -> None:
    """Reset the replay guard so that the current code is fresh again."""
    async with runtime.db.session() as session:
        await session.execute(update(User).where(User.id == user_id).values(totp_last_step=step))


async def user_row(runtime: Runtime, user_id: uuid.UUID) -> User:
    async with runtime.db.session() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


async def enrol(client: httpx.AsyncClient, session: Session) -> tuple[str, list[str]]:
    """Turn 2FA on for a signed-in user; returns the secret and the recovery codes."""
    r = await client.post("/api/v1/me/2fa/setup", headers=session.headers)
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = await client.post(
        "/api/v1/me/2fa/confirm",
        json={"code": pyotp.TOTP(secret).now()},
        headers=session.headers,
    )
    assert r.status_code == 200, r.text
    return secret, r.json()["recovery_codes"]


async def start_login(
    client: httpx.AsyncClient, user: User, org: Organization, password: str = PASSWORD
) -> str:
    """First step of a 2FA sign-in; returns the mfa_token."""
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": password},
        headers=tenant(org),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requires_two_factor"] is True
    return str(body["mfa_token"])


async def verify(
    client: httpx.AsyncClient, org: Organization, mfa_token: str, code: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/mfa/verify",
        json={"mfa_token": mfa_token, "code": code},
        headers=tenant(org),
    )


async def audit_entries(
    client: httpx.AsyncClient, admin: Session, **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(
        "/api/v1/audit-log", params={"limit": 200, **params}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.fixture
async def member(org: Organization, make_user: MakeUser, login: Login) -> Session:
    """A signed-in requester of `org`, 2FA still off."""
    return await login(await make_user(org, Role.REQUESTER), org)


@pytest.fixture
async def enrolled(
    client: httpx.AsyncClient, member: Session, runtime: Runtime
) -> tuple[Session, str, list[str]]:
    """`member` with 2FA on; the replay guard is reset so the current code can be used."""
    secret, codes = await enrol(client, member)
    await set_last_step(runtime, member.user.id, None)
    return member, secret, codes


# Enrolment -------------------------------------------------------------------------------


async def test_setup_returns_secret_uri_and_qr_and_stores_the_secret_encrypted(
    client: httpx.AsyncClient, member: Session, runtime: Runtime
) -> None:
    r = await client.post("/api/v1/me/2fa/setup", headers=member.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    secret = body["secret"]
    assert len(secret) >= 16
    pyotp.TOTP(secret).now()  # a valid base32 seed
    assert body["provisioning_uri"].startswith("otpauth://totp/")
    assert f"secret={secret}" in body["provisioning_uri"]
    assert "issuer=Servicedesk" in body["provisioning_uri"]
    assert body["qr_svg_data_uri"].startswith("data:image/svg+xml")

    row = await user_row(runtime, member.user.id)
    assert row.totp_secret_encrypted is not None
    assert secret not in row.totp_secret_encrypted
    assert runtime.secrets.decrypt(row.totp_secret_encrypted) == secret
    # Not on until confirmed with a first code.
    assert row.totp_enabled is False
    me = await client.get("/api/v1/me", headers=member.headers)
    assert me.json()["totp_enabled"] is False


async def test_confirm_refuses_a_wrong_code_and_accepts_the_right_one(
    client: httpx.AsyncClient, member: Session, runtime: Runtime
) -> None:
    r = await client.post("/api/v1/me/2fa/setup", headers=member.headers)
    secret = r.json()["secret"]

    r = await client.post(
        "/api/v1/me/2fa/confirm", json={"code": wrong_code(secret)}, headers=member.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_code"
    assert (await user_row(runtime, member.user.id)).totp_enabled is False

    r = await client.post(
        "/api/v1/me/2fa/confirm",
        json={"code": pyotp.TOTP(secret).now()},
        headers=member.headers,
    )
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert (await user_row(runtime, member.user.id)).totp_enabled is True
    me = await client.get("/api/v1/me", headers=member.headers)
    assert me.json()["totp_enabled"] is True

    # Recovery codes are stored hashed only.
    async with runtime.db.session() as session:
        hashes = (
            await session.execute(
                select(RecoveryCode.code_hash).where(RecoveryCode.user_id == member.user.id)
            )
        ).scalars()
        stored = list(hashes)
    assert len(stored) == 10
    assert not any(code in h or code.replace("-", "") in h for code in codes for h in stored)


async def test_confirm_before_setup_is_refused(client: httpx.AsyncClient, member: Session) -> None:
    r = await client.post("/api/v1/me/2fa/confirm", json={"code": "123456"}, headers=member.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "2fa_not_started"


@pytest.mark.parametrize(
    "code", ["12345", "1234567", "abcdef", "\u0661\u0662\u0663\u0664\u0665\u0666"]
)
async def test_confirm_refuses_malformed_codes(
    client: httpx.AsyncClient, member: Session, runtime: Runtime, code: str
) -> None:
    r = await client.post("/api/v1/me/2fa/setup", headers=member.headers)
    assert r.status_code == 200
    r = await client.post("/api/v1/me/2fa/confirm", json={"code": code}, headers=member.headers)
    assert r.status_code == 422, r.text
    assert (await user_row(runtime, member.user.id)).totp_enabled is False


async def test_setup_again_while_enabled_is_a_conflict(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]], runtime: Runtime
) -> None:
    member, secret, _ = enrolled
    before = (await user_row(runtime, member.user.id)).totp_secret_encrypted
    r = await client.post("/api/v1/me/2fa/setup", headers=member.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "2fa_already_enabled"
    # The active secret was not replaced.
    assert (await user_row(runtime, member.user.id)).totp_secret_encrypted == before
    r = await client.post(
        "/api/v1/me/2fa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=member.headers
    )
    assert r.status_code == 409


async def test_2fa_routes_need_a_signed_in_user(
    client: httpx.AsyncClient, org: Organization
) -> None:
    for path, body in (
        ("/api/v1/me/2fa/setup", None),
        ("/api/v1/me/2fa/confirm", {"code": "123456"}),
        ("/api/v1/me/2fa/disable", {"password": PASSWORD, "code": "123456"}),
        ("/api/v1/me/2fa/recovery-codes", {"password": PASSWORD, "code": "123456"}),
    ):
        r = await client.post(path, json=body, headers=tenant(org))
        assert r.status_code == 401, (path, r.text)


# Two-step sign-in ------------------------------------------------------------------------


async def test_login_with_2fa_needs_a_second_step(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]]
) -> None:
    member, secret, _ = enrolled
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": member.user.email, "password": PASSWORD},
        headers=tenant(member.org),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requires_two_factor"] is True
    assert body["mfa_token"]
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert "sd_access" not in r.cookies
    assert "sd_refresh" not in r.cookies

    # The mfa_token is not an access token.
    r = await client.get(
        "/api/v1/me",
        headers={"Authorization": f"Bearer {body['mfa_token']}", **tenant(member.org)},
    )
    assert r.status_code == 401

    r = await verify(client, member.org, body["mfa_token"], pyotp.TOTP(secret).now())
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert tokens["user"]["id"] == str(member.user.id)
    me = await client.get(
        "/api/v1/me",
        headers={"Authorization": f"Bearer {tokens['access_token']}", **tenant(member.org)},
    )
    assert me.status_code == 200
    assert me.json()["totp_enabled"] is True


async def test_code_of_the_next_time_step_is_accepted(
    client: httpx.AsyncClient, member: Session
) -> None:
    """Without touching the replay guard: the code after the one used at confirm still works."""
    secret, _ = await enrol(client, member)
    code = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30))
    r = await verify(client, member.org, await start_login(client, member.user, member.org), code)
    assert r.status_code == 200, r.text
    assert r.json()["access_token"]


async def test_a_code_cannot_be_replayed(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]]
) -> None:
    member, secret, _ = enrolled
    code = pyotp.TOTP(secret).now()
    r = await verify(client, member.org, await start_login(client, member.user, member.org), code)
    assert r.status_code == 200, r.text

    r = await verify(client, member.org, await start_login(client, member.user, member.org), code)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "code_reused"
    assert "access_token" not in r.json()


async def test_a_code_of_an_earlier_step_than_the_last_used_is_refused(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]]
) -> None:
    """The guard is "not at or before the last accepted step", not just "not the same code"."""
    member, secret, _ = enrolled
    totp = pyotp.TOTP(secret)
    now = datetime.now(UTC)
    newer = totp.at(now + timedelta(seconds=30))
    # Both earlier steps are inside the ±1 window; take one whose code differs from the newer
    # (all three sharing a code is a one-in-10^12 chance, not worth a skip).
    older = next(
        code for code in (totp.at(now), totp.at(now - timedelta(seconds=30))) if code != newer
    )
    token = await start_login(client, member.user, member.org)
    r = await verify(client, member.org, token, newer)
    assert r.status_code == 200, r.text
    # `older` was never used, and is still inside the window, but its step is behind.
    r = await verify(client, member.org, await start_login(client, member.user, member.org), older)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "code_reused"


async def test_wrong_code_is_refused(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]], runtime: Runtime
) -> None:
    member, secret, _ = enrolled
    token = await start_login(client, member.user, member.org)
    r = await verify(client, member.org, token, wrong_code(secret))
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_code"
    assert "access_token" not in r.json()
    assert (await user_row(runtime, member.user.id)).failed_login_count == 1

    # The same mfa_token still completes with the right code.
    r = await verify(client, member.org, token, pyotp.TOTP(secret).now())
    assert r.status_code == 200, r.text
    assert (await user_row(runtime, member.user.id)).failed_login_count == 0


async def test_non_ascii_digits_are_a_wrong_code_not_a_server_error(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]]
) -> None:
    member, _, _ = enrolled
    token = await start_login(client, member.user, member.org)
    r = await verify(
        client, member.org, token, "\u0661\u0662\u0663\u0664\u0665\u0666"
    )  # Arabic-Indic digits
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_code"


async def test_wrong_codes_count_toward_lockout(
    app: object,
    client: httpx.AsyncClient,
    enrolled: tuple[Session, str, list[str]],
    admin: Session,
    runtime: Runtime,
) -> None:
    member, secret, _ = enrolled
    threshold = runtime.settings.lockout_threshold
    assert threshold == 5
    token = await start_login(client, member.user, member.org)
    bad = wrong_code(secret)
    for _ in range(threshold - 1):
        r = await verify(client, member.org, token, bad)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "invalid_code"
    r = await verify(client, member.org, token, bad)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "account_locked"
    assert (await user_row(runtime, member.user.id)).locked_until is not None

    # Locked: even the right code, and the password step, are refused.
    r = await verify(client, member.org, token, pyotp.TOTP(secret).now())
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "account_locked"
    async with client_for(app) as other:
        r = await other.post(
            "/api/v1/auth/login",
            json={"email": member.user.email, "password": PASSWORD},
            headers=tenant(member.org),
        )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "account_locked"

    # Each refused code is in the sign-in log.
    r = await client.get(
        "/api/v1/login-attempts",
        params={"email": member.user.email, "success": "false", "limit": 50},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    reasons = [a["reason"] for a in r.json()["items"]]
    assert reasons.count("bad_2fa_code") == threshold


async def test_recovery_code_signs_in_once(
    client: httpx.AsyncClient,
    enrolled: tuple[Session, str, list[str]],
    admin: Session,
    runtime: Runtime,
) -> None:
    member, _, codes = enrolled
    code = codes[0]
    r = await verify(client, member.org, await start_login(client, member.user, member.org), code)
    assert r.status_code == 200, r.text
    assert r.json()["access_token"]

    r = await verify(client, member.org, await start_login(client, member.user, member.org), code)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_code"

    # Another code still works, typed loosely (upper case, no dash).
    loose = codes[1].replace("-", "").upper()
    r = await verify(client, member.org, await start_login(client, member.user, member.org), loose)
    assert r.status_code == 200, r.text

    entries = await audit_entries(client, admin, action="user.2fa_recovery_code_used")
    mine = [e for e in entries if e["actor_id"] == str(member.user.id)]
    assert len(mine) == 2
    assert {e["table_name"] for e in mine} == {"recovery_codes"}
    for entry in mine:
        assert code not in json.dumps(entry)


async def test_tampered_or_garbage_mfa_token_is_refused(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]]
) -> None:
    member, secret, _ = enrolled
    token = await start_login(client, member.user, member.org)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for bad in (
        f"{header}.{payload}.{flipped}",
        f"{header}.{payload[:-4]}abcd.{signature}",
        "garbage",
        member.access_token,  # a token of another type
    ):
        r = await verify(client, member.org, bad, pyotp.TOTP(secret).now())
        assert r.status_code == 401, (bad, r.text)
        assert r.json()["code"] == "invalid_mfa_token"
        assert "access_token" not in r.json()


async def test_mfa_token_is_bound_to_its_organization(
    client: httpx.AsyncClient,
    enrolled: tuple[Session, str, list[str]],
    other_org: Organization,
) -> None:
    member, secret, _ = enrolled
    token = await start_login(client, member.user, member.org)
    r = await verify(client, other_org, token, pyotp.TOTP(secret).now())
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_mfa_token"
    # The refused attempt did not spend the code: the right organization still accepts it.
    r = await verify(client, member.org, token, pyotp.TOTP(secret).now())
    assert r.status_code == 200, r.text


async def test_mfa_token_dies_when_sessions_are_ended(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]], admin: Session
) -> None:
    member, secret, _ = enrolled
    token = await start_login(client, member.user, member.org)
    r = await client.delete(f"/api/v1/users/{member.user.id}/sessions", headers=admin.headers)
    assert r.status_code == 204, r.text
    r = await verify(client, member.org, token, pyotp.TOTP(secret).now())
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_mfa_token"


# Disabling and recovery codes ------------------------------------------------------------


async def test_disable_needs_password_and_code(
    client: httpx.AsyncClient,
    enrolled: tuple[Session, str, list[str]],
    runtime: Runtime,
) -> None:
    member, secret, _ = enrolled
    totp = pyotp.TOTP(secret)

    r = await client.post(
        "/api/v1/me/2fa/disable",
        json={"password": "Wrong-Password-1", "code": totp.now()},
        headers=member.headers,
    )
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_credentials"
    r = await client.post(
        "/api/v1/me/2fa/disable",
        json={"password": PASSWORD, "code": wrong_code(secret)},
        headers=member.headers,
    )
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_code"
    assert (await user_row(runtime, member.user.id)).totp_enabled is True

    r = await client.post(
        "/api/v1/me/2fa/disable",
        json={"password": PASSWORD, "code": totp.now()},
        headers=member.headers,
    )
    assert r.status_code == 204, r.text
    row = await user_row(runtime, member.user.id)
    assert row.totp_enabled is False
    assert row.totp_secret_encrypted is None
    async with runtime.db.session() as session:
        left = (
            await session.execute(select(RecoveryCode).where(RecoveryCode.user_id == row.id))
        ).all()
    assert left == []

    # Sign-in is one step again.
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": member.user.email, "password": PASSWORD},
        headers=tenant(member.org),
    )
    assert r.status_code == 200, r.text
    assert r.json()["access_token"]
    assert "requires_two_factor" not in r.json()

    # Disabling again: nothing to disable.
    r = await client.post(
        "/api/v1/me/2fa/disable",
        json={"password": PASSWORD, "code": totp.now()},
        headers=member.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "2fa_not_enabled"


async def test_disable_with_a_recovery_code(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]], runtime: Runtime
) -> None:
    member, _, codes = enrolled
    r = await client.post(
        "/api/v1/me/2fa/disable",
        json={"password": PASSWORD, "code": codes[3]},
        headers=member.headers,
    )
    assert r.status_code == 204, r.text
    assert (await user_row(runtime, member.user.id)).totp_enabled is False


async def test_regenerating_recovery_codes_invalidates_the_old_ones(
    client: httpx.AsyncClient, enrolled: tuple[Session, str, list[str]], runtime: Runtime
) -> None:
    member, secret, old_codes = enrolled
    r = await client.post(
        "/api/v1/me/2fa/recovery-codes",
        json={"password": "Wrong-Password-1", "code": pyotp.TOTP(secret).now()},
        headers=member.headers,
    )
    assert r.status_code == 401, r.text
    r = await client.post(
        "/api/v1/me/2fa/recovery-codes",
        json={"password": PASSWORD, "code": wrong_code(secret)},
        headers=member.headers,
    )
    assert r.status_code == 401, r.text

    r = await client.post(
        "/api/v1/me/2fa/recovery-codes",
        json={"password": PASSWORD, "code": pyotp.TOTP(secret).now()},
        headers=member.headers,
    )
    assert r.status_code == 200, r.text
    new_codes = r.json()["recovery_codes"]
    assert len(new_codes) == 10
    assert not set(new_codes) & set(old_codes)

    r = await verify(
        client, member.org, await start_login(client, member.user, member.org), old_codes[0]
    )
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_code"
    r = await verify(
        client, member.org, await start_login(client, member.user, member.org), new_codes[0]
    )
    assert r.status_code == 200, r.text


async def test_enable_and_disable_are_audited_without_the_secret(
    client: httpx.AsyncClient, member: Session, admin: Session, runtime: Runtime
) -> None:
    secret, codes = await enrol(client, member)
    encrypted = (await user_row(runtime, member.user.id)).totp_secret_encrypted
    assert encrypted is not None
    await set_last_step(runtime, member.user.id, None)
    r = await client.post(
        "/api/v1/me/2fa/disable",
        json={"password": PASSWORD, "code": pyotp.TOTP(secret).now()},
        headers=member.headers,
    )
    assert r.status_code == 204, r.text

    entries = await audit_entries(client, admin, record_id=str(member.user.id), table="users")
    by_action = {e["action"]: e for e in entries}
    enabled = by_action["user.2fa_enabled"]
    assert enabled["actor_id"] == str(member.user.id)
    assert enabled["old_values"] == {"totp_enabled": False}
    assert enabled["new_values"] == {"totp_enabled": True}
    disabled = by_action["user.2fa_disabled"]
    assert disabled["actor_id"] == str(member.user.id)
    assert disabled["old_values"] == {"totp_enabled": True}
    assert disabled["new_values"] == {"totp_enabled": False}

    everything = json.dumps(await audit_entries(client, admin))
    assert secret not in everything
    assert encrypted not in everything
    assert not any(code in everything for code in codes)
    assert "totp_secret" not in everything
