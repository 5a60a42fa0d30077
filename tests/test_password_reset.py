"""Forgotten passwords through the API: the same answer for every email, single-use expiring
links stored hashed, the link encrypted in its outbox event, every session ended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select, text

from servicedesk.accounts import password_reset
from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, OutboxEvent, PasswordResetToken, User, UserStatus
from tests.conftest import PASSWORD, Session, tenant

FORGOT = "/api/v1/auth/password/forgot"
RESET = "/api/v1/auth/password/reset"
NEW_PASSWORD = "A-Brand-New-Passphrase-42"


async def _events(runtime: Runtime, org: Organization) -> list[OutboxEvent]:
    async with runtime.db.session() as session:
        rows = await session.execute(
            select(OutboxEvent)
            .where(
                OutboxEvent.organization_id == org.id,
                OutboxEvent.event_type == password_reset.EVENT_TYPE,
            )
            .order_by(OutboxEvent.seq)
        )
        return list(rows.scalars())


async def _token(runtime: Runtime, org: Organization) -> str:
    link = password_reset.reset_link_from_event(runtime, (await _events(runtime, org))[-1].payload)
    return link.split("token=", 1)[1]


async def test_same_answer_for_every_email(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    active = await make_user(org)
    pending = await make_user(org, status=UserStatus.PENDING)
    answers = []
    for email in (active.email, pending.email, "nobody@example.com", active.email.upper()):
        r = await client.post(FORGOT, json={"email": email}, headers=tenant(org))
        assert r.status_code == 202
        answers.append(r.json())
    assert all(a == answers[0] for a in answers)
    events = await _events(runtime, org)
    assert [e.payload["user_id"] for e in events] == [str(active.id)] * 2
    payload: dict[str, Any] = events[0].payload
    assert "token" not in str({k: v for k, v in payload.items() if k != "reset_link_encrypted"})
    assert "token=" not in payload["reset_link_encrypted"]
    link = password_reset.reset_link_from_event(runtime, payload)
    assert link.startswith(f"{runtime.settings.public_url}/t/{org.slug}/reset-password?token=")
    async with runtime.db.session() as session:
        stored = (await session.execute(select(PasswordResetToken.token_hash))).scalars().all()
    assert link.split("token=")[1] not in stored  # only hashes are kept


async def test_link_sets_the_password_once_and_ends_sessions(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
    login: Callable[..., Awaitable[Session]],
) -> None:
    user = await make_user(org)
    session = await login(user, org)
    await client.post(FORGOT, json={"email": user.email}, headers=tenant(org))
    first = await _token(runtime, org)
    await client.post(FORGOT, json={"email": user.email}, headers=tenant(org))
    token = await _token(runtime, org)

    r = await client.post(
        RESET, json={"token": first, "password": NEW_PASSWORD}, headers=tenant(org)
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_reset_token"  # replaced

    r = await client.post(RESET, json={"token": token, "password": "password"}, headers=tenant(org))
    assert r.status_code == 422 and r.json()["code"] == "weak_password"  # link still good

    r = await client.post(
        RESET, json={"token": token, "password": NEW_PASSWORD}, headers=tenant(org)
    )
    assert r.status_code == 204
    assert (await client.get("/api/v1/me", headers=session.headers)).status_code == 401
    r = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session.refresh_token}, headers=tenant(org)
    )
    assert r.status_code == 401
    await login(user, org, NEW_PASSWORD)

    r = await client.post(RESET, json={"token": token, "password": PASSWORD}, headers=tenant(org))
    assert r.status_code == 400 and r.json()["code"] == "invalid_reset_token"  # single use


async def test_expired_and_foreign_links_are_refused(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    other_org: Organization,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    user = await make_user(org)
    await client.post(FORGOT, json={"email": user.email}, headers=tenant(org))
    token = await _token(runtime, org)
    # Another organization cannot use it (RLS: the row is not there for it).
    r = await client.post(
        RESET, json={"token": token, "password": NEW_PASSWORD}, headers=tenant(other_org)
    )
    assert r.status_code == 400
    async with runtime.db.session() as session:
        await session.execute(
            text(
                "UPDATE password_reset_tokens SET expires_at = now() - interval '1 second' "
                "WHERE user_id = :id"
            ),
            {"id": user.id},
        )
        await session.commit()
    r = await client.post(
        RESET, json={"token": token, "password": NEW_PASSWORD}, headers=tenant(org)
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_reset_token"
