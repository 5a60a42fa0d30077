"""Which event handlers have committed their effects: the key of exactly-once effects."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, func
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.core.clock import utc_now
from servicedesk.models.base import Base, TenantMixin


class HandledEvent(TenantMixin, Base):
    """One (event, handler) whose effects committed; written in the same transaction.

    A redelivered event finds its row and skips the handler body (`core.jobs.already_handled`).
    The job queue's own tables live in the `procrastinate` schema (migration 0004), not here.
    """

    __tablename__ = "handled_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    handler: Mapped[str] = mapped_column(String(128), primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=func.now(), index=True
    )
