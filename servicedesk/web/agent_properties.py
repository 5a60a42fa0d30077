"""The agent's property panel on a ticket: change one property at a time (status, priority,
category, department, assignee, tags) and reject with a reason.

Both are versioned: the form carries the version and the values the page showed (`seen.*`); a
stale version answers the conflict box that says who changed what since (409, or 200 with the
panel for htmx, which swaps 2xx and 422 only), with the input kept for a re-apply.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.core.errors import AppError, BadRequest, Forbidden
from servicedesk.models import Ticket, TicketStatus
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import categories, history
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.schemas import CategoryRead, StatusChange, TicketUpdate
from servicedesk.web import ticket_fields
from servicedesk.web.agent import (
    PROPERTIES,
    PROPERTY_LABELS,
    _panel_context,
    _staff,
    _ticket,
    _ticket_page,
)
from servicedesk.web.forms import UserForm, validation_errors
from servicedesk.web.session import PageUser, is_htmx, redirect
from servicedesk.web.templating import PRIORITY_LABELS, STATUS_LABELS, render

router = APIRouter(prefix="/agent", include_in_schema=False)


async def _apply(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket: Ticket,
    field: str,
    value: str,
    version: int,
    cats: list[CategoryRead],
) -> None:
    if field == "status":
        await tickets.change_status(
            session,
            viewer,
            tenant,
            ticket.id,
            StatusChange.model_validate({"status": value, "version": version}),
            version=None,
        )
        return
    change: dict[str, Any] = {"version": version}
    if field == "priority":
        change["priority"] = value
    elif field == "category":
        chosen = ticket_fields.resolve_choice(value, cats)
        if chosen is None:
            raise BadRequest("Choose a category.", code="invalid_category")
        change["category_id"] = chosen[0].id
        change["subcategory_id"] = chosen[1].id if chosen[1] else None
    elif field == "department":
        change["department_id"] = value or None
    elif field == "assignee":
        change["assignee_id"] = value or None
    elif field == "tags":
        change["tags"] = [t.strip() for t in value.split(",") if t.strip()]
    await tickets.update_ticket(
        session, viewer, tenant, ticket.id, TicketUpdate.model_validate(change), version=None
    )


def _shown(field: str, value: str, ctx: dict[str, Any]) -> str:
    """A property's value as the panel shows it (for the conflict message)."""
    if not value:
        return "none"
    choices: dict[str, str] = {
        "status": dict(ctx["status_choices"]) | STATUS_LABELS,
        "priority": PRIORITY_LABELS,
        "category": dict(ctx["category_choices"]),
        "department": dict(ctx["department_choices"]),
        "assignee": {str(u.id): u.full_name for u in ctx["people"]},
    }.get(field, {})
    return choices.get(value, value)


async def _stale_edit(
    session: AsyncSession, viewer: Viewer, ticket: Ticket, seen: dict[str, str], ctx: dict[str, Any]
) -> tuple[str, str, list[tuple[str, str]]]:
    """For a stale edit: who changed the ticket last, which properties differ from the ones the
    page showed (`seen`), and their current values as the panel shows them."""
    current = ctx["props"]
    changed = [p for p in PROPERTIES if seen[p] != current[p]]
    entries = await history.ticket_history(session, viewer, ticket)
    actor_ids = [e.actor_id for e in entries if e.table_name == "tickets" and e.actor_id]
    who = "Someone"
    if actor_ids:
        found = await accounts.get_users(session, [actor_ids[-1]])
        if found:
            who = "You (in another tab)" if found[0].id == viewer.user.id else found[0].first_name
    what = ", ".join(PROPERTY_LABELS[p] for p in changed) or "this ticket"
    return who, what, [(PROPERTY_LABELS[p], _shown(p, current[p], ctx)) for p in changed]


@router.post("/tickets/{number}/properties")
async def edit_property(
    request: Request,
    number: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    viewer = _staff(user, tenant)
    ticket = await _ticket(session, viewer, number)
    field = form.get("field")
    value = form.get("value").strip()
    version = form.get("version")
    if field not in PROPERTIES or not version.isdigit() or len(value) > 2000:
        raise BadRequest("The change is not valid.", code="invalid_property_form")
    seen = {p: form.get(f"seen.{p}") for p in PROPERTIES}
    cats = await categories.list_categories(session, include_inactive=True)
    conflict: dict[str, Any] | None = None
    error: str | None = None
    try:
        async with session.begin_nested():
            await _apply(session, viewer, tenant, ticket, field, value, int(version), cats)
    except tickets.TicketVersionConflict:
        conflict = {"field": field, "value": value}
    except ValidationError as exc:
        error = " ".join(validation_errors(exc).values())
    except AppError as exc:
        if exc.status >= 500:
            raise
        error = exc.detail
        if exc.errors:
            error = "; ".join(str(e.get("msg", "")) for e in exc.errors) or error
    await session.refresh(ticket)
    ctx = await _panel_context(session, viewer, tenant, ticket, cats)
    if conflict is not None:
        who, what, changes = await _stale_edit(session, viewer, ticket, seen, ctx)
        conflict.update(
            message=f"{who} changed {what}; your change was not applied — re-apply?",
            label=PROPERTY_LABELS[field],
            shown=_shown(field, value, ctx),
            changes=changes,
        )
        ctx["conflict"] = conflict
    ctx["props_error"] = error
    status_code = 409 if conflict else 422 if error else 200
    if is_htmx(request):
        # htmx swaps 2xx and 422 only: the panel with the conflict comes as a 200.
        return render(request, "agent/_props.html", ctx, status_code=min(status_code, 200))
    if conflict is None and error is None:
        return redirect(request, f"/agent/tickets/{ticket.number}")
    return await _ticket_page(
        request, session, viewer, tenant, ticket, panel=ctx, status_code=status_code
    )


# Rejecting a ticket --------------------------------------------------------------------------

REASON_MAX = 2000


async def _conflict_on_reject(
    session: AsyncSession, viewer: Viewer, ticket: Ticket, seen: dict[str, str], ctx: dict[str, Any]
) -> dict[str, Any]:
    """The stale-edit box for a rejection: who changed what since the page was shown."""
    who, what, changes = await _stale_edit(session, viewer, ticket, seen, ctx)
    return {
        "field": "status",
        "value": str(TicketStatus.REJECTED),
        "message": f"{who} changed {what}; the ticket was not rejected — reject it anyway?",
        "label": "status",
        "shown": STATUS_LABELS[str(TicketStatus.REJECTED)],
        "changes": changes,
    }


@router.post("/tickets/{number}/reject")
async def reject_ticket(
    request: Request,
    number: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    """Reject with a reason (agents and admins, where the workflow allows it), versioned like
    the panel's other edits: a stale version gets the conflict box, with the reason kept."""
    viewer = _staff(user, tenant)
    ticket = await _ticket(session, viewer, number)
    if not viewer.can_work:
        raise Forbidden("Managers can read tickets but not change them.", code="read_only")
    reason = form.get("reason").strip()
    version = form.get("version")
    if not version.isdigit() or len(version) > 9:
        raise BadRequest("The change is not valid.", code="invalid_property_form")
    seen = {p: form.get(f"seen.{p}") for p in PROPERTIES}
    error: str | None = None
    panel_error: str | None = None
    stale = False
    if not reason:
        error = "Give a reason: the requester will see it."
    elif len(reason) > REASON_MAX:
        error = f"At most {REASON_MAX:,} characters."
    else:
        change = StatusChange(status=TicketStatus.REJECTED, reason=reason, version=int(version))
        try:
            async with session.begin_nested():
                await tickets.change_status(
                    session, viewer, tenant, ticket.id, change, version=None
                )
        except tickets.TicketVersionConflict:
            stale = True
        except AppError as exc:
            if exc.status >= 500:
                raise
            if exc.code == "reason_required":
                error = "Give a reason: the requester will see it."
            else:
                panel_error = exc.detail  # e.g. the ticket moved on to a status that cannot
        else:
            return redirect(request, f"/agent/tickets/{ticket.number}?notice=rejected")
    await session.refresh(ticket)
    cats = await categories.list_categories(session, include_inactive=True)
    ctx = await _panel_context(session, viewer, tenant, ticket, cats)
    ctx["reject"] = {"reason": reason, "error": error}
    ctx["props_error"] = panel_error
    if stale:
        ctx["conflict"] = await _conflict_on_reject(session, viewer, ticket, seen, ctx)
        ctx["conflict"]["reason"] = reason
    status_code = 409 if stale else 422
    if is_htmx(request):
        # htmx swaps 2xx and 422 only: the panel with the conflict comes as a 200.
        return render(request, "agent/_props.html", ctx, status_code=200 if stale else 422)
    return await _ticket_page(
        request, session, viewer, tenant, ticket, panel=ctx, status_code=status_code
    )
