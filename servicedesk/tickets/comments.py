"""Comments: public replies and internal notes, edits with history, soft deletes, @mentions.

Internal notes exist only for staff: every read path filters them for requesters through
`Viewer.sees_internal`, and a requester can never write one.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.audit import service as audit
from servicedesk.core import events
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import Forbidden, NotFound, Unprocessable
from servicedesk.core.text import render_markdown, strip_control
from servicedesk.models import Comment, CommentRevision, Role, Ticket, TicketStatus
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import CommentRepository
from servicedesk.tickets.schemas import CommentCreate, CommentUpdate

MENTION = re.compile(r"(?<![\w.@])@([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")
DEFAULT_EDIT_WINDOW_MINUTES = 15


def edit_window(tenant: Tenant) -> timedelta:
    return timedelta(
        minutes=int(tenant.settings.get("comment_edit_window_minutes", DEFAULT_EDIT_WINDOW_MINUTES))
    )


async def _mentions(session: AsyncSession, body: str) -> list[uuid.UUID]:
    emails = [m.group(1).rstrip(".") for m in MENTION.finditer(body)]
    staff = await accounts.find_staff_by_emails(session, emails[:50])
    return [u.id for u in staff]


async def list_comments(session: AsyncSession, viewer: Viewer, ticket: Ticket) -> list[Comment]:
    return await CommentRepository(session).list(ticket.id, include_internal=viewer.sees_internal)


async def get_comment(
    session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID, comment_id: uuid.UUID
) -> Comment:
    """A live comment the viewer may read (internal notes only for staff), or 404."""
    ticket = await tickets.access_ticket(session, viewer, ticket_id)
    comment = await CommentRepository(session).get(ticket.id, comment_id)
    if comment is None or (comment.is_internal and not viewer.sees_internal):
        raise NotFound("Comment not found.")
    return comment


async def get_live_comment(
    session: AsyncSession, ticket_id: uuid.UUID, comment_id: uuid.UUID
) -> Comment | None:
    """A comment that was not deleted, without a reader: the caller applies `get_comment`'s
    rules to each reader itself (`Viewer.can_see`, internal notes only for staff)."""
    return await CommentRepository(session).get(ticket_id, comment_id)


async def add_comment(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, ticket_id: uuid.UUID, data: CommentCreate
) -> Comment:
    ticket = await tickets.access_ticket(session, viewer, ticket_id, for_update=True)
    user = viewer.user
    if not viewer.can_work and user.role != Role.REQUESTER:
        raise Forbidden("Managers can read tickets but not reply.", code="read_only")
    if data.is_internal and not viewer.can_work:
        raise Unprocessable(
            "Only agents can write internal notes.",
            code="field_not_allowed",
            errors=[{"loc": ["body", "is_internal"], "msg": "not allowed", "type": "x"}],
        )
    if not data.is_internal and ticket.status in (TicketStatus.CLOSED, TicketStatus.REJECTED):
        raise Unprocessable(
            f"The ticket is {ticket.status}; open a new ticket instead.",
            code="ticket_closed",
        )
    body = strip_control(data.body)
    if not body.strip():
        raise Unprocessable(
            "The comment is empty.",
            code="validation_error",
            errors=[{"loc": ["body", "body"], "msg": "empty", "type": "x"}],
        )
    comment = Comment(
        organization_id=tenant.id,
        ticket_id=ticket.id,
        author_id=user.id,
        body=body,
        body_html=render_markdown(body),
        is_internal=data.is_internal,
        mentions=await _mentions(session, body) if viewer.can_work else [],
    )
    session.add(comment)
    await tickets.record_reply(session, ticket, by=Role(user.role), internal=data.is_internal)
    await session.flush()
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=tickets.actor_of(viewer),
        action="comment.created",
        table="comments",
        record_id=comment.id,
        new={
            "ticket_id": ticket.id,
            "is_internal": comment.is_internal,
            "mentions": comment.mentions,
        },
    )
    events.emit(
        session,
        organization_id=tenant.id,
        event_type="comment.created",
        actor=tickets.actor_of(viewer),
        payload={
            **tickets.ticket_ref(ticket),
            "comment_id": comment.id,
            "author_id": user.id,
            "author_role": user.role,
            "is_internal": comment.is_internal,
            "mentions": comment.mentions,
            "requester_id": ticket.requester_id,
            "assignee_id": ticket.assignee_id,
            "department_id": ticket.department_id,
        },
    )
    return comment


async def _own_comment(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    comment_id: uuid.UUID,
) -> tuple[Ticket, Comment]:
    ticket = await tickets.access_ticket(session, viewer, ticket_id)
    comment = await CommentRepository(session).get(ticket.id, comment_id, for_update=True)
    if comment is None or (comment.is_internal and not viewer.sees_internal):
        raise NotFound("Comment not found.")
    if comment.author_id != viewer.user.id:
        raise Forbidden("Only the author can change a comment.", code="not_author")
    if utc_now() - comment.created_at > edit_window(tenant):
        raise Unprocessable(
            "Comments can only be changed shortly after they were written.",
            code="edit_window_passed",
        )
    return ticket, comment


async def edit_comment(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    comment_id: uuid.UUID,
    data: CommentUpdate,
) -> Comment:
    _, comment = await _own_comment(session, viewer, tenant, ticket_id, comment_id)
    body = strip_control(data.body)
    if not body.strip():
        raise Unprocessable("The comment is empty.", code="validation_error")
    if body == comment.body:
        return comment
    session.add(
        CommentRevision(
            organization_id=tenant.id,
            comment_id=comment.id,
            body=comment.body,
            edited_by_id=viewer.user.id,
        )
    )
    old_body = comment.body
    comment.body = body
    comment.body_html = render_markdown(body)
    comment.edited_at = utc_now()
    if viewer.can_work:
        comment.mentions = await _mentions(session, body)
    await session.flush()
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=tickets.actor_of(viewer),
        action="comment.updated",
        table="comments",
        record_id=comment.id,
        old={"body": old_body},
        new={"body": body, "ticket_id": comment.ticket_id},
    )
    return comment


async def delete_comment(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    comment_id: uuid.UUID,
) -> None:
    """Soft delete by the author (within the edit window) or by an admin at any time."""
    if viewer.user.role == Role.ADMIN:
        ticket = await tickets.access_ticket(session, viewer, ticket_id)
        comment = await CommentRepository(session).get(ticket.id, comment_id, for_update=True)
        if comment is None:
            raise NotFound("Comment not found.")
    else:
        _, comment = await _own_comment(session, viewer, tenant, ticket_id, comment_id)
    comment.deleted_at = utc_now()
    comment.deleted_by_id = viewer.user.id
    await session.flush()
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=tickets.actor_of(viewer),
        action="comment.deleted",
        table="comments",
        record_id=comment.id,
        old={"body": comment.body, "is_internal": comment.is_internal},
        new={"deleted_at": comment.deleted_at, "ticket_id": comment.ticket_id},
    )


async def revisions(
    session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID, comment_id: uuid.UUID
) -> list[CommentRevision]:
    ticket = await tickets.access_ticket(session, viewer, ticket_id)
    comment = await CommentRepository(session).get(ticket.id, comment_id)
    if comment is None or (comment.is_internal and not viewer.sees_internal):
        raise NotFound("Comment not found.")
    return await CommentRepository(session).revisions(comment.id)
