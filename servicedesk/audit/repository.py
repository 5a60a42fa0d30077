"""Queries on the audit log (the tenant session's RLS scopes them to one organization)."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.models import AuditLog


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(
        self,
        *,
        actor_id: uuid.UUID | None,
        action: str | None,
        table: str | None,
        record_id: str | None,
        since: datetime | None,
        until: datetime | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[AuditLog]:
        query = select(AuditLog)
        if actor_id is not None:
            query = query.where(AuditLog.actor_id == actor_id)
        if action:
            # `user.` matches every user action; a full name matches exactly.
            if action.endswith("."):
                query = query.where(AuditLog.action.startswith(action, autoescape=True))
            else:
                query = query.where(AuditLog.action == action)
        if table:
            query = query.where(AuditLog.table_name == table)
        if record_id:
            query = query.where(AuditLog.record_id == record_id)
        if since:
            query = query.where(AuditLog.created_at >= since)
        if until:
            query = query.where(AuditLog.created_at < until)
        if before:
            query = query.where(tuple_(AuditLog.created_at, AuditLog.id) < tuple_(*before))
        query = query.order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def for_records(self, records: builtins.list[tuple[str, str]]) -> builtins.list[AuditLog]:
        if not records:
            return []
        query = (
            select(AuditLog)
            .where(tuple_(AuditLog.table_name, AuditLog.record_id).in_(records))
            .order_by(AuditLog.created_at, AuditLog.id)
        )
        return list((await self.session.execute(query)).scalars())
