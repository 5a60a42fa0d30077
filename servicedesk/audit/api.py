"""HTTP routes of the audit log (admins only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from servicedesk.accounts.auth import AdminUser
from servicedesk.audit import service
from servicedesk.audit.schemas import AuditEntryRead
from servicedesk.core.pagination import Page, decode_cursor, encode_cursor
from servicedesk.tenancy.deps import TenantSession

router = APIRouter(prefix="/api/v1/audit-log", tags=["audit"])


@router.get("", response_model=Page[AuditEntryRead], summary="Audit log, newest first")
async def list_audit_log(
    admin: AdminUser,
    session: TenantSession,
    actor_id: uuid.UUID | None = None,
    action: Annotated[
        str | None, Query(max_length=60, description="exact, or a prefix ending in '.'")
    ] = None,
    table: Annotated[str | None, Query(max_length=60)] = None,
    record_id: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[AuditEntryRead]:
    before = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
    rows = await service.list_entries(
        session,
        actor_id=actor_id,
        action=action,
        table=table,
        record_id=record_id,
        since=since,
        until=until,
        before=before,
        limit=limit + 1,
    )
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
    return Page(
        items=[AuditEntryRead.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor
    )
