"""Users and departments of an organization."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.models.base import Base, IdMixin, TenantMixin, TimestampMixin


class Role(enum.StrEnum):
    REQUESTER = "requester"
    AGENT = "agent"
    ADMIN = "admin"
    MANAGER = "manager"


class UserStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class Department(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "departments"
    __table_args__ = (
        Index("uq_departments_org_name", "organization_id", func.lower(text("name")), unique=True),
    )

    name: Mapped[str] = mapped_column(String(120))
    head_email: Mapped[str | None] = mapped_column(String(254))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))


class User(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are unique per organization, compared case-insensitively.
        Index("uq_users_org_email", "organization_id", func.lower(text("email")), unique=True),
        Index(
            "uq_users_org_company_id",
            "organization_id",
            "company_id",
            unique=True,
            postgresql_where=text("company_id IS NOT NULL"),
        ),
        CheckConstraint("role IN ('requester', 'agent', 'admin', 'manager')", name="role_valid"),
        CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'suspended')", name="status_valid"
        ),
        CheckConstraint("company_id ~ '^MA[0-9]{4}$'", name="company_id_format"),
        CheckConstraint("failed_login_count >= 0", name="failed_login_count_nonneg"),
    )

    email: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    middle_name: Mapped[str | None] = mapped_column(String(100))
    suffix: Mapped[str | None] = mapped_column(String(20))
    company_id: Mapped[str | None] = mapped_column(String(6))
    """Employee number, `MA` + 4 digits, unique per organization."""
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), index=True
    )
    role: Mapped[str] = mapped_column(String(20), default=Role.REQUESTER)
    status: Mapped[str] = mapped_column(String(20), default=UserStatus.PENDING)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    """False once deactivated (soft delete): the row and its history stay."""
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_login_count: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    """Bumped to end every session at once; access tokens carry the value they were issued at."""
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(255))
    """TOTP seed, Fernet-encrypted with the server secret."""
    totp_enabled: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    totp_last_step: Mapped[int | None]
    """Time step of the last accepted code, so a code cannot be replayed within its window."""
    approved_at: Mapped[datetime | None]
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    @property
    def full_name(self) -> str:
        parts = [self.first_name, self.middle_name, self.last_name, self.suffix]
        return " ".join(p for p in parts if p)
