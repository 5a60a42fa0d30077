"""HTTP routes of tickets, categories, comments and saved views."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from servicedesk.accounts.auth import AdminUser, CurrentUser
from servicedesk.audit.schemas import AuditEntryRead
from servicedesk.core import idempotency
from servicedesk.core.actor import Actor
from servicedesk.core.errors import BadRequest
from servicedesk.core.pagination import decode_cursor, encode_cursor
from servicedesk.models import Channel, Priority, Role, TicketStatus
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tickets import categories, comments, history, reads, service, views
from servicedesk.tickets.auth import CurrentViewer
from servicedesk.tickets.repository import HL_START, HL_STOP, TicketFilters
from servicedesk.tickets.schemas import (
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    CommentCreate,
    CommentRead,
    CommentUpdate,
    HistoryEntry,
    StatusChange,
    TicketCreate,
    TicketPage,
    TicketRead,
    TicketSummary,
    TicketUpdate,
)

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
categories_router = APIRouter(prefix="/api/v1/categories", tags=["categories"])
views_router = APIRouter(prefix="/api/v1/views", tags=["saved views"])

_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')


def version_from_if_match(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    match = _ETAG.match(if_match)
    if not match:
        raise BadRequest('If-Match must be an ETag such as "3".', code="invalid_if_match")
    return int(match.group(1))


def _with_etag(read: TicketRead, status_code: int = 200) -> Response:
    return _json(read, status_code=status_code, headers={"ETag": f'"{read.version}"'})


def _json(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The model as JSON by pydantic's serializer, as the route's `response_model` would have
    it, without FastAPI validating the model it just got once more (hot routes)."""
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


# Categories ------------------------------------------------------------------------------


@categories_router.get("", response_model=list[CategoryRead], summary="Categories and fields")
async def list_categories(
    user: CurrentUser, session: TenantSession, include_inactive: bool = False
) -> list[CategoryRead]:
    return await categories.list_categories(
        session, include_inactive=include_inactive and user.role == Role.ADMIN
    )


@categories_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=CategoryRead, summary="Add a category"
)
async def create_category(
    data: CategoryCreate, admin: AdminUser, tenant: CurrentTenant, session: TenantSession
) -> CategoryRead:
    category = await categories.create_category(
        session, data, organization_id=tenant.id, actor=Actor.user(admin.id)
    )
    return CategoryRead.model_validate(category)


@categories_router.get("/{category_id}", response_model=CategoryRead, summary="One category")
async def get_category(
    category_id: uuid.UUID, user: CurrentUser, session: TenantSession
) -> CategoryRead:
    return CategoryRead.model_validate(await categories.access_category(session, category_id))


@categories_router.patch(
    "/{category_id}", response_model=CategoryRead, summary="Change a category or its fields"
)
async def update_category(
    category_id: uuid.UUID, data: CategoryUpdate, admin: AdminUser, session: TenantSession
) -> CategoryRead:
    category = await categories.update_category(
        session, category_id, data, actor=Actor.user(admin.id)
    )
    return CategoryRead.model_validate(category)


# Tickets ---------------------------------------------------------------------------------


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketRead,
    summary="File a ticket (send Idempotency-Key to make retries safe)",
)
async def create_ticket(
    request: Request,
    data: TicketCreate,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    if idempotency_key is not None:
        replay = await idempotency.claim(
            session,
            organization_id=tenant.id,
            user_id=viewer.user.id,
            key=idempotency_key,
            fingerprint=idempotency.request_fingerprint(
                "POST", request.url.path, await request.body()
            ),
        )
        if replay is not None:
            return JSONResponse(
                replay.body,
                status_code=replay.status_code,
                headers={
                    "Idempotent-Replayed": "true",
                    "ETag": f'"{replay.body.get("version")}"',
                    "Location": f"/api/v1/tickets/{replay.body.get('id')}",
                },
            )
    ticket = await service.create_ticket(session, viewer, tenant, data)
    read = service.to_read(ticket, viewer, tenant)
    if idempotency_key is not None:
        await idempotency.remember(
            session,
            organization_id=tenant.id,
            user_id=viewer.user.id,
            key=idempotency_key,
            status_code=201,
            body=read.model_dump(mode="json"),
        )
    response = _with_etag(read, status.HTTP_201_CREATED)
    response.headers["Location"] = f"/api/v1/tickets/{ticket.id}"
    return response


def _headline(escaped: str) -> str:
    """A headline cut from HTML-escaped text (see the repository): escape the quotes too, keep
    any stray `<`/`>` out, then turn the match markers into <mark>."""
    safe = (
        escaped.replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )
    return safe.replace(HL_START, "<mark>").replace(HL_STOP, "</mark>")


_SORT_SHAPES: dict[str, tuple[type, ...]] = {
    "updated": (datetime, uuid.UUID),
    "submitted": (datetime, uuid.UUID),
    "priority": (int, datetime, uuid.UUID),
}


def _sort_key(ticket: Any, sort: str) -> tuple[Any, ...]:
    if sort == "priority":
        return (ticket.priority_rank, ticket.updated_at, ticket.id)
    if sort == "submitted":
        return (ticket.submitted_at, ticket.id)
    return (ticket.updated_at, ticket.id)


@router.get("", response_model=TicketPage, summary="List or search tickets (keyset pagination)")
async def list_tickets(
    viewer: CurrentViewer,
    session: TenantSession,
    status_: Annotated[list[TicketStatus] | None, Query(alias="status")] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    category_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    assignee: Annotated[
        str | None,
        Query(pattern=views.ASSIGNEE_PATTERN, description="user id, `me` or `none`"),
    ] = None,
    requester_id: uuid.UUID | None = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    channel: Channel | None = None,
    submitted_from: datetime | None = None,
    submitted_to: datetime | None = None,
    updated_from: datetime | None = None,
    updated_to: datetime | None = None,
    q: Annotated[str | None, Query(max_length=200, description="full-text search")] = None,
    view_id: Annotated[uuid.UUID | None, Query(description="apply a saved view")] = None,
    sort: Annotated[str | None, Query(pattern=r"^(updated|submitted|priority)$")] = None,
    order: Annotated[str | None, Query(pattern=r"^(asc|desc)$")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> Response:
    if view_id is not None:
        saved = views.ViewFilters.model_validate(
            (await views.get_view(session, viewer.user.id, view_id)).filters
        )
        status_ = status_ or saved.status
        priority = priority or saved.priority
        category_id = category_id or saved.category_id
        department_id = department_id or saved.department_id
        assignee = assignee or saved.assignee
        requester_id = requester_id or saved.requester_id
        tag = tag or saved.tag
        channel = channel or saved.channel
        q = q or saved.q
        sort = sort or saved.sort
        order = order or saved.order
    sort = sort or "updated"
    order = order or "desc"
    filters = TicketFilters(
        statuses=list(status_ or []),
        priorities=list(priority or []),
        category_id=category_id,
        department_id=department_id,
        assignee=assignee,
        requester_id=requester_id,
        tag=tag.strip().lower() if tag else None,
        channel=channel,
        submitted_from=submitted_from,
        submitted_to=submitted_to,
        updated_from=updated_from,
        updated_to=updated_to,
    )
    if q and q.strip():
        after, fuzzy = None, None
        if cursor:
            kind, mode, score, last_id = decode_cursor(cursor, str, str, float, uuid.UUID)
            if kind != "search" or mode not in service.SEARCH_MODES:
                raise BadRequest("The cursor belongs to another listing.", code="invalid_cursor")
            after, fuzzy = (score, last_id), mode == "fuzzy"
        found = await service.search_tickets(
            session, viewer, filters, q.strip(), after=after, fuzzy=fuzzy, limit=limit + 1
        )
        items = []
        for ticket, score, headline in found.rows[:limit]:
            summary = TicketSummary.model_validate(ticket)
            summary.rank, summary.headline = score, _headline(headline)
            items.append(summary)
        next_cursor = None
        if len(found.rows) > limit:
            last, score, _ = found.rows[limit - 1]
            next_cursor = encode_cursor("search", service.SEARCH_MODES[found.fuzzy], score, last.id)
        return _json(TicketPage(items=items, next_cursor=next_cursor))

    after_key = None
    if cursor:
        decoded = decode_cursor(cursor, str, str, *_SORT_SHAPES[sort])
        if decoded[:2] != (sort, order):
            raise BadRequest("The cursor belongs to another sort order.", code="invalid_cursor")
        after_key = decoded[2:]
    rows = await service.list_tickets(
        session,
        viewer,
        filters,
        sort=sort,
        descending=order == "desc",
        after=after_key,
        limit=limit + 1,
    )
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(sort, order, *_sort_key(rows[limit - 1], sort))
    return _json(
        TicketPage(
            items=[TicketSummary.model_validate(t) for t in rows[:limit]], next_cursor=next_cursor
        )
    )


@router.get("/by-number/{number}", response_model=TicketRead, summary="A ticket by its number")
async def get_ticket_by_number(
    number: str,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> Response:
    if len(number) > 20:
        raise BadRequest("Ticket numbers look like TKT2026000123.", code="invalid_number")
    return _with_etag(await reads.read_ticket_by_number(session, viewer, tenant, number))


@router.get("/{ticket_id}", response_model=TicketRead, summary="A ticket (ETag = its version)")
async def get_ticket(
    ticket_id: uuid.UUID, viewer: CurrentViewer, tenant: CurrentTenant, session: TenantSession
) -> Response:
    return _with_etag(await reads.read_ticket(session, viewer, tenant, ticket_id))


@router.patch(
    "/{ticket_id}",
    response_model=TicketRead,
    summary="Change a ticket's properties (If-Match or `version` required; stale → 409)",
)
async def update_ticket(
    ticket_id: uuid.UUID,
    data: TicketUpdate,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    ticket = await service.update_ticket(
        session, viewer, tenant, ticket_id, data, version=version_from_if_match(if_match)
    )
    return _with_etag(service.to_read(ticket, viewer, tenant))


@router.post(
    "/{ticket_id}/status",
    response_model=TicketRead,
    summary="Move a ticket through the workflow (illegal moves → 422 with the allowed ones)",
)
async def change_status(
    ticket_id: uuid.UUID,
    data: StatusChange,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    ticket = await service.change_status(
        session, viewer, tenant, ticket_id, data, version=version_from_if_match(if_match)
    )
    return _with_etag(service.to_read(ticket, viewer, tenant))


@router.get(
    "/{ticket_id}/history",
    response_model=list[HistoryEntry],
    summary="Who changed what on a ticket, and when (staff)",
)
async def ticket_history(
    ticket_id: uuid.UUID, viewer: CurrentViewer, session: TenantSession
) -> list[HistoryEntry]:
    ticket = await service.access_ticket(session, viewer, ticket_id)
    entries = await history.ticket_history(session, viewer, ticket)
    return [
        HistoryEntry.model_validate(AuditEntryRead.model_validate(e).model_dump()) for e in entries
    ]


# Comments --------------------------------------------------------------------------------


@router.get(
    "/{ticket_id}/comments",
    response_model=list[CommentRead],
    summary="The conversation (internal notes for staff only)",
)
async def list_comments(
    ticket_id: uuid.UUID, viewer: CurrentViewer, session: TenantSession
) -> list[CommentRead]:
    ticket = await service.access_ticket(session, viewer, ticket_id)
    return [
        CommentRead.model_validate(c) for c in await comments.list_comments(session, viewer, ticket)
    ]


@router.post(
    "/{ticket_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=CommentRead,
    summary="Reply, or add an internal note (agents)",
)
async def add_comment(
    ticket_id: uuid.UUID,
    data: CommentCreate,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> CommentRead:
    comment = await comments.add_comment(session, viewer, tenant, ticket_id, data)
    return CommentRead.model_validate(comment)


@router.patch(
    "/{ticket_id}/comments/{comment_id}",
    response_model=CommentRead,
    summary="Edit one's comment within the edit window (history kept)",
)
async def edit_comment(
    ticket_id: uuid.UUID,
    comment_id: uuid.UUID,
    data: CommentUpdate,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> CommentRead:
    comment = await comments.edit_comment(session, viewer, tenant, ticket_id, comment_id, data)
    return CommentRead.model_validate(comment)


@router.delete(
    "/{ticket_id}/comments/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a comment (soft; author within the window, or admin)",
)
async def delete_comment(
    ticket_id: uuid.UUID,
    comment_id: uuid.UUID,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> Response:
    await comments.delete_comment(session, viewer, tenant, ticket_id, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{ticket_id}/comments/{comment_id}/revisions",
    response_model=list[dict[str, Any]],
    summary="Earlier versions of an edited comment",
)
async def comment_revisions(
    ticket_id: uuid.UUID, comment_id: uuid.UUID, viewer: CurrentViewer, session: TenantSession
) -> list[dict[str, Any]]:
    rows = await comments.revisions(session, viewer, ticket_id, comment_id)
    return [
        {
            "body": r.body,
            "edited_by_id": str(r.edited_by_id),
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


# Saved views -----------------------------------------------------------------------------


@views_router.get("", response_model=list[views.SavedViewRead], summary="My saved views")
async def list_views(user: CurrentUser, session: TenantSession) -> list[views.SavedViewRead]:
    return [views.SavedViewRead.model_validate(v) for v in await views.list_views(session, user.id)]


@views_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=views.SavedViewRead,
    summary="Save a view",
)
async def create_view(
    data: views.SavedViewCreate, user: CurrentUser, tenant: CurrentTenant, session: TenantSession
) -> views.SavedViewRead:
    view = await views.create_view(session, organization_id=tenant.id, user_id=user.id, data=data)
    return views.SavedViewRead.model_validate(view)


@views_router.patch("/{view_id}", response_model=views.SavedViewRead, summary="Change a view")
async def update_view(
    view_id: uuid.UUID, data: views.SavedViewUpdate, user: CurrentUser, session: TenantSession
) -> views.SavedViewRead:
    return views.SavedViewRead.model_validate(
        await views.update_view(session, user.id, view_id, data)
    )


@views_router.delete("/{view_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a view")
async def delete_view(view_id: uuid.UUID, user: CurrentUser, session: TenantSession) -> Response:
    await views.delete_view(session, user.id, view_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
