"""TOTP two-factor authentication (RFC 6238) with single-use recovery codes."""

from __future__ import annotations

import hmac
import secrets
from typing import Literal

import pyotp
import segno
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts.repository import RecoveryCodeRepository
from servicedesk.audit import service as audit
from servicedesk.core.actor import Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import Conflict, Unauthorized, Unprocessable
from servicedesk.core.runtime import Runtime
from servicedesk.core.security import hash_token
from servicedesk.models import RecoveryCode, User

RECOVERY_CODE_COUNT = 10
ISSUER = "Servicedesk"
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i

CodeCheck = Literal["totp", "recovery", "replayed", "invalid"]


def _totp(runtime: Runtime, user: User) -> pyotp.TOTP:
    assert user.totp_secret_encrypted is not None
    return pyotp.TOTP(runtime.secrets.decrypt(user.totp_secret_encrypted))


def _normalise_recovery(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def matching_step(totp: pyotp.TOTP, code: str, *, window: int = 1) -> int | None:
    """The time step whose code equals `code`, within ±`window` steps of now, else None."""
    # ASCII only: str.isdigit() accepts e.g. Arabic-Indic digits, which compare_digest rejects.
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    now_step = totp.timecode(utc_now())
    for step in range(now_step - window, now_step + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


async def check_code(session: AsyncSession, runtime: Runtime, user: User, code: str) -> CodeCheck:
    """Accept a TOTP code once (no replay within its window) or an unused recovery code."""
    code = code.strip().replace(" ", "")
    step = matching_step(_totp(runtime, user), code)
    if step is not None:
        if user.totp_last_step is not None and step <= user.totp_last_step:
            return "replayed"
        user.totp_last_step = step
        return "totp"
    if len(code) == 6 and code.isdigit():
        return "invalid"
    found = await RecoveryCodeRepository(session).find_unused_for_update(
        user.id, hash_token(_normalise_recovery(code))
    )
    if found is None:
        return "invalid"
    found.used_at = utc_now()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action="user.2fa_recovery_code_used",
        table="recovery_codes",
        record_id=found.id,
    )
    return "recovery"


async def begin_enrolment(runtime: Runtime, user: User) -> tuple[str, str, str]:
    """Create a fresh (not yet active) secret; returns (secret, provisioning URI, QR as SVG)."""
    if user.totp_enabled:
        raise Conflict("Two-factor authentication is already on.", code="2fa_already_enabled")
    secret = pyotp.random_base32()
    user.totp_secret_encrypted = runtime.secrets.encrypt(secret)
    user.totp_last_step = None
    return pending_enrolment(runtime, user)


def pending_enrolment(runtime: Runtime, user: User) -> tuple[str, str, str]:
    """The secret, provisioning URI and QR code of an enrolment begun but not confirmed (to
    show them again after a wrong first code)."""
    if user.totp_enabled or user.totp_secret_encrypted is None:
        raise Unprocessable("Start the enrolment first.", code="2fa_not_started")
    secret = runtime.secrets.decrypt(user.totp_secret_encrypted)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    qr = segno.make(uri, error="m").svg_data_uri(scale=4)
    return secret, uri, qr


async def _new_recovery_codes(session: AsyncSession, user: User) -> list[str]:
    repo = RecoveryCodeRepository(session)
    await repo.delete_all(user.id)
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    for code in codes:
        session.add(
            RecoveryCode(
                organization_id=user.organization_id,
                user_id=user.id,
                code_hash=hash_token(_normalise_recovery(code)),
            )
        )
    await session.flush()
    return codes


async def confirm_enrolment(
    session: AsyncSession, runtime: Runtime, user: User, code: str
) -> list[str]:
    """Turn 2FA on with a first valid code; returns the recovery codes (shown once)."""
    if user.totp_enabled:
        raise Conflict("Two-factor authentication is already on.", code="2fa_already_enabled")
    if user.totp_secret_encrypted is None:
        raise Unprocessable("Start the enrolment first.", code="2fa_not_started")
    step = matching_step(_totp(runtime, user), code)
    if step is None:
        raise Unprocessable(
            "The code does not match; check the device's clock and try again.",
            code="invalid_code",
            errors=[
                {"loc": ["body", "code"], "msg": "code does not match", "type": "invalid_code"}
            ],
        )
    user.totp_enabled = True
    user.totp_last_step = step
    codes = await _new_recovery_codes(session, user)
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action="user.2fa_enabled",
        table="users",
        record_id=user.id,
        old={"totp_enabled": False},
        new={"totp_enabled": True},
    )
    return codes


async def _require_password_and_code(
    session: AsyncSession, runtime: Runtime, user: User, password: str, code: str
) -> None:
    if not user.totp_enabled:
        raise Unprocessable("Two-factor authentication is off.", code="2fa_not_enabled")
    if not await runtime.hasher.verify(user.password_hash, password):
        raise Unauthorized("The password is wrong.", code="invalid_credentials")
    result = await check_code(session, runtime, user, code)
    if result == "replayed":
        raise Unauthorized("This code was already used; wait for the next one.", code="code_reused")
    if result == "invalid":
        raise Unauthorized("The two-factor code is wrong.", code="invalid_code")


async def disable(
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    *,
    password: str,
    code: str,
    actor: Actor,
) -> None:
    await _require_password_and_code(session, runtime, user, password, code)
    user.totp_enabled = False
    user.totp_secret_encrypted = None
    user.totp_last_step = None
    await RecoveryCodeRepository(session).delete_all(user.id)
    await session.flush()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=actor,
        action="user.2fa_disabled",
        table="users",
        record_id=user.id,
        old={"totp_enabled": True},
        new={"totp_enabled": False},
    )


async def regenerate_recovery_codes(
    session: AsyncSession, runtime: Runtime, user: User, *, password: str, code: str
) -> list[str]:
    await _require_password_and_code(session, runtime, user, password, code)
    codes = await _new_recovery_codes(session, user)
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action="user.2fa_recovery_codes_regenerated",
        table="users",
        record_id=user.id,
    )
    return codes


async def remaining_recovery_codes(session: AsyncSession, user: User) -> int:
    return await RecoveryCodeRepository(session).count_unused(user.id)
