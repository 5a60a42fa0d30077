"""A ticket's conversation as a page shows it: comments, their authors, files and their
download links. Shared by the agent workspace (replies and internal notes) and the portal
(public replies only)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.core.runtime import get_runtime
from servicedesk.models import Attachment, Ticket
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import attachments, comments
from servicedesk.tickets.auth import Viewer


async def conversation(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket: Ticket,
    *,
    public_only: bool,
) -> dict[str, Any]:
    """`comments`, `authors`, `files`, `files_by_comment` (None: the ticket's own) and
    `links` (signed, expiring download links for this viewer). `public_only` leaves internal
    notes and their files out whoever is looking (the portal shows the requester's view)."""
    runtime = get_runtime(request)
    thread = await comments.list_comments(session, viewer, ticket)
    files = await attachments.list_attachments(session, viewer, ticket.id)
    if public_only:
        thread = [c for c in thread if not c.is_internal]
        files = [a for a in files if not a.is_internal]
    authors = {u.id: u for u in await accounts.get_users(session, [c.author_id for c in thread])}
    links = {a.id: attachments.link_for(runtime, tenant, viewer.user.id, a.id)[0] for a in files}
    by_comment: dict[uuid.UUID | None, list[Attachment]] = {}
    for a in files:
        by_comment.setdefault(a.comment_id, []).append(a)
    return {
        "comments": thread,
        "authors": authors,
        "files": files,
        "files_by_comment": by_comment,
        "links": links,
    }
