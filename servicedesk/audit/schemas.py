"""API shapes of the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    actor_id: uuid.UUID | None
    actor_type: str
    action: str
    table_name: str
    record_id: str | None
    old_values: dict[str, Any] | None
    new_values: dict[str, Any] | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    created_at: datetime
