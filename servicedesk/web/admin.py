"""The admin console (`/admin`): users and approvals, departments, organization settings and the
audit log; categories and their field editor live in `admin_categories.py`.

Admins only: anyone else gets the 403 page. Routes call the same services as the API
(`accounts.service`, `accounts.login`, `tenancy.service`, `audit.service`), never SQL; every
form carries the CSRF token and is read before the transaction opens (`UserForm` first).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import login
from servicedesk.accounts import service as accounts
from servicedesk.accounts.schemas import DepartmentCreate, DepartmentUpdate, UserUpdate
from servicedesk.audit import service as audit
from servicedesk.core.actor import Actor
from servicedesk.core.errors import AppError, BadRequest, Forbidden
from servicedesk.core.pagination import decode_cursor, encode_cursor
from servicedesk.models import Department, Role, User, UserStatus
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.schemas import OrganizationSettings, OrganizationUpdate
from servicedesk.web.account_pages import timezones
from servicedesk.web.forms import FORM_ERROR, FieldErrors, UserForm, app_errors, parse
from servicedesk.web.session import PageUser, is_htmx, redirect
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)


async def _admin(user: PageUser) -> User:
    if user.role != Role.ADMIN:
        raise Forbidden("The admin console is for administrators.", code="insufficient_role")
    return user


AdminPage = Annotated[User, Depends(_admin)]
"""The signed-in admin of a console page; others get the 403 page."""

USERS_PAGE = 50
AUDIT_PAGE = 50
STATUS_LABELS = {
    "pending": "Pending",
    "approved": "Active",
    "rejected": "Rejected",
    "suspended": "Suspended",
}
NOTICES = {
    "approved": "The user is approved and can sign in.",
    "rejected": "The registration was rejected.",
    "suspended": "The user is suspended; their sessions have ended.",
    "reinstated": "The user is active again.",
    "deactivated": "The user is deactivated; their sessions have ended.",
    "reactivated": "The user is reactivated.",
    "sessions": "All of the user's sessions have ended.",
    "saved": "Changes saved.",
    "dept_created": "Department added.",
    "dept_saved": "Department saved.",
    "settings": "Organization settings saved.",
}


def notice_text(notice: str | None) -> str | None:
    return NOTICES.get(notice or "")


async def pending_count(session: AsyncSession) -> int:
    return len(await accounts.list_users(session, status=UserStatus.PENDING, limit=100))


async def admin_context(session: AsyncSession, section: str) -> dict[str, Any]:
    """What every console page gets: its section (for the tabs) and the pending badge."""
    return {"section": section, "pending": await pending_count(session)}


@router.get("/admin")
async def admin_home(
    request: Request, tenant: CurrentTenant, session: TenantSession, admin: AdminPage
) -> Response:
    return redirect(request, "/admin/users")


# Users ---------------------------------------------------------------------------------------


@router.get("/admin/users")
async def users_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    status: Annotated[str, Query(pattern="^(|pending|approved|rejected|suspended)$")] = "",
    role: Annotated[str, Query(pattern="^(|requester|agent|admin|manager)$")] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    after = None
    if cursor:
        after = decode_cursor(cursor, int, datetime, uuid.UUID)
        if after[0] not in (0, 1):
            raise BadRequest("The page link is not valid.", code="invalid_cursor")
    rows = await accounts.list_users(
        session,
        status=status or None,
        role=role or None,
        q=q.strip() or None,
        after=after,
        limit=USERS_PAGE + 1,
    )
    next_cursor = None
    if len(rows) > USERS_PAGE:
        last = rows[USERS_PAGE - 1]
        rank = 0 if last.status == UserStatus.PENDING else 1
        next_cursor = encode_cursor(rank, last.created_at, last.id)
        rows = rows[:USERS_PAGE]
    departments = {d.id: d for d in await accounts.list_departments(session)}
    return render(
        request,
        "admin/users.html",
        {
            **await admin_context(session, "users"),
            "users": rows,
            "departments": departments,
            "filters": {"status": status, "role": role, "q": q},
            "filtered": bool(status or role or q),
            "next_cursor": next_cursor,
            "paged": cursor is not None,
            "status_labels": STATUS_LABELS,
            "roles": [r.value for r in Role],
            "notice": notice_text(notice),
        },
    )


async def _user_page(
    request: Request,
    session: AsyncSession,
    admin: User,
    user: User,
    *,
    notice: str | None = None,
    errors: FieldErrors | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    departments = await accounts.list_departments(session)
    sessions = await login.list_sessions(session, user)
    return render(
        request,
        "admin/user.html",
        {
            **await admin_context(session, "users"),
            "subject": user,
            "is_self": user.id == admin.id,
            "departments": departments,
            "department": next((d for d in departments if d.id == user.department_id), None),
            "session_count": len(sessions),
            "errors": errors or {},
            "values": values or {"role": user.role, "department_id": str(user.department_id or "")},
            "status_labels": STATUS_LABELS,
            "roles": [r.value for r in Role],
            "notice": notice_text(notice),
        },
        status_code=status_code,
    )


@router.get("/admin/users/{user_id}")
async def user_page(
    request: Request,
    user_id: uuid.UUID,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    user = await accounts.access_user(session, user_id)
    return await _user_page(request, session, admin, user, notice=notice)


@router.post("/admin/users/{user_id}")
async def save_user(
    request: Request,
    user_id: uuid.UUID,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    values = form.values("role", "department_id")
    user = await accounts.access_user(session, user_id)
    data, errors = parse(
        UserUpdate, {"role": values["role"], "department_id": values["department_id"] or None}
    )
    if data is not None:
        try:
            async with session.begin_nested():
                await accounts.do_update_user(session, user_id, data, actor=Actor.user(admin.id))
        except AppError as exc:
            errors = app_errors(exc)
            if exc.code == "self_role_change":
                errors = {"role": exc.detail}
    if errors:
        errors.setdefault(FORM_ERROR, "Check the highlighted fields.")
        await session.refresh(user)
        return await _user_page(
            request, session, admin, user, errors=errors, values=values, status_code=422
        )
    return redirect(request, f"/admin/users/{user_id}?notice=saved")


_ACTIONS = {
    "approve": "approved",
    "reject": "rejected",
    "suspend": "suspended",
    "reinstate": "reinstated",
    "deactivate": "deactivated",
    "reactivate": "reactivated",
    "end-sessions": "sessions",
}


@router.post("/admin/users/{user_id}/{action}")
async def user_action(
    request: Request,
    user_id: uuid.UUID,
    action: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    if action not in _ACTIONS:
        raise BadRequest("Unknown action.", code="unknown_action")
    actor = Actor.user(admin.id)
    back = "/admin/users" if form.get("back") == "list" else f"/admin/users/{user_id}"
    try:
        async with session.begin_nested():
            if action == "approve" or action == "reinstate":
                await accounts.do_set_status(session, user_id, UserStatus.APPROVED, actor=actor)
            elif action == "reject":
                await accounts.do_set_status(session, user_id, UserStatus.REJECTED, actor=actor)
            elif action == "suspend":
                await accounts.do_set_status(session, user_id, UserStatus.SUSPENDED, actor=actor)
            elif action == "deactivate":
                await accounts.do_deactivate(session, user_id, actor=actor)
            elif action == "reactivate":
                await accounts.do_reactivate(session, user_id, actor=actor)
            else:
                target = await accounts.access_user(session, user_id)
                await login.revoke_all_sessions(session, target, actor=actor)
    except AppError as exc:
        if exc.status == 404:
            raise
        user = await accounts.access_user(session, user_id)
        await session.refresh(user)
        return await _user_page(
            request, session, admin, user, errors={FORM_ERROR: exc.detail}, status_code=422
        )
    sep = "&" if "?" in back else "?"
    return redirect(request, f"{back}{sep}notice={_ACTIONS[action]}")


# Departments ---------------------------------------------------------------------------------


async def _departments_page(
    request: Request,
    session: AsyncSession,
    *,
    notice: str | None = None,
    errors: FieldErrors | None = None,
    values: dict[str, str] | None = None,
    editing: Department | None = None,
    status_code: int = 200,
) -> Response:
    departments = await accounts.list_departments(session)
    return render(
        request,
        "admin/departments.html",
        {
            **await admin_context(session, "departments"),
            "departments": departments,
            "errors": errors or {},
            "values": values or {"name": "", "head_email": ""},
            "editing": editing,
            "notice": notice_text(notice),
        },
        status_code=status_code,
    )


@router.get("/admin/departments")
async def departments_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _departments_page(request, session, notice=notice)


def _department_values(form: UserForm) -> tuple[dict[str, str], dict[str, Any]]:
    values = form.values("name", "head_email")
    return values, {"name": values["name"], "head_email": values["head_email"].strip() or None}


@router.post("/admin/departments")
async def create_department(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    values, body = _department_values(form)
    data, errors = parse(DepartmentCreate, body)
    if data is not None:
        try:
            async with session.begin_nested():
                await accounts.do_create_department(
                    session, data, organization_id=tenant.id, actor=Actor.user(admin.id)
                )
        except AppError as exc:
            errors = (
                {"name": exc.detail} if exc.code == "department_name_taken" else app_errors(exc)
            )
    if errors:
        return await _departments_page(
            request, session, errors=errors, values=values, status_code=422
        )
    return redirect(request, "/admin/departments?notice=dept_created")


@router.get("/admin/departments/{department_id}")
async def department_page(
    request: Request,
    department_id: uuid.UUID,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    department = await accounts.access_department(session, department_id)
    return render(
        request,
        "admin/department.html",
        {
            **await admin_context(session, "departments"),
            "department": department,
            "errors": {},
            "values": {"name": department.name, "head_email": department.head_email or ""},
        },
    )


@router.post("/admin/departments/{department_id}")
async def save_department(
    request: Request,
    department_id: uuid.UUID,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    department = await accounts.access_department(session, department_id)
    actor = Actor.user(admin.id)
    active = form.get("active")
    if active in ("1", "0"):  # the activate / deactivate buttons of the list
        await accounts.do_update_department(
            session, department_id, DepartmentUpdate(is_active=active == "1"), actor=actor
        )
        return redirect(request, "/admin/departments?notice=dept_saved")
    values, body = _department_values(form)
    data, errors = parse(DepartmentUpdate, body)
    if data is not None:
        try:
            async with session.begin_nested():
                await accounts.do_update_department(session, department_id, data, actor=actor)
        except AppError as exc:
            errors = (
                {"name": exc.detail} if exc.code == "department_name_taken" else app_errors(exc)
            )
    if errors:
        await session.refresh(department)
        return render(
            request,
            "admin/department.html",
            {
                **await admin_context(session, "departments"),
                "department": department,
                "errors": errors,
                "values": values,
            },
            status_code=422,
        )
    return redirect(request, "/admin/departments?notice=dept_saved")


# Organization settings -----------------------------------------------------------------------

SETTING_FIELDS = (
    "agents_restricted_to_departments",
    "reopen_window_days",
    "comment_edit_window_minutes",
    "brand_color",
    "support_email",
)


async def _settings_page(
    request: Request,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    notice: str | None = None,
    errors: FieldErrors | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    if values is None:
        org = await tenancy.get_organization(session, tenant_id)
        current = OrganizationSettings.model_validate(org.settings or {})
        values = {"name": org.name, "timezone": org.timezone, "slug": org.slug}
        for name in SETTING_FIELDS:
            value = getattr(current, name)
            values[name] = value if isinstance(value, bool) else ("" if value is None else value)
    return render(
        request,
        "admin/settings.html",
        {
            **await admin_context(session, "settings"),
            "values": values,
            "errors": errors or {},
            "timezones": timezones(),
            "notice": notice_text(notice),
        },
        status_code=status_code,
    )


@router.get("/admin/settings")
async def settings_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _settings_page(request, session, tenant.id, notice=notice)


@router.post("/admin/settings")
async def save_settings(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    values: dict[str, Any] = form.values(
        "name", "timezone", "reopen_window_days", "comment_edit_window_minutes"
    )
    values["brand_color"] = form.get("brand_color").strip()
    values["support_email"] = form.get("support_email").strip()
    values["agents_restricted_to_departments"] = form.get("agents_restricted_to_departments") == "1"
    values["slug"] = tenant.slug
    settings, errors = parse(
        OrganizationSettings,
        {
            "agents_restricted_to_departments": values["agents_restricted_to_departments"],
            "reopen_window_days": values["reopen_window_days"] or None,
            "comment_edit_window_minutes": values["comment_edit_window_minutes"] or None,
            "brand_color": values["brand_color"] or None,
            "support_email": values["support_email"] or None,
        },
    )
    update, more = parse(
        OrganizationUpdate, {"name": values["name"], "timezone": values["timezone"]}
    )
    errors.update(more)
    if settings is not None and update is not None:
        update.settings = settings
        try:
            async with session.begin_nested():
                await tenancy.update_organization(
                    session, tenant.id, update, actor=Actor.user(admin.id)
                )
        except AppError as exc:
            errors = app_errors(exc)
    if errors:
        errors.setdefault(FORM_ERROR, "Check the highlighted fields.")
        return await _settings_page(
            request, session, tenant.id, errors=errors, values=values, status_code=422
        )
    return redirect(request, "/admin/settings?notice=settings")


# Audit log -----------------------------------------------------------------------------------


def day_start(value: str, tz: str) -> datetime | None:
    """The start of a `YYYY-MM-DD` day in the admin's zone, or None."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def day_range(
    since: str, until: str, tz: str, errors: FieldErrors
) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the days `since` … `until` (`YYYY-MM-DD`, each optional) in the admin's
    zone; a bad date or an end before the start is noted in `errors`."""
    start = day_start(since, tz) if since else None
    end = day_start(until, tz) if until else None
    if since and start is None:
        errors["since"] = "Enter a date like 2026-11-25."
    if until and end is None:
        errors["until"] = "Enter a date like 2026-11-25."
    if start and end and end < start:
        errors["until"] = "The end is before the start."
    return start, end + timedelta(days=1) if end else None


@router.get("/admin/audit")
async def audit_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    action: Annotated[str, Query(max_length=60)] = "",
    actor: Annotated[str, Query(max_length=254)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    errors: FieldErrors = {}
    prefix = action.strip()
    if prefix and not prefix.endswith(".") and "." not in prefix:
        prefix += "."  # "user" means every user action
    start, end = day_range(since, until, admin.timezone, errors)
    actor_id: uuid.UUID | None = None
    no_match = False
    if actor.strip():
        found = await accounts.find_users_by_emails(session, [actor.strip().lower()])
        if found:
            actor_id = found[0].id
        else:
            no_match = True
    before = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
    rows = []
    next_cursor = None
    if not errors and not no_match:
        rows = await audit.list_entries(
            session,
            actor_id=actor_id,
            action=prefix or None,
            since=start,
            until=end,
            before=before,
            limit=AUDIT_PAGE + 1,
        )
        if len(rows) > AUDIT_PAGE:
            next_cursor = encode_cursor(rows[AUDIT_PAGE - 1].created_at, rows[AUDIT_PAGE - 1].id)
            rows = rows[:AUDIT_PAGE]
    actor_ids = list({r.actor_id for r in rows if r.actor_id})
    actors = {u.id: u for u in await accounts.get_users(session, actor_ids)}
    filters = {"action": action, "actor": actor, "since": since, "until": until}
    context = {
        "entries": rows,
        "actors": actors,
        "filters": filters,
        "next_cursor": next_cursor,
        "errors": errors,
        "no_match": no_match,
    }
    if cursor and is_htmx(request):
        return render(request, "admin/_audit_rows.html", context)
    return render(request, "admin/audit.html", {**await admin_context(session, "audit"), **context})
