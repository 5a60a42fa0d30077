"""The agent workspace (`/agent`): queues, saved views, search, bulk actions, and a ticket with
its conversation, internal notes, properties (versioned inline edits), requester and history.

Agents and admins work here; managers read (no forms); requesters get the 403 page. Routes call
the ticket services as the API does; a stale property edit (the service's 409
`version_conflict`) re-renders the panel with the current values and a re-apply button.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from markupsafe import Markup, escape
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.core.errors import AppError, BadRequest, Forbidden, NotFound
from servicedesk.core.pagination import decode_cursor, encode_cursor
from servicedesk.core.runtime import get_runtime
from servicedesk.models import (
    Priority,
    Role,
    Ticket,
    TicketStatus,
    User,
)
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import attachments, bulk, categories, comments, history, views, workflow
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import HL_START, HL_STOP, TicketFilters
from servicedesk.tickets.schemas import CategoryRead, CommentCreate
from servicedesk.web import ticket_fields
from servicedesk.web.agent_history import history_rows
from servicedesk.web.conversation import conversation
from servicedesk.web.forms import (
    FORM_ERROR,
    FieldErrors,
    UserForm,
    app_errors,
    inspect_files,
    upload_rules,
)
from servicedesk.web.session import PageUser, is_htmx, redirect
from servicedesk.web.templating import PRIORITY_LABELS, STATUS_LABELS, render

router = APIRouter(prefix="/agent", include_in_schema=False)

PAGE_SIZE = 25
_NUMBER = re.compile(r"^TKT[0-9]{10,14}$", re.IGNORECASE)
ACTIVE = sorted(str(s) for s in workflow.ACTIVE)
TABS: dict[str, tuple[str, TicketFilters]] = {
    "mine": ("My open", TicketFilters(statuses=ACTIVE, assignee="me")),
    "unassigned": ("Unassigned", TicketFilters(statuses=ACTIVE, assignee="none")),
    "open": ("All open", TicketFilters(statuses=ACTIVE)),
}
SORTS = {"updated": "Last update", "submitted": "Submitted", "priority": "Priority"}
PROPERTIES = ("status", "priority", "category", "department", "assignee", "tags")
PROPERTY_LABELS = {
    "status": "status",
    "priority": "priority",
    "category": "category",
    "department": "department",
    "assignee": "assignee",
    "tags": "tags",
}
NOTICES = {
    "replied": "Your reply has been sent to the requester.",
    "noted": "Internal note added. Only staff can see it.",
    "assigned": "The ticket is assigned to you.",
    "rejected": "The ticket is rejected. The requester sees your reason on their ticket.",
}


def _staff(user: User, tenant: Tenant) -> Viewer:
    viewer = Viewer.of(user, tenant)
    if not viewer.is_staff:
        raise Forbidden("The agent workspace is for the support team.", code="insufficient_role")
    return viewer


def highlight(headline: str) -> Markup:
    """A search headline as markup: every piece of text escaped here (whatever the database
    sent), and only our own markers become <mark> elements."""
    out: list[str] = []
    open_mark = False
    for part in re.split(f"([{HL_START}{HL_STOP}])", headline):
        if part == HL_START:
            if not open_mark:
                out.append("<mark>")
                open_mark = True
        elif part == HL_STOP:
            if open_mark:
                out.append("</mark>")
                open_mark = False
        else:
            out.append(str(escape(html.unescape(part))))
    if open_mark:
        out.append("</mark>")
    # Every piece of text went through `escape`; the only tags are the <mark> pairs above.
    return Markup("".join(out))  # noqa: S704


# Queue ---------------------------------------------------------------------------------------


def _one_of(value: str | None, allowed: set[str]) -> str:
    return value if value in allowed else ""


def _single(values: list[str] | None) -> str | None:
    return values[0] if values and len(values) == 1 else None


async def _staff_users(session: AsyncSession) -> list[User]:
    people = await accounts.list_active_users(session, role=Role.AGENT)
    people += await accounts.list_active_users(session, role=Role.ADMIN)
    return sorted(people, key=lambda u: u.full_name.lower())


Tab = Annotated[str, Query(max_length=60)]
StatusQ = Annotated[str | None, Query(max_length=20)]
PriorityQ = Annotated[str | None, Query(max_length=20)]
CategoryQ = Annotated[str | None, Query(max_length=40)]
AssigneeQ = Annotated[str | None, Query(max_length=40)]
SortQ = Annotated[str, Query(pattern="^(updated|submitted|priority)$")]
SearchQ = Annotated[str | None, Query(max_length=200)]


@dataclass(frozen=True)
class QueueQuery:
    """What a queue page is asked for: the tab (a queue or `view-<id>`), filters, sort and
    search. FastAPI reads it from the query string (`QueueParams`)."""

    tab: Tab = "mine"
    status: StatusQ = None
    priority: PriorityQ = None
    category: CategoryQ = None
    assignee: AssigneeQ = None
    sort: SortQ = "updated"
    q: SearchQ = None


QueueParams = Annotated[QueueQuery, Depends()]


@router.get("")
async def queue(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    asked: QueueParams,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    notice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    context = await queue_context(request, session, _staff(user, tenant), asked, cursor=cursor)
    context["notice"] = queue_notice(notice, request.query_params)
    if cursor and is_htmx(request):
        return render(request, "agent/_rows.html", context)
    return render(request, "agent/queue.html", context)


async def queue_context(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    asked: QueueQuery,
    *,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of a queue tab or saved view with the filters, sort and search applied (also
    what the live client re-renders when tickets change: `live_pages.queue_rows`)."""
    tab, status, priority, category = asked.tab, asked.status, asked.priority, asked.category
    assignee, sort, q = asked.assignee, asked.sort, asked.q
    user = viewer.user
    saved = await views.list_views(session, user.id)
    view = next((v for v in saved if f"view-{v.id}" == tab), None)
    if view is None and tab not in TABS:
        tab = "mine"
    cats = await categories.list_categories(session, include_inactive=True)
    people = await _staff_users(session)
    base = TABS[tab][1] if view is None else TicketFilters()
    filters = TicketFilters(
        statuses=list(base.statuses), assignee=base.assignee, category_id=base.category_id
    )
    if view is not None:
        stored = view.filters
        filters.statuses = list(stored.get("status", []))
        filters.priorities = list(stored.get("priority", []))
        filters.assignee = stored.get("assignee")
        filters.tag = stored.get("tag")
        if stored.get("category_id"):
            filters.category_id = uuid.UUID(stored["category_id"])
        if stored.get("department_id"):
            filters.department_id = uuid.UUID(stored["department_id"])
        sort = stored.get("sort", sort) if "sort" not in request.query_params else sort
        q = q or stored.get("q")
        # The filter form shows the view's own values where it can hold them (one of each).
        status = status or _single(stored.get("status"))
        priority = priority or _single(stored.get("priority"))
        category = category or stored.get("category_id")
        assignee = assignee or stored.get("assignee")
    status = _one_of(status, set(STATUS_LABELS))
    priority = _one_of(priority, set(PRIORITY_LABELS))
    category = _one_of(category, {str(c.id) for c in cats})
    assignee = _one_of(assignee, {"me", "none"} | {str(u.id) for u in people})
    if status:
        filters.statuses = [status]
    if priority:
        filters.priorities = [priority]
    if category:
        filters.category_id = uuid.UUID(category)
    if assignee:
        filters.assignee = assignee
    query = (q or "").strip()
    headlines: dict[uuid.UUID, Markup] = {}
    next_cursor = None
    if query:
        after_s = decode_cursor(cursor, str, float, uuid.UUID) if cursor else None
        if after_s and after_s[0] not in tickets.SEARCH_MODES:
            raise BadRequest("The cursor is not valid.", code="invalid_cursor")
        results = await tickets.search_tickets(
            session,
            viewer,
            filters,
            query,
            after=(after_s[1], after_s[2]) if after_s else None,
            fuzzy=after_s[0] == "fuzzy" if after_s else None,
            limit=PAGE_SIZE + 1,
        )
        found = results.rows
        if len(found) > PAGE_SIZE:
            last = found[PAGE_SIZE - 1]
            next_cursor = encode_cursor(tickets.SEARCH_MODES[results.fuzzy], last[1], last[0].id)
            found = found[:PAGE_SIZE]
        rows = [t for t, _, _ in found]
        headlines = {t.id: highlight(h) for t, _, h in found}
    else:
        shape: tuple[type, ...] = (
            (int, datetime, uuid.UUID) if sort == "priority" else (datetime, uuid.UUID)
        )
        after = decode_cursor(cursor, *shape) if cursor else None
        rows = await tickets.list_tickets(
            session, viewer, filters, sort=sort, descending=True, after=after, limit=PAGE_SIZE + 1
        )
        if len(rows) > PAGE_SIZE:
            last_t = rows[PAGE_SIZE - 1]
            key: tuple[Any, ...] = (last_t.updated_at, last_t.id)
            if sort == "submitted":
                key = (last_t.submitted_at, last_t.id)
            elif sort == "priority":
                key = (last_t.priority_rank, last_t.updated_at, last_t.id)
            next_cursor = encode_cursor(*key)
            rows = rows[:PAGE_SIZE]
    params = {
        k: v
        for k, v in {
            "tab": tab,
            "status": status,
            "priority": priority,
            "category": category,
            "assignee": assignee,
            "sort": sort,
            "q": query,
        }.items()
        if v
    }
    by_id = {c.id: c for c in cats}
    names = {u.id: u.full_name for u in people}
    context: dict[str, Any] = {
        "rows": rows,
        "headlines": headlines,
        "next_link": f"/agent?{urlencode({**params, 'cursor': next_cursor})}"
        if next_cursor
        else None,
        "query_string": urlencode(params),
        "tab": tab,
        "tabs": [(key, label) for key, (label, _) in TABS.items()]
        + [(f"view-{v.id}", v.name) for v in saved],
        "f": {"status": status, "priority": priority, "category": category, "assignee": assignee},
        "sort": sort,
        "sorts": SORTS,
        "q": query,
        "statuses": STATUS_LABELS,
        "priorities": PRIORITY_LABELS,
        "category_choices": [(str(c.id), c.name) for c in cats if c.parent_id is None],
        "people": people,
        "names": names,
        "can_work": viewer.can_work,
        "notice": None,
        "saved_view": view,
        "view_form": _view_form(request),
        "category_label": lambda t: ticket_fields.category_label(
            by_id, t.category_id, t.subcategory_id
        ),
    }
    return context


QUEUE_NOTICES = {
    "bulk": "{changed} of {of} tickets changed.",
    "bulk_none": "Select at least one ticket.",
    "bulk_not_found": "{n} of {of} tickets were not found; nothing was changed.",
    "bulk_invalid": "{n} of {of} tickets cannot be changed this way; nothing was changed.",
    "bulk_read_only": "Only agents and admins can change tickets in bulk.",
    "bulk_failed": "The bulk action could not be applied; nothing was changed.",
    "view_saved": "The view is saved.",
    "view_renamed": "The view is renamed.",
    "view_deleted": "The view is deleted.",
}
"""The queue's notices by key: a link can pick one of these and give it numbers, never text."""
_NOTICE_NUMBERS = {"bulk": "changed", "bulk_not_found": "n", "bulk_invalid": "n"}
_COUNT = re.compile(r"[0-9]{1,3}")


def queue_notice(key: str | None, params: Mapping[str, str]) -> str | None:
    """The notice named by `key`, with its counts read from `params` (0 ≤ n ≤ of ≤ the bulk
    limit); None for an unknown key or counts that do not fit."""
    template = QUEUE_NOTICES.get(key or "")
    part = _NOTICE_NUMBERS.get(key or "")
    if template is None or part is None:
        return template
    raw = {name: params.get(name, "") for name in (part, "of")}
    if not all(_COUNT.fullmatch(v) for v in raw.values()):
        return None
    counts = {name: int(v) for name, v in raw.items()}
    if not 0 <= counts[part] <= counts["of"] <= bulk.MAX_BULK_TICKETS:
        return None
    return template.format(**counts)


def _bulk_failure(exc: AppError, sent: int) -> dict[str, Any]:
    """The notice (key and counts) for a refused bulk action."""
    if exc.code == "tickets_not_found":
        return {"notice": "bulk_not_found", "n": len(exc.extra.get("not_found", [])), "of": sent}
    if exc.code == "bulk_update_invalid":
        return {"notice": "bulk_invalid", "n": len(exc.extra.get("tickets", [])), "of": sent}
    if exc.code == "read_only":
        return {"notice": "bulk_read_only"}
    return {"notice": "bulk_failed"}


@router.post("/bulk")
async def bulk_action(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    viewer = _staff(user, tenant)
    back = form.get("back")
    if not back.startswith("/agent"):
        back = "/agent"
    action = form.get("action")
    kind, _, value = action.partition(":")
    payload: dict[str, Any]
    if kind == "assign_me":
        payload = {"assignee_id": str(user.id)}
    elif kind == "status" and value in STATUS_LABELS and value != "rejected":
        payload = {"status": value}
    elif kind == "priority" and value in PRIORITY_LABELS:
        payload = {"priority": value}
    else:
        raise BadRequest("Choose an action.", code="invalid_bulk_action")
    ids = form.getlist("ticket_ids")
    notice: dict[str, Any]
    try:
        data = bulk.BulkUpdate.model_validate({"ticket_ids": ids, "action": payload})
    except ValidationError:
        notice = {"notice": "bulk_none"}
    else:
        try:
            async with session.begin_nested():
                outcome = await bulk.bulk_update(session, viewer, tenant, data)
        except AppError as exc:
            if exc.status >= 500:
                raise
            notice = _bulk_failure(exc, len(data.ticket_ids))
        else:
            notice = {"notice": "bulk", "changed": outcome.changed, "of": len(outcome.tickets)}
    sep = "&" if "?" in back else "?"
    return redirect(request, f"{back}{sep}{urlencode(notice)}")


# A ticket ------------------------------------------------------------------------------------


async def _ticket(session: AsyncSession, viewer: Viewer, number: str) -> Ticket:
    if not _NUMBER.match(number):
        raise NotFound("Ticket not found.")
    return await tickets.access_ticket_by_number(session, viewer, number.upper())


def _props(ticket: Ticket) -> dict[str, str]:
    """The panel's values as form strings (also sent back as `seen.*` to name what changed)."""
    return {
        "status": str(ticket.status),
        "priority": str(ticket.priority),
        "category": f"{ticket.category_id}/{ticket.subcategory_id}"
        if ticket.subcategory_id
        else str(ticket.category_id),
        "department": str(ticket.department_id or ""),
        "assignee": str(ticket.assignee_id or ""),
        "tags": ", ".join(ticket.tags),
    }


async def _panel_context(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, ticket: Ticket, cats: list[CategoryRead]
) -> dict[str, Any]:
    read = tickets.to_read(ticket, viewer, tenant)
    moves = [s for s in read.allowed_transitions if s != TicketStatus.REJECTED]
    departments = await accounts.list_departments(session, include_inactive=False)
    people = await _staff_users(session)
    return {
        "ticket": ticket,
        "props": _props(ticket),
        "status_choices": [(str(ticket.status), STATUS_LABELS[str(ticket.status)])]
        + [(str(s), STATUS_LABELS[str(s)]) for s in moves],
        "priority_choices": [(p.value, PRIORITY_LABELS[p.value]) for p in Priority],
        "category_choices": [(o.value, o.label) for o in ticket_fields.category_options(cats)],
        "department_choices": [(str(d.id), d.name) for d in departments],
        "people": people,
        "assignee_choices": [(str(u.id), u.full_name) for u in people],
        "can_work": viewer.can_work,
        "conflict": None,
        "props_error": None,
        "can_reject": viewer.can_work and TicketStatus.REJECTED in read.allowed_transitions,
        "reject": {"reason": "", "error": None},
    }


async def thread_context(
    request: Request, session: AsyncSession, viewer: Viewer, tenant: Tenant, ticket: Ticket
) -> dict[str, Any]:
    """The conversation as staff see it (replies and internal notes), with authors and files."""
    return await conversation(request, session, viewer, tenant, ticket, public_only=False)


async def _ticket_page(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket: Ticket,
    *,
    tab: str = "conversation",
    notice: str | None = None,
    draft: dict[str, str] | None = None,
    errors: FieldErrors | None = None,
    panel: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    cats = await categories.list_categories(session, include_inactive=True)
    by_id = {c.id: c for c in cats}
    conversation = await thread_context(request, session, viewer, tenant, ticket)
    found = await accounts.get_users(session, [ticket.requester_id])
    requester = found[0] if found else None
    entries = await history.ticket_history(session, viewer, ticket) if tab == "history" else []
    refs = [e.actor_id for e in entries if e.actor_id]
    for e in entries:
        for values in (e.old_values or {}, e.new_values or {}):
            if values.get("assignee_id"):
                refs.append(uuid.UUID(str(values["assignee_id"])))
    authors = conversation["authors"] | {u.id: u for u in await accounts.get_users(session, refs)}
    others = [
        t
        for t in await tickets.list_tickets(
            session,
            viewer,
            TicketFilters(requester_id=ticket.requester_id),
            sort="updated",
            descending=True,
            after=None,
            limit=6,
        )
        if t.id != ticket.id
    ][:5]
    category = by_id.get(ticket.category_id)
    sub = by_id.get(ticket.subcategory_id) if ticket.subcategory_id else None
    defs = ticket_fields.definitions(category, sub) if category else []
    return render(
        request,
        "agent/ticket.html",
        {
            **(panel or await _panel_context(session, viewer, tenant, ticket, cats)),
            "tab": tab,
            **conversation,
            "authors": authors,
            "requester": requester,
            "others": others,
            "entries": history_rows(entries, authors, by_id),
            "category_name": ticket_fields.category_label(
                by_id, ticket.category_id, ticket.subcategory_id
            ),
            "fields": ticket_fields.shown_values(defs, ticket.custom_fields),
            "notice": NOTICES.get(notice or ""),
            "draft": draft or {"body": "", "internal": "0"},
            "errors": errors or {},
            "can_comment": viewer.can_work and ticket.status not in workflow.FINAL,
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
    tab: Annotated[str, Query(pattern="^(conversation|history)$")] = "conversation",
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    viewer = _staff(user, tenant)
    ticket = await _ticket(session, viewer, number)
    return await _ticket_page(request, session, viewer, tenant, ticket, tab=tab, notice=notice)


@router.post("/tickets/{number}/comment")
async def add_comment(
    request: Request,
    number: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    runtime = get_runtime(request)
    viewer = _staff(user, tenant)
    ticket = await _ticket(session, viewer, number)
    body = form.get("body")
    internal = form.get("internal") == "1"
    errors: FieldErrors = {}
    if not body.strip():
        errors["body"] = "Write your note." if internal else "Write your reply."
    elif len(body) > 50_000:
        errors["body"] = "At most 50,000 characters."
    files = await inspect_files(request, form, errors)
    if not errors:
        try:
            async with session.begin_nested():
                comment = await comments.add_comment(
                    session,
                    viewer,
                    tenant,
                    ticket.id,
                    CommentCreate(body=body, is_internal=internal),
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
            errors = app_errors(exc, rename={"file": "files"})
        else:
            notice = "noted" if internal else "replied"
            return redirect(
                request, f"/agent/tickets/{ticket.number}?notice={notice}#comment-{comment.id}"
            )
    errors.setdefault(FORM_ERROR, "Nothing was sent; see below.")
    await session.refresh(ticket)
    return await _ticket_page(
        request,
        session,
        viewer,
        tenant,
        ticket,
        draft={"body": body, "internal": "1" if internal else "0"},
        errors=errors,
        status_code=422,
    )


# Saved views: the routes are in web/agent_views.py ------------------------------------

_EMPTY_VIEW_FORM: dict[str, Any] = {"kind": "", "name": "", "errors": {}}


def _view_form(request: Request) -> dict[str, Any]:
    """The save or rename form coming back with errors (set by the POST routes in agent_views)."""
    return getattr(request.state, "view_form", None) or _EMPTY_VIEW_FORM
