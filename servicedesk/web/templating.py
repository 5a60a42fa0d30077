"""Jinja2 rendering of the pages: autoescaping everywhere, shared context, date formatting.

Every value from a user reaches a page through autoescaping; the only markup inserted as is
comes from `core.text.render_markdown` (sanitised with an allow-list when it was written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from servicedesk.core.context import current_request
from servicedesk.models import Role, User
from servicedesk.web import assets
from servicedesk.web.session import base_path, csrf_token, finish, is_htmx

STATUS_LABELS = {
    "new": "New",
    "open": "Open",
    "in_progress": "In progress",
    "on_hold": "On hold",
    "resolved": "Resolved",
    "closed": "Closed",
    "rejected": "Rejected",
}
PRIORITY_LABELS = {"low": "Low", "medium": "Medium", "high": "High", "critical": "Critical"}
ROLE_LABELS = {"requester": "Requester", "agent": "Agent", "admin": "Admin", "manager": "Manager"}


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    roles: frozenset[str] | None = None
    """Who sees it; None: everyone signed in."""


# The main navigation. The agent workspace and admin console add their entries here.
NAV: list[NavItem] = [
    NavItem("My tickets", "/tickets"),
    NavItem("New ticket", "/tickets/new"),
    NavItem("Queue", "/agent", frozenset({"agent", "admin", "manager"})),
    NavItem("Admin", "/admin", frozenset({"admin"})),
]


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_datetime(value: datetime, tz: str | None) -> str:
    """`25 Nov 2026, 14:05` in the viewer's time zone."""
    local = value.astimezone(_zone(tz))
    return f"{local.day} {local:%b %Y, %H:%M}"


def format_date(value: datetime, tz: str | None) -> str:
    local = value.astimezone(_zone(tz))
    return f"{local.day} {local:%b %Y}"


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_RELATIVE = Markup('<time datetime="{}" title="{} ({})" data-rel>{}</time>')
_DATE = Markup('<time datetime="{}" title="{} ({})">{}</time>')


@pass_context
def _time(ctx: Context, value: datetime | None, *, date_only: bool = False) -> Markup:
    """A <time> element: the absolute time in the viewer's zone; app.js adds "3 hours ago"."""
    if value is None:
        return Markup("")
    tz = ctx.get("tz")
    text = format_date(value, tz) if date_only else format_datetime(value, tz)
    iso = value.astimezone(UTC).isoformat()
    template = _DATE if date_only else _RELATIVE
    return template.format(iso, format_datetime(value, tz), tz or "UTC", text)


def _filesize(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    megabytes = size / 1048576
    return f"{megabytes:.0f} MB" if megabytes.is_integer() else f"{megabytes:.1f} MB"


def _build_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(assets.TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["status_label"] = lambda s: STATUS_LABELS.get(str(s), str(s))
    env.filters["priority_label"] = lambda p: PRIORITY_LABELS.get(str(p), str(p))
    env.filters["role_label"] = lambda r: ROLE_LABELS.get(str(r), str(r))
    env.filters["filesize"] = _filesize
    env.filters["fid"] = lambda name: "f-" + _ID_UNSAFE.sub("-", str(name))
    env.globals["time"] = _time
    env.globals["static"] = assets.static_url
    return env


env = _build_env()


def _nav(request: Request, user: User | None) -> list[dict[str, Any]]:
    if user is None:
        return []
    here = request.url.path
    items = []
    for item in NAV:
        if item.roles is not None and user.role not in item.roles:
            continue
        active = (
            here == item.path
            or (item.path == "/tickets" and here.startswith("/tickets/") and here != "/tickets/new")
            or (item.path == "/admin" and here.startswith("/admin/"))
        )
        href = base_path(request) + item.path
        items.append({"label": item.label, "href": href, "active": active})
    return items


def page_context(request: Request) -> dict[str, Any]:
    """What every page gets: links, the CSRF token, the user, the tenant, the zone."""
    user: User | None = getattr(request.state, "user", None)
    tenant = getattr(request.state, "tenant", None)
    base = base_path(request)
    return {
        "request": request,
        "base": base,
        "url": lambda path: base + path,
        "csrf": csrf_token(request),
        "user": user,
        "is_staff": user is not None and user.role != Role.REQUESTER,
        "tenant": tenant,
        "tz": user.timezone if user is not None else (tenant.timezone if tenant else "UTC"),
        "nav": _nav(request, user),
        "htmx": assets.htmx_available(),
        "htmx_request": is_htmx(request),
        "request_id": current_request().request_id or "",
        "path": request.url.path,
    }


def render_string(template: str, context: dict[str, Any]) -> str:
    return env.get_template(template).render(context)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page (or an htmx fragment) with the shared context; pending cookies go with it."""
    html = render_string(template, {**page_context(request), **(context or {})})
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    finish(request, response)
    return response
