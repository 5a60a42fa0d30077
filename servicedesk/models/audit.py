"""The audit log: every state change, who made it and from where."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.core.clock import utc_now
from servicedesk.models.base import Base, IdMixin


class AuditLog(IdMixin, Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_org_created", "organization_id", "created_at"),
        Index("ix_audit_log_org_record", "organization_id", "table_name", "record_id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    """The organization the change belongs to (RLS key)."""
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    """The user who acted; null for the system, the CLI and anonymous self-registration."""
    actor_type: Mapped[str] = mapped_column(String(20))
    """`user`, `system`, `anonymous` or `api_token`."""
    action: Mapped[str] = mapped_column(String(60))
    """Dotted verb, e.g. `user.approved`, `session.revoked`, `organization.created`."""
    table_name: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[str | None] = mapped_column(String(64))
    old_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The changed fields before the change (never secrets)."""
    new_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The changed fields after the change (never secrets)."""
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=func.now(), index=True
    )
