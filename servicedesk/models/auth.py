"""Sessions (refresh tokens), recovery codes and the login attempt log."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.core.clock import utc_now
from servicedesk.models.base import Base, IdMixin, TenantMixin


class RefreshToken(IdMixin, TenantMixin, Base):
    """One link of a refresh-token chain; a chain (family) is one signed-in session."""

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the opaque token; the token itself is never stored."""
    issued_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]
    """Set when this token was exchanged for its successor; presenting it again is theft."""
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class RecoveryCode(IdMixin, TenantMixin, Base):
    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())


class LoginAttempt(IdMixin, TenantMixin, Base):
    """Every sign-in attempt, successful or not, for security review."""

    __tablename__ = "login_attempts"

    email: Mapped[str] = mapped_column(String(254), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    success: Mapped[bool]
    reason: Mapped[str] = mapped_column(String(40))
    """`ok`, `unknown_email`, `bad_password`, `locked`, `not_approved`, `bad_2fa_code`, …"""
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())


class PasswordResetToken(IdMixin, TenantMixin, Base):
    """A "forgot password" link: single use, short-lived, stored as a hash only."""

    __tablename__ = "password_reset_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the token in the emailed link; the token itself is never stored."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    """Set when the link was used, or when a newer link or a password change replaced it."""
    ip: Mapped[str | None] = mapped_column(String(64))
    """Where the reset was requested from (for the user's and admins' review)."""
