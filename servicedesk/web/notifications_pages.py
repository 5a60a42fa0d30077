"""The notification centre: the bell, the list with read marks, and the preferences form.

An adapter over `notifications.service` (list, unread count, read marks, preferences) and
`accounts.service.do_update_me` (the time zone quiet hours are kept in). A user only ever
reaches their own notifications: `service.access_notification` gives the same 404 for another
user's and another organization's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from servicedesk.accounts import service as accounts
from servicedesk.accounts.schemas import MeUpdate
from servicedesk.core.errors import BadRequest
from servicedesk.core.pagination import decode_cursor, encode_cursor
from servicedesk.models import User
from servicedesk.notifications import rules
from servicedesk.notifications import service as notifications
from servicedesk.notifications.schemas import PreferenceItem, PreferencesUpdate, QuietHours
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.web.account_pages import timezones
from servicedesk.web.forms import FORM_ERROR, FieldErrors, UserForm, validation_errors
from servicedesk.web.session import OptionalUser, PageUser, redirect, safe_next
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 20
SHOW = {"all": "All", "unread": "Unread"}
NOTICES = {
    "read_all": "Every notification is marked as read.",
    "saved": "Your notification settings have been saved.",
}
CHANNEL_LABELS = {"in_app": "In the app", "email": "Email", "push": "Push"}


# The bell ------------------------------------------------------------------------------------


@router.get("/notifications/bell")
async def bell(
    request: Request, tenant: CurrentTenant, session: TenantSession, user: OptionalUser
) -> Response:
    """The bell with the unread count, for htmx to swap in (and refresh) on every page."""
    if user is None:
        return Response(status_code=204)  # a background refresh never sends anyone to sign in
    count = await notifications.count_unread(session, user)
    return render(request, "notifications/_bell.html", {"bell_count": count, "bell_poll": True})


# The list ------------------------------------------------------------------------------------


@router.get("/notifications")
async def notification_list(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    show: Annotated[str, Query(pattern="^(all|unread)$")] = "all",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    before = None
    if cursor:
        decoded = decode_cursor(cursor, str, datetime, uuid.UUID)
        if decoded[0] != show:
            raise BadRequest("The page link is not valid.", code="invalid_cursor")
        before = (decoded[1], decoded[2])
    rows = await notifications.list_notifications(
        session, user, unread_only=show == "unread", before=before, limit=PAGE_SIZE + 1
    )
    next_cursor = None
    if len(rows) > PAGE_SIZE:
        last = rows[PAGE_SIZE - 1]
        next_cursor = encode_cursor(show, last.updated_at, last.id)
        rows = rows[:PAGE_SIZE]
    return render(
        request,
        "notifications/list.html",
        {
            "items": rows,
            "show": show,
            "tabs": list(SHOW.items()),
            "unread": await notifications.count_unread(session, user),
            "next_cursor": next_cursor,
            "paged": cursor is not None,
            "notice": NOTICES.get(notice or ""),
        },
    )


@router.post("/notifications/read-all")
async def read_all(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    await notifications.mark_all_read(session, user)
    return redirect(request, "/notifications?notice=read_all")


@router.post("/notifications/{notification_id}/open")
async def open_notification(
    request: Request,
    notification_id: uuid.UUID,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    """Mark one read and go to what it is about (its stored path within the organization)."""
    found = await notifications.mark_read(session, user, notification_id)
    return redirect(request, safe_next(found.url) or "/notifications")


# Preferences ---------------------------------------------------------------------------------


def _pair(event_type: str, channel: str) -> str:
    return f"{event_type}:{channel}"


def _page_values(prefs: Any, user: User) -> dict[str, Any]:
    quiet = prefs.quiet_hours
    return {
        "on": {_pair(p.event_type, p.channel) for p in prefs.preferences if p.enabled},
        "quiet_start": quiet.start.strftime("%H:%M") if quiet else "",
        "quiet_end": quiet.end.strftime("%H:%M") if quiet else "",
        "timezone": user.timezone,
    }


async def _preferences_page(
    request: Request,
    session: TenantSession,
    user: User,
    *,
    values: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    prefs = await notifications.get_preferences(session, user)
    return render(
        request,
        "notifications/preferences.html",
        {
            "types": [t for t in rules.TYPES.values() if user.role in t.roles],
            "channels": [(c, CHANNEL_LABELS.get(c, c)) for c in notifications.CHANNELS],
            "pair": _pair,
            "values": values or _page_values(prefs, user),
            "errors": errors or {},
            "timezones": timezones(),
            "notice": NOTICES.get(notice or ""),
        },
        status_code=status_code,
    )


@router.get("/notifications/preferences")
async def preferences_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _preferences_page(request, session, user, notice=notice)


def _read_preferences(shown: list[str], on: list[str], errors: FieldErrors) -> list[PreferenceItem]:
    """One item per pair the form showed (`pref`), switched on when its box was ticked."""
    items: list[PreferenceItem] = []
    for value in shown:
        event_type, _, channel = value.partition(":")
        try:
            items.append(
                PreferenceItem.model_validate(
                    {"event_type": event_type, "channel": channel, "enabled": value in on}
                )
            )
        except ValidationError:
            errors["preferences"] = f"Unknown notification or channel: {value[:80]}."
    if set(on) - set(shown):
        errors["preferences"] = "Unknown notification or channel."
    return items


def _read_quiet_hours(start: str, end: str, errors: FieldErrors) -> QuietHours | None:
    if not start and not end:
        return None
    if not start or not end:
        missing = "quiet_start" if not start else "quiet_end"
        errors[missing] = "Give both a start and an end, or leave both empty."
        return None
    try:
        return QuietHours.model_validate({"start": start, "end": end})
    except ValidationError as exc:
        found = validation_errors(exc, rename={"start": "quiet_start", "end": "quiet_end"})
        if FORM_ERROR in found:  # the range as a whole: start and end are the same
            found["quiet_end"] = found.pop(FORM_ERROR)
        errors.update(found)
        return None


@router.post("/notifications/preferences")
async def save_preferences(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    shown, on = form.getlist("pref"), form.getlist("on")
    start, end = form.get("quiet_start").strip(), form.get("quiet_end").strip()
    timezone = form.get("timezone").strip()
    values = {"on": set(on), "quiet_start": start, "quiet_end": end, "timezone": timezone}
    errors: FieldErrors = {}
    items = _read_preferences(shown, on, errors)
    quiet = _read_quiet_hours(start, end, errors)
    zone: MeUpdate | None = None
    try:
        zone = MeUpdate.model_validate({"timezone": timezone or None})
    except ValidationError as exc:
        errors.update(validation_errors(exc))
    if not timezone:
        errors["timezone"] = "Choose a time zone."
    if errors or zone is None:
        errors.setdefault(FORM_ERROR, "Nothing was saved: check the highlighted fields.")
        return await _preferences_page(
            request, session, user, values=values, errors=errors, status_code=422
        )
    await notifications.do_update_preferences(
        session, user, PreferencesUpdate(preferences=items, quiet_hours=quiet)
    )
    if zone.timezone != user.timezone:
        await accounts.do_update_me(session, user, zone)
    return redirect(request, "/notifications/preferences?notice=saved")
