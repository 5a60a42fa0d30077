"""The fragments the pages' live client fetches when an event arrives (docs/ui.md, "Live").

Events on the WebSocket (`servicedesk/live/`) say *that* something changed, never the text;
the page then asks for the server-rendered piece here, through the same services and the same
visibility as the page itself (`access_ticket_by_number`: 404 for missing and not visible).
The requester's page uses `portal.ticket_updates`, which shows public comments only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from servicedesk.core.errors import BadRequest
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tickets import categories
from servicedesk.web.agent import (
    QueueParams,
    _panel_context,
    _staff,
    _ticket,
    queue_context,
    thread_context,
)
from servicedesk.web.session import PageUser
from servicedesk.web.templating import render

router = APIRouter(prefix="/agent", include_in_schema=False)

After = Annotated[str | None, Query(max_length=40)]


def parse_after(value: str | None) -> datetime | None:
    """The `after` cursor of a fragment: an ISO 8601 time with its zone, or nothing."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadRequest(
            "`after` must be an ISO 8601 time with a time zone, e.g. 2026-11-25T14:05:00Z.",
            code="invalid_cursor",
        )
    return parsed


@router.get("/rows")
async def queue_rows(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    asked: QueueParams,
) -> Response:
    """The first page of the queue with the same filters (bulk bar, rows or the empty state)."""
    context = await queue_context(request, session, _staff(user, tenant), asked, cursor=None)
    return render(request, "agent/_results.html", context)


@router.get("/tickets/{number}/comments")
async def new_comments(
    request: Request,
    number: str,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    after: After = None,
) -> Response:
    """Replies and internal notes created after `after` (all without it), as list items."""
    since = parse_after(after)
    viewer = _staff(user, tenant)
    ticket = await _ticket(session, viewer, number)
    conversation = await thread_context(request, session, viewer, tenant, ticket)
    conversation["comments"] = [
        c for c in conversation["comments"] if since is None or c.created_at > since
    ]
    return render(request, "agent/_comments.html", {"ticket": ticket, **conversation})


@router.get("/tickets/{number}/props")
async def properties(
    request: Request,
    number: str,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    """The current properties panel and the status and priority badges of the header."""
    viewer = _staff(user, tenant)
    ticket = await _ticket(session, viewer, number)
    cats = await categories.list_categories(session, include_inactive=True)
    ctx = await _panel_context(session, viewer, tenant, ticket, cats)
    return render(request, "agent/_props_live.html", ctx)
