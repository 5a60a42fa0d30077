"""Hot ticket reads: `GET /tickets/{id}` and `GET /tickets/by-number/{number}` through a cache.

The cache (`tickets`, L1) holds the viewer-independent `TicketRead` of a ticket per organization
and id or number, tagged `ticket:{id}`. Who may see it is decided on every answer, hit or miss,
by `Viewer.can_see` on the cached row: the rule `Viewer.ticket_filter` applies in SQL. The
per-viewer fields (`allowed_transitions`) are computed on every answer too.

Any committed write of the ticket, one of its comments or one of its files drops both entries in
this process before the response goes out (`cache.tag_model`), so the writer's next read, and its
ETag, are never older than its write; other processes drop them when the broadcast or the
`ticket.*`/`comment.*`/`attachment.*` event arrives. A transaction that changed tickets itself
reads the database and stores nothing (`cache.writes_pending`). The tags of those writes are
declared in `tickets.service`, which every writer of tickets imports.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core import cache
from servicedesk.core.db import tenant_of
from servicedesk.core.errors import NotFound
from servicedesk.models import Ticket
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.schemas import TicketRead
from servicedesk.tickets.service import for_viewer, stored_read, ticket_tag

ticket_cache: cache.TTLCache[TicketRead] = cache.TTLCache("tickets", ttl_seconds=60.0)

# Built once: constructing the statement (and its cache key) was a noticeable part of a GET.
_BY = {
    "id": select(Ticket).where(Ticket.id == bindparam("value")),
    "number": select(Ticket).where(Ticket.number == bindparam("value")),
}


async def _stored(session: AsyncSession, *, by: str, value: uuid.UUID | str) -> TicketRead | None:
    """The ticket of the bound organization (RLS) by id or number, whoever asks."""

    async def load() -> TicketRead | None:
        found = await session.execute(_BY[by], {"value": value})
        ticket = found.scalar_one_or_none()
        return None if ticket is None else stored_read(ticket)

    organization_id = tenant_of(session)
    if organization_id is None or cache.writes_pending(session):
        return await load()
    key = f"{organization_id}:{by}:{value}"
    found = ticket_cache.get(key)
    if found is not None:
        return found
    generation = cache.generation()
    read = await load()
    if read is not None:
        # The tag is known only once the row is read (a lookup by number), so the entry is
        # stored here rather than by `get_or_load`, with the same guard against a change
        # committed during the read.
        ticket_cache.set_unless_invalidated(
            key, read, since=generation, tags=(ticket_tag(read.id),)
        )
    return read


async def read_ticket(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, ticket_id: uuid.UUID
) -> TicketRead:
    """The ticket as `viewer` may see it, or 404 (missing and not visible alike)."""
    stored = await _stored(session, by="id", value=ticket_id)
    return _visible(stored, viewer, tenant)


async def read_ticket_by_number(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, number: str
) -> TicketRead:
    stored = await _stored(session, by="number", value=number.upper())
    return _visible(stored, viewer, tenant)


def _visible(stored: TicketRead | None, viewer: Viewer, tenant: Tenant) -> TicketRead:
    if stored is None or not viewer.can_see(stored):
        raise NotFound("Ticket not found.")
    return for_viewer(stored, viewer, tenant)
