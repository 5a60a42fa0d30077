"""Sign-in, two-factor completion, session tokens (issue, rotate, revoke) and lockout."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import two_factor
from servicedesk.accounts.repository import (
    LoginAttemptRepository,
    SessionRepository,
    UserRepository,
)
from servicedesk.accounts.service import end_all_sessions
from servicedesk.audit import service as audit
from servicedesk.core.actor import Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.context import current_request
from servicedesk.core.errors import Forbidden, Unauthorized
from servicedesk.core.runtime import Runtime
from servicedesk.core.security import InvalidTokenError, hash_token, new_opaque_token
from servicedesk.models import LoginAttempt, RefreshToken, User, UserStatus


class InvalidCredentials(Unauthorized):
    """Unknown email and wrong password look the same. The attempt is kept (logged)."""

    code = "invalid_credentials"
    keep_changes = True

    def __init__(self) -> None:
        super().__init__("The email or password is wrong.")


class AccountLocked(Forbidden):
    code = "account_locked"
    keep_changes = True


class AccountNotActive(Forbidden):
    keep_changes = True


class InvalidSecondFactor(Unauthorized):
    """A wrong or replayed 2FA code: counts toward the lockout, so the change is kept."""

    keep_changes = True


class InvalidSession(Unauthorized):
    code = "invalid_refresh_token"
    keep_changes = True


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    family_id: uuid.UUID


@dataclass(frozen=True)
class MfaPending:
    mfa_token: str


def _log_attempt(
    session: AsyncSession,
    organization_id: uuid.UUID,
    email: str,
    user: User | None,
    *,
    success: bool,
    reason: str,
) -> None:
    ctx = current_request()
    LoginAttemptRepository(session).add(
        LoginAttempt(
            organization_id=organization_id,
            email=email.strip().lower()[:254],
            user_id=user.id if user else None,
            success=success,
            reason=reason,
            ip=ctx.ip,
            user_agent=(ctx.user_agent or "")[:400] or None,
        )
    )


def _check_not_locked(user: User) -> None:
    if user.locked_until and user.locked_until > utc_now():
        minutes = math.ceil((user.locked_until - utc_now()).total_seconds() / 60)
        raise AccountLocked(
            f"Too many failed sign-ins: the account is locked for {minutes} more minute(s).",
            extra={"locked_until": user.locked_until.isoformat()},
        )


def _check_may_sign_in(user: User) -> None:
    if not user.is_active:
        raise AccountNotActive("This account has been deactivated.", code="account_deactivated")
    if user.status != UserStatus.APPROVED:
        messages = {
            UserStatus.PENDING: "This account is waiting for an administrator's approval.",
            UserStatus.REJECTED: "This registration was rejected by an administrator.",
            UserStatus.SUSPENDED: "This account is suspended.",
        }
        raise AccountNotActive(messages[UserStatus(user.status)], code=f"account_{user.status}")


async def _fail(
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    email: str,
    *,
    reason: str,
    error: Unauthorized,
) -> None:
    """Count a failure toward the lockout, log it, and raise (changes are kept)."""
    settings = runtime.settings
    locked = await UserRepository(session).register_failure(
        user.id,
        threshold=settings.lockout_threshold,
        locked_until=utc_now() + timedelta(minutes=settings.lockout_minutes),
    )
    _log_attempt(session, user.organization_id, email, user, success=False, reason=reason)
    if locked is not None:
        await audit.record(
            session,
            organization_id=user.organization_id,
            actor=Actor.user(user.id),
            action="user.locked",
            table="users",
            record_id=user.id,
            new={"locked_until": locked},
        )
        raise AccountLocked(
            f"Too many failed sign-ins: the account is locked for "
            f"{settings.lockout_minutes} minutes.",
            extra={"locked_until": locked.isoformat()},
        )
    raise error


async def authenticate(
    session: AsyncSession,
    runtime: Runtime,
    *,
    organization_id: uuid.UUID,
    email: str,
    password: str,
) -> IssuedTokens | MfaPending:
    user = await UserRepository(session).get_by_email(email)
    if user is not None and user.locked_until and user.locked_until > utc_now():
        _log_attempt(session, organization_id, email, user, success=False, reason="locked")
        _check_not_locked(user)
    # Always verify, also for unknown emails, so timing does not tell them apart.
    ok = await runtime.hasher.verify(user.password_hash if user else None, password)
    if user is None:
        _log_attempt(session, organization_id, email, None, success=False, reason="unknown_email")
        raise InvalidCredentials()
    if not ok:
        await _fail(
            session, runtime, user, email, reason="bad_password", error=InvalidCredentials()
        )
    try:
        _check_may_sign_in(user)
    except AccountNotActive as exc:
        _log_attempt(session, organization_id, email, user, success=False, reason=exc.code)
        raise
    if runtime.hasher.needs_rehash(user.password_hash):
        user.password_hash = await runtime.hasher.hash(password)
    if user.totp_enabled:
        token, _ = runtime.signer.issue(
            subject=user.id,
            organization_id=organization_id,
            token_type="mfa",
            lifetime=timedelta(minutes=runtime.settings.mfa_token_minutes),
            session_version=user.session_version,
        )
        return MfaPending(mfa_token=token)
    return await _complete(session, runtime, user, email)


async def verify_mfa(
    session: AsyncSession,
    runtime: Runtime,
    *,
    organization_id: uuid.UUID,
    mfa_token: str,
    code: str,
) -> IssuedTokens:
    try:
        claims = runtime.signer.verify(mfa_token, token_type="mfa")
    except InvalidTokenError as exc:
        raise Unauthorized(
            "The sign-in step has expired; sign in again.", code="invalid_mfa_token"
        ) from exc
    if claims.organization_id != organization_id:
        raise Unauthorized("The sign-in step has expired; sign in again.", code="invalid_mfa_token")
    user = await UserRepository(session).get_for_update(claims.subject)
    if user is None or not user.totp_enabled or user.session_version != claims.session_version:
        raise Unauthorized("The sign-in step has expired; sign in again.", code="invalid_mfa_token")
    _check_not_locked(user)
    _check_may_sign_in(user)
    result = await two_factor.check_code(session, runtime, user, code)
    if result == "replayed":
        await _fail(
            session,
            runtime,
            user,
            user.email,
            reason="2fa_code_replayed",
            error=InvalidSecondFactor(
                "This code was already used; wait for the next one.", code="code_reused"
            ),
        )
    elif result == "invalid":
        await _fail(
            session,
            runtime,
            user,
            user.email,
            reason="bad_2fa_code",
            error=InvalidSecondFactor("The two-factor code is wrong.", code="invalid_code"),
        )
    return await _complete(session, runtime, user, user.email, reason=f"ok_{result}")


async def _complete(
    session: AsyncSession, runtime: Runtime, user: User, email: str, *, reason: str = "ok"
) -> IssuedTokens:
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = utc_now()
    _log_attempt(session, user.organization_id, email, user, success=True, reason=reason)
    return await issue_tokens(session, runtime, user, family_id=uuid.uuid4())


async def issue_tokens(
    session: AsyncSession, runtime: Runtime, user: User, *, family_id: uuid.UUID
) -> IssuedTokens:
    settings = runtime.settings
    lifetime = timedelta(minutes=settings.access_token_minutes)
    access, _ = runtime.signer.issue(
        subject=user.id,
        organization_id=user.organization_id,
        token_type="access",
        lifetime=lifetime,
        session_version=user.session_version,
    )
    refresh = new_opaque_token()
    ctx = current_request()
    session.add(
        RefreshToken(
            organization_id=user.organization_id,
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_token(refresh),
            expires_at=utc_now() + timedelta(days=settings.refresh_token_days),
            ip=ctx.ip,
            user_agent=(ctx.user_agent or "")[:400] or None,
        )
    )
    await session.flush()
    return IssuedTokens(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(lifetime.total_seconds()),
        user=user,
        family_id=family_id,
    )


async def rotate(session: AsyncSession, runtime: Runtime, refresh_token: str) -> IssuedTokens:
    """Exchange a refresh token for a new pair; a reused (already rotated) one is theft."""
    repo = SessionRepository(session)
    link = await repo.get_by_hash_for_update(hash_token(refresh_token))
    now = utc_now()
    if link is None or link.revoked_at is not None:
        raise InvalidSession("The session has ended; sign in again.")
    if link.rotated_at is not None:
        await repo.revoke_family(link.family_id, at=now, reason="reuse_detected")
        await audit.record(
            session,
            organization_id=link.organization_id,
            actor=Actor.user(link.user_id),
            action="session.reuse_detected",
            table="refresh_tokens",
            record_id=link.family_id,
            new={"revoked_reason": "reuse_detected"},
        )
        raise InvalidSession(
            "This refresh token was already used; the session has been ended for safety.",
            code="refresh_token_reused",
        )
    if link.expires_at <= now:
        raise InvalidSession("The session has expired; sign in again.")
    user = await UserRepository(session).get(link.user_id)
    if user is None:
        raise InvalidSession("The session has ended; sign in again.")
    try:
        _check_may_sign_in(user)
    except AccountNotActive as exc:
        raise InvalidSession("The session has ended; sign in again.") from exc
    link.rotated_at = now
    return await issue_tokens(session, runtime, user, family_id=link.family_id)


async def logout(session: AsyncSession, refresh_token: str) -> bool:
    """End the session the refresh token belongs to; idempotent."""
    repo = SessionRepository(session)
    link = await repo.get_by_hash_for_update(hash_token(refresh_token))
    if link is None:
        return False
    count = await repo.revoke_family(link.family_id, at=utc_now(), reason="logout")
    if count:
        await audit.record(
            session,
            organization_id=link.organization_id,
            actor=Actor.user(link.user_id),
            action="session.revoked",
            table="refresh_tokens",
            record_id=link.family_id,
            new={"revoked_reason": "logout"},
        )
    return True


async def revoke_session(
    session: AsyncSession,
    user: User,
    family_id: uuid.UUID,
    *,
    actor: Actor,
    reason: str = "revoked",
) -> int:
    """End one of the user's sessions; 0 when it is not theirs or already ended.

    `reason` is `revoked` (the user ended it) or `revoked_by_admin`.
    """
    count = await SessionRepository(session).revoke_family(
        family_id, at=utc_now(), reason=reason, user_id=user.id
    )
    if count:
        await audit.record(
            session,
            organization_id=user.organization_id,
            actor=actor,
            action="session.revoked",
            table="refresh_tokens",
            record_id=family_id,
            new={"revoked_reason": reason, "user_id": user.id},
        )
    return count


async def revoke_all_sessions(session: AsyncSession, user: User, *, actor: Actor) -> int:
    count = await end_all_sessions(session, user, reason="revoked_by_admin")
    await session.flush()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=actor,
        action="session.revoked_all",
        table="users",
        record_id=user.id,
        new={"sessions_revoked": count},
    )
    return count


async def list_sessions(session: AsyncSession, user: User) -> list[tuple[RefreshToken, datetime]]:
    repo = SessionRepository(session)
    links = await repo.active_links(user.id, now=utc_now())
    starts = await repo.family_starts([link.family_id for link in links])
    return [(link, starts.get(link.family_id, link.issued_at)) for link in links]


async def list_organization_sessions(
    session: AsyncSession, organization_id: uuid.UUID, *, limit: int = 200
) -> list[tuple[RefreshToken, datetime]]:
    """Active sessions of everyone in the organization, last used first, with start times."""
    repo = SessionRepository(session)
    links = await repo.active_links_of_organization(organization_id, now=utc_now(), limit=limit)
    starts = await repo.family_starts([link.family_id for link in links])
    return [(link, starts.get(link.family_id, link.issued_at)) for link in links]


async def list_attempts(
    session: AsyncSession,
    *,
    email: str | None = None,
    success: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[LoginAttempt]:
    """The sign-in attempt log, newest first; `since` inclusive, `until` exclusive."""
    return await LoginAttemptRepository(session).list(
        email=email, success=success, since=since, until=until, before=before, limit=limit
    )
