"""The live path's queries: committed outbox events and the audience fields of a ticket."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.live.policy import TicketFacts
from servicedesk.models import OutboxEvent, Ticket


async def events_by_seq(session: AsyncSession, seqs: Sequence[int]) -> list[OutboxEvent]:
    """Events of any organization by `seq` (system session), in `seq` order."""
    if not seqs:
        return []
    query = select(OutboxEvent).where(OutboxEvent.seq.in_(seqs)).order_by(OutboxEvent.seq)
    return list((await session.execute(query)).scalars())


async def events_after(
    session: AsyncSession, after_seq: int, *, limit: int, organization_id: uuid.UUID | None = None
) -> list[OutboxEvent]:
    """Events with `seq > after_seq`, oldest first; of one organization when given."""
    query = select(OutboxEvent).where(OutboxEvent.seq > after_seq)
    if organization_id is not None:
        query = query.where(OutboxEvent.organization_id == organization_id)
    query = query.order_by(OutboxEvent.seq).limit(limit)
    return list((await session.execute(query)).scalars())


async def last_seq(session: AsyncSession) -> int:
    return int(
        (await session.execute(select(func.coalesce(func.max(OutboxEvent.seq), 0)))).scalar_one()
    )


async def ticket_facts(session: AsyncSession, ticket_id: uuid.UUID) -> TicketFacts | None:
    """Requester, assignee and department of a ticket of the bound organization."""
    row = (
        await session.execute(
            select(Ticket.requester_id, Ticket.assignee_id, Ticket.department_id).where(
                Ticket.id == ticket_id
            )
        )
    ).first()
    if row is None:
        return None
    return TicketFacts(row.requester_id, row.assignee_id, row.department_id)
