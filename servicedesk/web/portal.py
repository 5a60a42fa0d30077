"""The requester portal: my tickets, filing a ticket in a category with its own fields and
attachments, and a ticket's page with the public conversation, replies, files, reopen/close.

Routes call the ticket services exactly as the API does (`tickets.service`, `comments`,
`attachments`, `categories`); visibility is theirs (`access_ticket_by_number` answers 404 for a
ticket that is not the requester's). The portal shows the public side of a ticket only, to
everyone: internal notes and internal files never reach these pages.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.errors import AppError, BadRequest, NotFound
from servicedesk.core.pagination import decode_cursor, encode_cursor
from servicedesk.core.runtime import get_runtime
from servicedesk.models import Channel, Comment, Priority, Ticket
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import attachments, categories, comments, workflow
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import TicketFilters
from servicedesk.tickets.schemas import CategoryRead, CommentCreate, StatusChange, TicketCreate
from servicedesk.web import ticket_fields
from servicedesk.web.conversation import conversation
from servicedesk.web.forms import (
    FORM_ERROR,
    FieldErrors,
    UserForm,
    app_errors,
    inspect_files,
    parse,
    upload_rules,
)
from servicedesk.web.live_pages import parse_after
from servicedesk.web.session import PageUser, is_htmx, redirect
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 20
_NUMBER = re.compile(r"^TKT[0-9]{10,14}$", re.IGNORECASE)
TABS: dict[str, tuple[str, list[str]]] = {
    "open": ("Open", sorted(workflow.ACTIVE)),
    "resolved": ("Resolved", ["resolved"]),
    "closed": ("Closed", ["closed", "rejected"]),
    "all": ("All", []),
}
NOTICES = {
    "created": "Your ticket has been filed. We will reply here, and let you know by email.",
    "replied": "Your reply has been added.",
    "closed": "The ticket is closed.",
    "open": "The ticket has been reopened.",
}
# My tickets ----------------------------------------------------------------------------------


@router.get("/tickets")
async def my_tickets(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    show: Annotated[str, Query(pattern="^(open|resolved|closed|all)$")] = "open",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    viewer = Viewer.of(user, tenant)
    after = None
    if cursor:
        decoded = decode_cursor(cursor, str, datetime, uuid.UUID)
        if decoded[0] != show:
            raise BadRequest("The page link is not valid.", code="invalid_cursor")
        after = decoded[1:]
    # The portal lists the user's own requests, whatever their role.
    filters = TicketFilters(statuses=TABS[show][1], requester_id=user.id)
    rows = await tickets.list_tickets(
        session, viewer, filters, sort="updated", descending=True, after=after, limit=PAGE_SIZE + 1
    )
    next_cursor = None
    if len(rows) > PAGE_SIZE:
        last = rows[PAGE_SIZE - 1]
        next_cursor = encode_cursor(show, last.updated_at, last.id)
        rows = rows[:PAGE_SIZE]
    by_id = {c.id: c for c in await categories.list_categories(session, include_inactive=True)}
    return render(
        request,
        "portal/tickets.html",
        {
            "tickets": rows,
            "show": show,
            "tabs": [(key, label) for key, (label, _) in TABS.items()],
            "next_cursor": next_cursor,
            "paged": cursor is not None,
            "category_label": lambda t: ticket_fields.category_label(
                by_id, t.category_id, t.subcategory_id
            ),
        },
    )


# New ticket ----------------------------------------------------------------------------------


async def _new_ticket_page(
    request: Request,
    session: AsyncSession,
    *,
    choice: str | None,
    values: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
    partial: str | None = None,
    status_code: int = 200,
) -> Response:
    cats = await categories.list_categories(session, include_inactive=False)
    resolved = ticket_fields.resolve_choice(choice, cats)
    defs = ticket_fields.definitions(*resolved) if resolved else []
    return render(
        request,
        partial or "portal/new_ticket.html",
        {
            "options": ticket_fields.category_options(cats),
            "choice": choice if resolved else "",
            "chosen": resolved,
            "defs": defs,
            "values": values or {"subject": "", "description": "", "priority": ""},
            "custom": custom or {},
            "errors": errors or {},
            "priorities": [(p.value, p.value.capitalize()) for p in Priority],
            "cost_rows": ticket_fields.COST_ITEM_ROWS,
            **upload_rules(request),
        },
        status_code=status_code,
    )


@router.get("/tickets/new")
async def new_ticket(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    category: Annotated[str | None, Query(max_length=80)] = None,
) -> Response:
    return await _new_ticket_page(request, session, choice=category)


@router.get("/tickets/new/fields")
async def new_ticket_fields(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    category: Annotated[str | None, Query(max_length=80)] = None,
) -> Response:
    """The chosen category's own fields (htmx swaps them into the form)."""
    return await _new_ticket_page(
        request, session, choice=category, partial="portal/_category_fields.html"
    )


@router.post("/tickets/new")
async def file_ticket(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    runtime = get_runtime(request)
    viewer = Viewer.of(user, tenant)
    choice = form.get("category")
    values = form.values("subject", "description", "priority")
    cats = await categories.list_categories(session, include_inactive=False)
    resolved = ticket_fields.resolve_choice(choice, cats)
    errors: FieldErrors = {}
    custom_values: dict[str, Any] = {}
    custom_raw: dict[str, Any] = {}
    if resolved is None:
        errors["category"] = "Choose what your request is about."
    else:
        custom_values, custom_raw = ticket_fields.read_values(
            ticket_fields.definitions(*resolved), form
        )
    category, sub = resolved if resolved else (None, None)
    data, parse_errors = parse(
        TicketCreate,
        {
            "subject": values["subject"],
            "description": values["description"],
            "category_id": category.id if category else uuid.UUID(int=0),
            "subcategory_id": sub.id if sub else None,
            "priority": values["priority"] or None,
            "channel": Channel.WEB,
            "custom_fields": custom_values,
        },
    )
    errors = {**parse_errors, **errors}
    files = await inspect_files(request, form, errors)
    if data is not None and not errors:
        try:
            async with session.begin_nested():
                ticket = await tickets.create_ticket(session, viewer, tenant, data)
                for upload, inspected in files:
                    await attachments.add_attachment(
                        session, viewer, tenant, runtime.storage, ticket.id, upload, inspected
                    )
        except AppError as exc:
            if exc.status >= 500:
                raise
            errors = app_errors(exc, rename={"subcategory_id": "category", "file": "files"})
        else:
            return redirect(request, f"/tickets/{ticket.number}?notice=created")
    errors.setdefault(FORM_ERROR, "Please correct the highlighted fields.")
    return await _new_ticket_page(
        request,
        session,
        choice=choice,
        values=values,
        custom=custom_raw,
        errors=errors,
        partial="portal/_new_ticket_form.html" if is_htmx(request) else None,
        status_code=422,
    )


# A ticket ------------------------------------------------------------------------------------


async def _ticket(
    session: AsyncSession, viewer: Viewer, number: str, *, for_update: bool = False
) -> Ticket:
    if not _NUMBER.match(number):
        raise NotFound("Ticket not found.")
    ticket = await tickets.access_ticket_by_number(session, viewer, number.upper())
    if for_update:
        ticket = await tickets.access_ticket(session, viewer, ticket.id, for_update=True)
    return ticket


async def _conversation(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket: Ticket,
) -> dict[str, Any]:
    """The public comments with their authors and files, and the ticket's own files."""
    public = await conversation(request, session, viewer, tenant, ticket, public_only=True)
    last = public["comments"][-1].created_at if public["comments"] else ticket.submitted_at
    # Where the next poll starts: the last reply, or the ticket itself when none yet.
    return {**public, "after": last.isoformat()}


def _ticket_context(
    ticket: Ticket, viewer: Viewer, tenant: Tenant, cats: list[CategoryRead]
) -> dict[str, Any]:
    by_id = {c.id: c for c in cats}
    category = by_id.get(ticket.category_id)
    sub = by_id.get(ticket.subcategory_id) if ticket.subcategory_id else None
    defs = ticket_fields.definitions(category, sub) if category else []
    read = tickets.to_read(ticket, viewer, tenant)
    return {
        "ticket": ticket,
        "category_name": ticket_fields.category_label(
            by_id, ticket.category_id, sub.id if sub else None
        ),
        "fields": ticket_fields.shown_values(defs, ticket.custom_fields),
        "can_reopen": "open" in read.allowed_transitions,
        "can_close": "closed" in read.allowed_transitions,
        "can_reply": ticket.status not in workflow.FINAL,
    }


async def _ticket_page(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket: Ticket,
    *,
    notice: str | None = None,
    reply: dict[str, str] | None = None,
    errors: FieldErrors | None = None,
    status_errors: str | None = None,
    status_code: int = 200,
) -> Response:
    cats = await categories.list_categories(session, include_inactive=True)
    return render(
        request,
        "portal/ticket.html",
        {
            **_ticket_context(ticket, viewer, tenant, cats),
            **await _conversation(request, session, viewer, tenant, ticket),
            "notice": NOTICES.get(notice or ""),
            "reply": reply or {"body": ""},
            "errors": errors or {},
            "status_error": status_errors,
            **upload_rules(request),
        },
        status_code=status_code,
    )


@router.get("/tickets/{number}")
async def ticket_page(
    request: Request,
    number: str,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    viewer = Viewer.of(user, tenant)
    ticket = await _ticket(session, viewer, number)
    return await _ticket_page(request, session, viewer, tenant, ticket, notice=notice)


def _form_after(value: str | None) -> datetime | None:
    """The reply form's hidden `after`: like the fragments' cursor, but a bad one means none."""
    try:
        return parse_after(value)
    except BadRequest:
        return None


async def _updates(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket: Ticket,
    *,
    after: datetime | None,
    own: uuid.UUID | None = None,
) -> dict[str, Any]:
    """What changed since `after`: the comments to append, for the htmx out-of-band swaps."""
    conversation = await _conversation(request, session, viewer, tenant, ticket)
    new = [
        c
        for c in conversation["comments"]
        if (after is not None and c.created_at > after) or c.id == own
    ]
    others = [c for c in new if c.author_id != viewer.user.id]
    announce = ""
    if others:
        names = {conversation["authors"][c.author_id].full_name for c in others}
        announce = f"New reply from {', '.join(sorted(names))}."
    return {**conversation, "new_comments": new, "announce": announce}


@router.get("/tickets/{number}/updates")
async def ticket_updates(
    request: Request,
    number: str,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    after: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Polled by the ticket page, and fetched at once on a live event: new public comments and
    the status, as out-of-band swaps; 204 when nothing changed. A malformed `after` is a 400."""
    since = parse_after(after)
    viewer = Viewer.of(user, tenant)
    ticket = await _ticket(session, viewer, number)
    updates = await _updates(request, session, viewer, tenant, ticket, after=since)
    if not updates["new_comments"] and status == ticket.status:
        return Response(status_code=204)
    cats = await categories.list_categories(session, include_inactive=True)
    return render(
        request,
        "portal/_updates.html",
        {**_ticket_context(ticket, viewer, tenant, cats), **updates, "form": None},
    )


@router.post("/tickets/{number}/reply")
async def reply(
    request: Request,
    number: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    runtime = get_runtime(request)
    viewer = Viewer.of(user, tenant)
    ticket = await _ticket(session, viewer, number)
    body = form.get("body")
    errors: FieldErrors = {}
    if not body.strip():
        errors["body"] = "Write your reply."
    elif len(body) > 50_000:
        errors["body"] = "Replies can be at most 50,000 characters."
    files = await inspect_files(request, form, errors)
    comment: Comment | None = None
    if not errors:
        try:
            async with session.begin_nested():
                comment = await comments.add_comment(
                    session, viewer, tenant, ticket.id, CommentCreate(body=body)
                )
                for upload, inspected in files:
                    await attachments.add_attachment(
                        session,
                        viewer,
                        tenant,
                        runtime.storage,
                        ticket.id,
                        upload,
                        inspected,
                        comment_id=comment.id,
                    )
        except AppError as exc:
            if exc.status >= 500:
                raise
            comment = None
            errors = app_errors(exc, rename={"file": "files"})
    if comment is not None and not is_htmx(request):
        return redirect(request, f"/tickets/{ticket.number}?notice=replied#comment-{comment.id}")
    if errors:
        errors.setdefault(FORM_ERROR, "Your reply was not sent; see below.")
    if not is_htmx(request):
        return await _ticket_page(
            request,
            session,
            viewer,
            tenant,
            ticket,
            reply={"body": body},
            errors=errors,
            status_code=422,
        )
    # htmx: the form comes back (empty, or with the errors); new comments are appended.
    cats = await categories.list_categories(session, include_inactive=True)
    updates = await _updates(
        request,
        session,
        viewer,
        tenant,
        ticket,
        after=_form_after(form.get("after")),
        own=comment.id if comment else None,
    )
    if comment is not None:
        updates["announce"] = (updates["announce"] + " Your reply has been added.").strip()
    return render(
        request,
        "portal/_reply_result.html",
        {
            **_ticket_context(ticket, viewer, tenant, cats),
            **updates,
            "reply": {"body": "" if comment else body},
            "errors": errors,
            "sent": comment is not None,
            **upload_rules(request),
        },
        status_code=422 if errors else 200,
    )


@router.post("/tickets/{number}/status")
async def change_status(
    request: Request,
    number: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    viewer = Viewer.of(user, tenant)
    ticket = await _ticket(session, viewer, number)
    target = form.get("status")
    version = form.get("version")
    if target not in ("open", "closed") or not version.isdigit():
        raise BadRequest("Choose to reopen or close the ticket.", code="invalid_status_form")
    try:
        async with session.begin_nested():
            await tickets.change_status(
                session,
                viewer,
                tenant,
                ticket.id,
                StatusChange.model_validate({"status": target, "version": int(version)}),
                version=None,
            )
    except tickets.TicketVersionConflict:
        message = "The ticket changed while you were looking at it. Review it and try again."
    except AppError as exc:
        if exc.status >= 500:
            raise
        message = exc.detail
    else:
        return redirect(request, f"/tickets/{ticket.number}?notice={target}")
    await session.refresh(ticket)
    return await _ticket_page(
        request, session, viewer, tenant, ticket, status_errors=message, status_code=409
    )
