"""API shapes of the job system's admin routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

JobKind = Literal["event", "job", "periodic"]


class JobRead(BaseModel):
    id: int
    handler: str
    """The handler's (or job's) registered name."""
    queue: str
    kind: JobKind
    status: str
    """todo, doing, succeeded, failed, cancelled or aborted."""
    organization_id: uuid.UUID | None
    event_id: uuid.UUID | None
    event_type: str | None
    attempts: int
    """Runs so far."""
    error: str | None
    """The last error: exception type and message."""
    failed_at: datetime | None
    """When the last attempt failed."""
    traceback: str | None = None
    """Only for the platform operator."""


class QueueStats(BaseModel):
    queue: str
    status: str
    count: int


class JobStats(BaseModel):
    outbox_pending: int
    """Committed events not handed to the queue yet."""
    outbox_oldest_pending: datetime | None
    jobs: list[QueueStats]
