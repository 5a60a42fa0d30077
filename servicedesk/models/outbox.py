"""The outbox: domain events written in the same transaction as the change they describe."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.core.clock import utc_now
from servicedesk.models.base import Base, TenantMixin


class OutboxEvent(TenantMixin, Base):
    """One domain event. `seq` orders events; `dispatched_at` is set once jobs were queued."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index(
            "ix_outbox_events_pending",
            "seq",
            postgresql_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    """The event id: handlers are idempotent by it."""
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    event_type: Mapped[str] = mapped_column(String(60))
    """Dotted name, e.g. `ticket.created`; docs/events.md lists them with their payloads."""
    schema_version: Mapped[int] = mapped_column(default=1, server_default="1")
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    dispatched_at: Mapped[datetime | None]
