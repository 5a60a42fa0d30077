"""Domain events: written to the outbox inside the caller's transaction.

Nothing that must happen after a commit is done inline: a service calls `emit`, the event
row commits (or rolls back) with the change, and the job system delivers it afterwards, at
least once. Handlers are idempotent by `event_id`. The envelope is documented in
docs/events.md; bump `schema_version` of an event type when its payload changes shape.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.actor import Actor
from servicedesk.models import OutboxEvent

SCHEMA_VERSIONS: dict[str, int] = {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def emit(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    event_type: str,
    actor: Actor,
    payload: dict[str, Any],
) -> OutboxEvent:
    """Add an event to the caller's transaction; it exists only if the transaction commits."""
    event = OutboxEvent(
        id=uuid.uuid4(),
        organization_id=organization_id,
        event_type=event_type,
        schema_version=SCHEMA_VERSIONS.get(event_type, 1),
        actor_type=actor.type,
        actor_id=actor.id,
        payload=_jsonable(payload),
    )
    session.add(event)
    return event


def envelope(event: OutboxEvent) -> dict[str, Any]:
    """The event as handlers, webhooks and live clients receive it."""
    return {
        "event_id": str(event.id),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": event.occurred_at.isoformat(),
        "organization_id": str(event.organization_id),
        "actor": {"type": event.actor_type, "id": str(event.actor_id) if event.actor_id else None},
        "payload": event.payload,
    }
