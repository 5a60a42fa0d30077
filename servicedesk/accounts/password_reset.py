"""Forgotten passwords: single-use, expiring reset links sent by email.

- A request names an email. Whatever the email, the caller gets the same answer: an unknown
  address, a pending, suspended or deactivated account, and a real one look alike (no user
  enumeration). Only an approved, active account gets a link.
- The token is 32 random bytes; only its SHA-256 is stored. It expires after
  `RESET_LINK_MINUTES`, is used once, and a newer link retires the older ones.
- Using it sets the new password (the password policy applies), clears a lockout, and ends
  every session of the user (refresh tokens revoked, access tokens invalidated).
- Sending: `send_password_reset()` writes the outbox event `user.password_reset_requested`
  in the same transaction; the email handler sends it after commit. Event payloads never
  carry usable tokens (they may reach queues, webhooks and live views), so the link travels
  encrypted with the server's `SecretBox`: only code holding the server secret can read it,
  through `reset_link_from_event()`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import passwords
from servicedesk.accounts.repository import PasswordResetRepository, UserRepository
from servicedesk.accounts.service import end_all_sessions
from servicedesk.audit import service as audit
from servicedesk.core import events
from servicedesk.core.actor import ANONYMOUS, Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.context import current_request
from servicedesk.core.errors import BadRequest
from servicedesk.core.runtime import Runtime
from servicedesk.core.security import hash_token, new_opaque_token
from servicedesk.models import PasswordResetToken, User, UserStatus

RESET_LINK_MINUTES = 30
MAX_LINKS_PER_HOUR = 5
"""More requests for one account within an hour are answered alike but send nothing."""
RESET_PATH = "/reset-password"
EVENT_TYPE = "user.password_reset_requested"


class InvalidResetToken(BadRequest):
    code = "invalid_reset_token"

    def __init__(self) -> None:
        super().__init__(
            "This password reset link is invalid, has expired or was already used; "
            "ask for a new one."
        )


def reset_link(public_url: str, tenant_slug: str, token: str) -> str:
    """The link in the email: the configured public URL (never the request's Host header,
    which a client controls), the organization's path and the token."""
    return f"{public_url.rstrip('/')}/t/{tenant_slug}{RESET_PATH}?token={token}"


def send_password_reset(
    session: AsyncSession, runtime: Runtime, user: User, *, link: str, expires_at: datetime
) -> None:
    """Hand the link to the email handler: an outbox event in the caller's transaction."""
    events.emit(
        session,
        organization_id=user.organization_id,
        event_type=EVENT_TYPE,
        actor=ANONYMOUS,
        payload={
            "user_id": user.id,
            "email": user.email,
            "full_name": user.full_name,
            "reset_link_encrypted": runtime.secrets.encrypt(link),
            "expires_at": expires_at,
        },
    )


def reset_link_from_event(runtime: Runtime, payload: dict[str, Any]) -> str:
    """The reset link of a `user.password_reset_requested` payload (for the email handler)."""
    return runtime.secrets.decrypt(str(payload["reset_link_encrypted"]))


def _may_reset(user: User | None) -> bool:
    return user is not None and user.is_active and user.status == UserStatus.APPROVED


async def request_reset(
    session: AsyncSession,
    runtime: Runtime,
    *,
    email: str,
    tenant_slug: str,
) -> None:
    """Issue and send a link if `email` names an active account; otherwise do nothing.

    Returns nothing either way, so no caller can tell the cases apart.
    """
    user = await UserRepository(session).get_by_email(email)
    if user is None or not _may_reset(user):
        return
    repo = PasswordResetRepository(session)
    now = utc_now()
    if await repo.count_recent(user.id, since=now - timedelta(hours=1)) >= MAX_LINKS_PER_HOUR:
        return
    await repo.retire_open(user.id, at=now)
    token = new_opaque_token(32)
    expires_at = now + timedelta(minutes=RESET_LINK_MINUTES)
    row = PasswordResetToken(
        organization_id=user.organization_id,
        user_id=user.id,
        token_hash=hash_token(token),
        expires_at=expires_at,
        ip=current_request().ip,
    )
    session.add(row)
    await session.flush()
    send_password_reset(
        session,
        runtime,
        user,
        link=reset_link(runtime.settings.public_url, tenant_slug, token),
        expires_at=expires_at,
    )
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=ANONYMOUS,
        action="user.password_reset_requested",
        table="users",
        record_id=user.id,
        new={"expires_at": expires_at},
    )


async def _usable(session: AsyncSession, token: str) -> tuple[PasswordResetToken, User]:
    if not token or len(token) > 200:
        raise InvalidResetToken()
    row = await PasswordResetRepository(session).get_by_hash_for_update(hash_token(token))
    if row is None or row.used_at is not None or row.expires_at <= utc_now():
        raise InvalidResetToken()
    user = await UserRepository(session).get_for_update(row.user_id)
    if user is None or not _may_reset(user):
        raise InvalidResetToken()
    return row, user


async def check_token(session: AsyncSession, token: str) -> User:
    """The user a still-usable link belongs to (the link is not used up), or 400."""
    _, user = await _usable(session, token)
    return user


async def do_reset_password(
    session: AsyncSession, runtime: Runtime, *, token: str, new_password: str
) -> User:
    """Set a new password with a link: the link is used up and every session ends."""
    row, user = await _usable(session, token)
    passwords.check_password(new_password, email=user.email, field="password")
    now = utc_now()
    user.password_hash = await runtime.hasher.hash(new_password)
    user.failed_login_count = 0
    user.locked_until = None
    row.used_at = now
    await PasswordResetRepository(session).retire_open(user.id, at=now)
    ended = await end_all_sessions(session, user, reason="password_reset")
    await session.flush()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action="user.password_reset",
        table="users",
        record_id=user.id,
        new={"sessions_ended": ended, "reset_token_id": row.id},
    )
    return user
