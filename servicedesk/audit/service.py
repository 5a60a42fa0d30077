"""Writing and reading the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.audit.repository import AuditRepository
from servicedesk.core.actor import Actor
from servicedesk.core.context import current_request
from servicedesk.models import AuditLog

# Fields that must never reach the audit log, whatever table they come from.
SECRET_FIELDS = frozenset(
    {"password", "password_hash", "totp_secret_encrypted", "token_hash", "code_hash", "secret"}
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID | datetime):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value


def _scrub(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: _jsonable(v) for k, v in values.items() if k not in SECRET_FIELDS}


async def record(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    actor: Actor,
    action: str,
    table: str,
    record_id: uuid.UUID | str | None,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit entry to the caller's transaction (it commits or rolls back with it)."""
    ctx = current_request()
    entry = AuditLog(
        organization_id=organization_id,
        actor_id=actor.id if actor.type == "user" else None,
        actor_type=actor.type,
        action=action,
        table_name=table,
        record_id=str(record_id) if record_id is not None else None,
        old_values=_scrub(old),
        new_values=_scrub(new),
        ip=ctx.ip,
        user_agent=(ctx.user_agent or "")[:400] or None,
        request_id=ctx.request_id,
    )
    session.add(entry)
    return entry


def diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The old and new values of the keys that changed."""
    changed = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in changed}, {k: after[k] for k in changed}


async def list_entries(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
    table: str | None = None,
    record_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[AuditLog]:
    return await AuditRepository(session).list(
        actor_id=actor_id,
        action=action,
        table=table,
        record_id=record_id,
        since=since,
        until=until,
        before=before,
        limit=limit,
    )


async def history(session: AsyncSession, *, records: list[tuple[str, str]]) -> list[AuditLog]:
    """Every entry about the given (table, record id) pairs, oldest first."""
    return await AuditRepository(session).for_records(records)
