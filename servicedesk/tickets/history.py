"""A ticket's change history: its own audit entries and those of its comments and files."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.audit import service as audit
from servicedesk.core.errors import Forbidden
from servicedesk.models import AuditLog, Ticket
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import AttachmentRepository, CommentRepository


async def ticket_history(session: AsyncSession, viewer: Viewer, ticket: Ticket) -> list[AuditLog]:
    """Staff only: the history names internal notes and their authors."""
    if not viewer.is_staff:
        raise Forbidden("The change history is for staff.", code="insufficient_role")
    comment_ids = await CommentRepository(session).all_ids(ticket.id)
    attachment_ids = await AttachmentRepository(session).all_ids(ticket.id)
    return await audit.history(
        session,
        records=[("tickets", str(ticket.id))]
        + [("comments", str(i)) for i in comment_ids]
        + [("attachments", str(i)) for i in attachment_ids],
    )
