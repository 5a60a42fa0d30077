"""Ticket rules: filing, changing, the workflow, versions, history.

`Viewer` (tickets.auth) carries who is asking; every read goes through `access_ticket`, which
answers 404 alike for a ticket that does not exist and one the viewer may not see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.audit import service as audit
from servicedesk.core import cache, events
from servicedesk.core.actor import Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from servicedesk.core.text import plain, render_markdown, strip_control
from servicedesk.models import Attachment, Comment, Priority, Role, Ticket, TicketStatus
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import categories, numbering, workflow
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.fields import validate_values
from servicedesk.tickets.repository import TicketFilters, TicketRepository
from servicedesk.tickets.schemas import (
    CategoryRead,
    StatusChange,
    TicketCreate,
    TicketRead,
    TicketUpdate,
)

AUDITED_FIELDS = (
    "subject",
    "description",
    "category_id",
    "subcategory_id",
    "priority",
    "status",
    "department_id",
    "requester_id",
    "assignee_id",
    "tags",
    "custom_fields",
    "rejection_reason",
)


def ticket_tag(ticket_id: uuid.UUID) -> str:
    """The cache tag of everything read from one ticket (tickets.reads)."""
    return f"ticket:{ticket_id}"


# A committed write of a ticket, or of one of its comments or files, makes its reads stale.
cache.tag_model(Ticket, lambda t: (ticket_tag(t.id),))
cache.tag_model(Comment, lambda c: (ticket_tag(c.ticket_id),))
cache.tag_model(Attachment, lambda a: (ticket_tag(a.ticket_id),))


class TicketVersionConflict(Conflict):
    code = "version_conflict"


# Ticket fields carried by events (never the description: events go to queues and webhooks).
EVENT_FIELDS = (
    "subject",
    "status",
    "priority",
    "category_id",
    "department_id",
    "requester_id",
    "assignee_id",
    "channel",
    "tags",
)


def ticket_ref(ticket: Ticket) -> dict[str, Any]:
    return {"ticket_id": ticket.id, "number": ticket.number, "version": ticket.version}


def emit_changes(
    session: AsyncSession,
    ticket: Ticket,
    actor: Actor,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    reason: str | None = None,
) -> None:
    """`ticket.status_changed`, `ticket.assigned` and `ticket.updated` for one change."""
    common = {**ticket_ref(ticket), "requester_id": ticket.requester_id}
    org = ticket.organization_id
    if "status" in new:
        events.emit(
            session,
            organization_id=org,
            event_type="ticket.status_changed",
            actor=actor,
            payload={
                **common,
                "old_status": old.get("status"),
                "new_status": new["status"],
                "reason": reason,
                "assignee_id": ticket.assignee_id,
            },
        )
    if "assignee_id" in new:
        events.emit(
            session,
            organization_id=org,
            event_type="ticket.assigned",
            actor=actor,
            payload={
                **common,
                "assignee_id": new["assignee_id"],
                "previous_assignee_id": old.get("assignee_id"),
            },
        )
    others = sorted(set(new) - {"status", "assignee_id", "rejection_reason"})
    if others:
        events.emit(
            session,
            organization_id=org,
            event_type="ticket.updated",
            actor=actor,
            payload={
                **common,
                "assignee_id": ticket.assignee_id,
                "changed_fields": others,
                "changes": {
                    f: {"old": old.get(f), "new": new[f]} for f in others if f != "description"
                },
            },
        )


def snapshot(ticket: Ticket) -> dict[str, Any]:
    return {f: getattr(ticket, f) for f in AUDITED_FIELDS}


def actor_of(viewer: Viewer) -> Actor:
    return Actor.user(viewer.user.id)


def reopen_window(tenant: Tenant) -> timedelta:
    return timedelta(days=int(tenant.settings.get("reopen_window_days", 7)))


def stored_read(ticket: Ticket) -> TicketRead:
    """The ticket as the API shows it to anyone who may see it (no per-viewer fields)."""
    read = TicketRead.model_validate(ticket)
    if ticket.first_response_at:
        read.response_seconds = int(
            (ticket.first_response_at - ticket.submitted_at).total_seconds()
        )
    if ticket.resolved_at:
        read.resolution_seconds = int((ticket.resolved_at - ticket.submitted_at).total_seconds())
    return read


def for_viewer(read: TicketRead, viewer: Viewer, tenant: Tenant) -> TicketRead:
    """A copy of `read` with the fields that depend on who asks (the moves they may make)."""
    allowed = sorted(
        workflow.allowed_moves(
            role=viewer.user.role,
            is_requester=read.requester_id == viewer.user.id,
            current=TicketStatus(read.status),
            resolved_at=read.resolved_at,
            reopen_window=reopen_window(tenant),
            now=utc_now(),
        )
    )
    return read.model_copy(update={"allowed_transitions": allowed}, deep=True)


def to_read(ticket: Ticket, viewer: Viewer, tenant: Tenant) -> TicketRead:
    return for_viewer(stored_read(ticket), viewer, tenant)


async def access_ticket(
    session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID, *, for_update: bool = False
) -> Ticket:
    ticket = await TicketRepository(session).get(viewer, ticket_id, for_update=for_update)
    if ticket is None:
        raise NotFound("Ticket not found.")
    return ticket


async def get_ticket_unchecked(session: AsyncSession, ticket_id: uuid.UUID) -> Ticket | None:
    """The ticket without a visibility check, for callers that check each reader themselves
    with `Viewer.can_see` (a notification fan-out to thousands): never shown as is."""
    return await TicketRepository(session).get_unfiltered(ticket_id)


async def access_ticket_by_number(session: AsyncSession, viewer: Viewer, number: str) -> Ticket:
    ticket = await TicketRepository(session).get_by_number(viewer, number)
    if ticket is None:
        raise NotFound("Ticket not found.")
    return ticket


def check_version(ticket: Ticket, version: int | None, viewer: Viewer, tenant: Tenant) -> None:
    """Refuse a change based on another version than the stored one (409 with current state)."""
    if version is None:
        raise Unprocessable(
            "Send the version you based this change on (If-Match header or `version`).",
            code="version_required",
            errors=[{"loc": ["body", "version"], "msg": "required", "type": "missing"}],
        )
    if version != ticket.version:
        raise TicketVersionConflict(
            f"The ticket changed since version {version}; it is now at version "
            f"{ticket.version}. Review the current state and apply your change again.",
            extra={"current": to_read(ticket, viewer, tenant).model_dump(mode="json")},
        )


def _subject(source: str) -> str:
    """The subject as plain text; 422 unless 5 visible characters remain."""
    subject = plain(source)
    if len(subject) < 5:
        raise Unprocessable(
            "The subject needs at least 5 visible characters.",
            code="validation_error",
            errors=[{"loc": ["body", "subject"], "msg": "too short", "type": "string_too_short"}],
        )
    return subject


def _description(source: str) -> str:
    """The description without control characters; 422 unless 10 visible characters remain."""
    description = strip_control(source)
    if len(description.strip()) < 10:
        raise Unprocessable(
            "The description needs at least 10 visible characters.",
            code="validation_error",
            errors=[
                {"loc": ["body", "description"], "msg": "too short", "type": "string_too_short"}
            ],
        )
    return description


def touch(ticket: Ticket) -> None:
    """A change: the next version, and the activity time (also used by bulk updates)."""
    ticket.version += 1
    ticket.updated_at = utc_now()


async def _check_category(
    session: AsyncSession, category_id: uuid.UUID, subcategory_id: uuid.UUID | None
) -> tuple[CategoryRead, CategoryRead | None]:
    """The category and sub-category a ticket may be filed under (from the category cache)."""
    category = await categories.usable_read(session, category_id, field="category_id")
    if category.parent_id is not None:
        raise Unprocessable(
            "Pick a top-level category, and its sub-category in `subcategory_id`.",
            code="invalid_category",
            errors=[{"loc": ["body", "category_id"], "msg": "is a sub-category", "type": "x"}],
        )
    sub = None
    if subcategory_id is not None:
        sub = await categories.usable_read(session, subcategory_id, field="subcategory_id")
        if sub.parent_id != category.id:
            raise Unprocessable(
                "The sub-category does not belong to the category.",
                code="invalid_subcategory",
                errors=[{"loc": ["body", "subcategory_id"], "msg": "not a child", "type": "x"}],
            )
    return category, sub


async def create_ticket(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, data: TicketCreate
) -> Ticket:
    user = viewer.user
    staff_only = {"assignee_id", "department_id"} & data.model_fields_set
    if not viewer.can_work:
        if staff_only:
            raise Unprocessable(
                "Only agents can set the assignee or department.",
                code="field_not_allowed",
                errors=[
                    {"loc": ["body", f], "msg": "not allowed", "type": "x"} for f in staff_only
                ],
            )
        if data.requester_id is not None and data.requester_id != user.id:
            raise Unprocessable(
                "You can only file tickets for yourself.",
                code="field_not_allowed",
                errors=[{"loc": ["body", "requester_id"], "msg": "not allowed", "type": "x"}],
            )
    subject, description = _subject(data.subject), _description(data.description)
    category, sub = await _check_category(session, data.category_id, data.subcategory_id)
    definition = (sub.fields if sub else []) + category.fields
    custom = validate_values(definition, data.custom_fields)
    requester_id = user.id
    if data.requester_id is not None and data.requester_id != user.id:
        requester_id = (
            await accounts.check_requester(session, data.requester_id, field="requester_id")
        ).id
    if data.assignee_id is not None:
        await accounts.check_assignable(session, data.assignee_id, field="assignee_id")
    department_id = data.department_id if "department_id" in data.model_fields_set else None
    if department_id is not None:
        await accounts.check_department(session, department_id)
    else:
        department_id = (
            sub.department_id if sub and sub.department_id else None
        ) or category.department_id
    now = utc_now()
    ticket = Ticket(
        organization_id=tenant.id,
        number=await numbering.next_number(session, tenant.id, now.year),
        subject=subject,
        description=description,
        description_html=render_markdown(description),
        category_id=category.id,
        subcategory_id=sub.id if sub else None,
        priority=data.priority or (sub.default_priority if sub else category.default_priority),
        status=TicketStatus.NEW,
        department_id=department_id,
        requester_id=requester_id,
        assignee_id=data.assignee_id,
        channel=data.channel,
        tags=[plain(t) for t in data.tags],
        custom_fields=custom,
        submitted_at=now,
        updated_at=now,
        version=1,
    )
    session.add(ticket)
    await session.flush()
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=actor_of(viewer),
        action="ticket.created",
        table="tickets",
        record_id=ticket.id,
        new={**snapshot(ticket), "number": ticket.number, "channel": ticket.channel},
    )
    events.emit(
        session,
        organization_id=tenant.id,
        event_type="ticket.created",
        actor=actor_of(viewer),
        payload={**ticket_ref(ticket), **{f: getattr(ticket, f) for f in EVENT_FIELDS}},
    )
    return ticket


async def update_ticket(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    data: TicketUpdate,
    *,
    version: int | None,
) -> Ticket:
    if not viewer.can_work:
        if viewer.is_staff:
            raise Forbidden("Managers can read tickets but not change them.", code="read_only")
        # A requester may not edit; say 404 for tickets they cannot see at all.
        await access_ticket(session, viewer, ticket_id)
        raise Forbidden("Requesters cannot edit a ticket; add a reply instead.", code="read_only")
    ticket = await access_ticket(session, viewer, ticket_id, for_update=True)
    check_version(ticket, data.version if data.version is not None else version, viewer, tenant)
    before = snapshot(ticket)
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    for required in ("subject", "description", "category_id", "priority", "tags", "custom_fields"):
        if required in changes and changes[required] is None:
            raise Unprocessable(
                f"{required} cannot be null.",
                code="validation_error",
                errors=[{"loc": ["body", required], "msg": "cannot be null", "type": "x"}],
            )
    if "subject" in changes:
        ticket.subject = _subject(changes["subject"])
    if "description" in changes:
        ticket.description = _description(changes["description"])
        ticket.description_html = render_markdown(ticket.description)
    if "category_id" in changes or "subcategory_id" in changes:
        category_id = changes.get("category_id", ticket.category_id)
        sub_id = changes.get(
            "subcategory_id", ticket.subcategory_id if "category_id" not in changes else None
        )
        category, sub = await _check_category(session, category_id, sub_id)
        definition = (sub.fields if sub else []) + category.fields
        values = changes.get("custom_fields", ticket.custom_fields)
        ticket.custom_fields = validate_values(definition, values or {})
        ticket.category_id, ticket.subcategory_id = category.id, sub.id if sub else None
    elif "custom_fields" in changes:
        category, sub = await _check_category(session, ticket.category_id, ticket.subcategory_id)
        definition = (sub.fields if sub else []) + category.fields
        ticket.custom_fields = validate_values(
            definition, changes["custom_fields"], existing=ticket.custom_fields
        )
    if "priority" in changes:
        ticket.priority = Priority(changes["priority"])
    if "department_id" in changes:
        await accounts.check_department(session, changes["department_id"])
        ticket.department_id = changes["department_id"]
    if "assignee_id" in changes and changes["assignee_id"] is not None:
        await accounts.check_assignable(session, changes["assignee_id"], field="assignee_id")
    if "assignee_id" in changes:
        ticket.assignee_id = changes["assignee_id"]
    if "tags" in changes:
        ticket.tags = [plain(t) for t in changes["tags"]]
    old, new = audit.diff(before, snapshot(ticket))
    if not new:
        return ticket
    touch(ticket)
    await session.flush()
    action = "ticket.assigned" if set(new) == {"assignee_id"} else "ticket.updated"
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=actor_of(viewer),
        action=action,
        table="tickets",
        record_id=ticket.id,
        old=old,
        new=new,
    )
    emit_changes(session, ticket, actor_of(viewer), old, new)
    return ticket


def apply_status(ticket: Ticket, target: TicketStatus, *, reason: str | None) -> None:
    """Set a status with the timestamps and counters that go with it."""
    now = utc_now()
    previous = TicketStatus(ticket.status)
    ticket.status = target
    if target == TicketStatus.RESOLVED:
        ticket.resolved_at = now
    elif target == TicketStatus.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    elif target == TicketStatus.REJECTED:
        ticket.rejection_reason = reason
        ticket.closed_at = now
    if previous == TicketStatus.RESOLVED and target == TicketStatus.OPEN:
        ticket.reopened_count += 1
        ticket.resolved_at = None


async def change_status(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    data: StatusChange,
    *,
    version: int | None,
) -> Ticket:
    ticket = await access_ticket(session, viewer, ticket_id, for_update=True)
    if viewer.is_staff and not viewer.can_work:
        raise Forbidden("Managers can read tickets but not change them.", code="read_only")
    check_version(ticket, data.version if data.version is not None else version, viewer, tenant)
    current = TicketStatus(ticket.status)
    allowed = workflow.allowed_moves(
        role=viewer.user.role,
        is_requester=ticket.requester_id == viewer.user.id,
        current=current,
        resolved_at=ticket.resolved_at,
        reopen_window=reopen_window(tenant),
        now=utc_now(),
    )
    if data.status not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise Unprocessable(
            f"A {current} ticket cannot move to {data.status} by you; allowed: {names}.",
            code="invalid_transition",
            extra={"allowed": sorted(allowed), "current": current},
        )
    if data.status == TicketStatus.REJECTED and not data.reason:
        raise Unprocessable(
            "Rejecting a ticket needs a reason.",
            code="reason_required",
            errors=[{"loc": ["body", "reason"], "msg": "required to reject", "type": "missing"}],
        )
    before = snapshot(ticket)
    apply_status(ticket, data.status, reason=data.reason)
    touch(ticket)
    await session.flush()
    old, new = audit.diff(before, snapshot(ticket))
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=actor_of(viewer),
        action="ticket.status_changed",
        table="tickets",
        record_id=ticket.id,
        old=old,
        new={**new, **({"reason": data.reason} if data.reason else {})},
    )
    emit_changes(session, ticket, actor_of(viewer), old, new, reason=data.reason)
    return ticket


async def record_reply(session: AsyncSession, ticket: Ticket, *, by: Role, internal: bool) -> None:
    """A comment stamps activity (and the first response) without bumping the version: a reply
    must not make a colleague's pending property edit stale."""
    if not internal and by in (Role.AGENT, Role.ADMIN) and ticket.first_response_at is None:
        ticket.first_response_at = utc_now()
    ticket.updated_at = utc_now()


async def list_tickets(
    session: AsyncSession,
    viewer: Viewer,
    filters: TicketFilters,
    *,
    sort: str = "updated",
    descending: bool = True,
    after: tuple[Any, ...] | None = None,
    limit: int = 25,
) -> list[Ticket]:
    """A page of the tickets `viewer` may see, keyset-paginated on the sort key."""
    return await TicketRepository(session).list(
        viewer, filters, sort=sort, descending=descending, after=after, limit=limit
    )


SEARCH_MODES = ("exact", "fuzzy")
"""How a search cursor names `SearchResults.fuzzy` (index by the bool)."""


@dataclass(frozen=True)
class SearchResults:
    rows: list[tuple[Ticket, float, str]]
    """Best matches first, each with its score and raw headline (see repository.HL_START)."""
    fuzzy: bool
    """Whether subjects merely like the query count as matches; a cursor carries it so that
    every page of one search uses the same rule."""


async def search_tickets(
    session: AsyncSession,
    viewer: Viewer,
    filters: TicketFilters,
    text_query: str,
    *,
    after: tuple[float, uuid.UUID] | None = None,
    fuzzy: bool | None = None,
    limit: int = 25,
) -> SearchResults:
    """Exact matches (words, ticket-number prefix) first; fuzzy subject matches only when the
    exact ones do not reach `limit`, as for a misspelled word.

    `fuzzy` None decides it (a first page); a next page passes the first page's decision.
    """
    repo = TicketRepository(session)
    if fuzzy is None:
        exact = await repo.search(
            viewer, filters, text_query, fuzzy=False, after=after, limit=limit
        )
        if len(exact) >= limit:
            return SearchResults(exact, fuzzy=False)
        fuzzy = True
    rows = await repo.search(viewer, filters, text_query, fuzzy=fuzzy, after=after, limit=limit)
    return SearchResults(rows, fuzzy=fuzzy)
