"""The admin console's operations pages: sessions, the sign-in attempt log and failed jobs.

Admins only (`AdminPage`). Routes call `accounts.login` (sessions, attempts), `accounts.service`
(users) and `jobs.service` (dead letters), never SQL. Outcomes come back as fixed notice keys
(`?notice=…`, looked up in `NOTICES`), so no text from the URL ever reaches a page.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response

from servicedesk.accounts import login
from servicedesk.accounts import service as accounts
from servicedesk.accounts.auth import REFRESH_COOKIE
from servicedesk.core.actor import Actor
from servicedesk.core.errors import Conflict, NotFound
from servicedesk.core.pagination import decode_cursor, encode_cursor
from servicedesk.core.runtime import get_runtime
from servicedesk.core.security import hash_token
from servicedesk.jobs import service as jobs
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.web.admin import AdminPage, admin_context, day_range
from servicedesk.web.forms import FieldErrors, UserForm
from servicedesk.web.session import is_htmx, redirect
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

SESSIONS_LIMIT = 200
ATTEMPTS_PAGE = 50
JOBS_PAGE = 50
JOB_ID = Path(ge=1, le=2**63 - 1)

NOTICES: dict[str, tuple[str, str]] = {
    "session_ended": ("success", "The session has ended; its device must sign in again."),
    "sessions_ended": ("success", "All of the user's sessions have ended."),
    "replayed": ("success", "The job is queued again and runs shortly."),
    "discarded": ("success", "The job was discarded."),
    "job_not_failed": ("error", "That job is no longer failed: it was replayed or finished."),
    "job_already_queued": ("error", "Another run of that job is already waiting."),
}
"""A notice key of the URL → (kind, text); unknown keys show nothing."""

REASONS = {
    "ok": "Signed in",
    "ok_totp": "Signed in with a 2FA code",
    "ok_recovery": "Signed in with a recovery code",
    "unknown_email": "Unknown email",
    "bad_password": "Wrong password",
    "locked": "Account locked",
    "bad_2fa_code": "Wrong 2FA code",
    "2fa_code_replayed": "2FA code used twice",
    "account_pending": "Waiting for approval",
    "account_rejected": "Registration rejected",
    "account_suspended": "Account suspended",
    "account_deactivated": "Account deactivated",
}
JOB_STATES = (
    ("failed", "Failed"),
    ("todo", "Waiting"),
    ("doing", "Running"),
)


def _notice(key: str | None) -> dict[str, str] | None:
    found = NOTICES.get(key or "")
    return {"kind": found[0], "text": found[1]} if found else None


# Sessions ------------------------------------------------------------------------------------


def _session_rows(request: Request, pairs: list[tuple[Any, datetime]]) -> list[dict[str, Any]]:
    """Sessions as the table shows them; `current` marks the viewer's own browser."""
    mine = request.cookies.get(REFRESH_COOKIE)
    mine_hash = hash_token(mine) if mine else None
    return [
        {
            "id": link.family_id,
            "user_id": link.user_id,
            "started_at": started,
            "last_used_at": link.issued_at,
            "expires_at": link.expires_at,
            "ip": link.ip,
            "user_agent": link.user_agent,
            "current": link.token_hash == mine_hash,
        }
        for link, started in pairs
    ]


@router.get("/admin/users/{user_id}/sessions")
async def user_sessions_page(
    request: Request,
    user_id: uuid.UUID,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    user = await accounts.access_user(session, user_id)
    rows = _session_rows(request, await login.list_sessions(session, user))
    return render(
        request,
        "admin/user_sessions.html",
        {
            **await admin_context(session, "users"),
            "subject": user,
            "sessions": rows,
            "notice": _notice(notice),
        },
    )


@router.post("/admin/users/{user_id}/sessions/end-all")
async def end_all_sessions(
    request: Request,
    user_id: uuid.UUID,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    user = await accounts.access_user(session, user_id)
    await login.revoke_all_sessions(session, user, actor=Actor.user(admin.id))
    return redirect(request, f"/admin/users/{user_id}/sessions?notice=sessions_ended")


@router.post("/admin/users/{user_id}/sessions/{session_id}/end")
async def end_session(
    request: Request,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    user = await accounts.access_user(session, user_id)
    ended = await login.revoke_session(
        session, user, session_id, actor=Actor.user(admin.id), reason="revoked_by_admin"
    )
    if not ended:
        raise NotFound("No such session: it has ended already or is not this user's.")
    if form.get("back") == "overview":
        return redirect(request, "/admin/sessions?notice=session_ended")
    return redirect(request, f"/admin/users/{user_id}/sessions?notice=session_ended")


@router.get("/admin/sessions")
async def sessions_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    rows = _session_rows(
        request,
        await login.list_organization_sessions(session, tenant.id, limit=SESSIONS_LIMIT + 1),
    )
    more = len(rows) > SESSIONS_LIMIT
    rows = rows[:SESSIONS_LIMIT]
    users = {u.id: u for u in await accounts.get_users(session, list({r["user_id"] for r in rows}))}
    return render(
        request,
        "admin/sessions.html",
        {
            **await admin_context(session, "sessions"),
            "sessions": rows,
            "users": users,
            "more": more,
            "limit": SESSIONS_LIMIT,
            "notice": _notice(notice),
        },
    )


# Sign-in attempts ----------------------------------------------------------------------------


@router.get("/admin/sign-ins")
async def sign_ins_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    email: Annotated[str, Query(max_length=254)] = "",
    outcome: Annotated[str, Query(max_length=10)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    errors: FieldErrors = {}
    if outcome not in ("", "success", "failure"):
        errors["outcome"] = "Choose an outcome from the list."
    start, end = day_range(since, until, admin.timezone, errors)
    before = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
    rows = []
    next_cursor = None
    if not errors:
        rows = await login.list_attempts(
            session,
            email=email.strip() or None,
            success={"success": True, "failure": False}.get(outcome),
            since=start,
            until=end,
            before=before,
            limit=ATTEMPTS_PAGE + 1,
        )
        if len(rows) > ATTEMPTS_PAGE:
            last = rows[ATTEMPTS_PAGE - 1]
            next_cursor = encode_cursor(last.created_at, last.id)
            rows = rows[:ATTEMPTS_PAGE]
    users = {
        u.id: u
        for u in await accounts.get_users(session, list({r.user_id for r in rows if r.user_id}))
    }
    filters = {"email": email, "outcome": outcome, "since": since, "until": until}
    context = {
        "attempts": rows,
        "users": users,
        "filters": filters,
        "filtered": any(filters.values()),
        "reasons": REASONS,
        "errors": errors,
        "more_url": (
            "/admin/sign-ins?" + urlencode({**filters, "cursor": next_cursor})
            if next_cursor
            else None
        ),
    }
    if cursor and is_htmx(request):
        return render(request, "admin/_sign_in_rows.html", context)
    return render(
        request, "admin/sign_ins.html", {**await admin_context(session, "sign-ins"), **context}
    )


# Failed jobs ---------------------------------------------------------------------------------


@router.get("/admin/jobs")
async def jobs_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    handler: Annotated[str, Query(max_length=128)] = "",
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    before = decode_cursor(cursor, int)[0] if cursor else None
    # The queue is no tenant table: the jobs service reads it in a system session and scopes
    # every query to this organization itself (as the API does).
    async with get_runtime(request).db.session() as system:
        rows = await jobs.list_failed(
            system,
            organization_id=tenant.id,
            handler=handler.strip() or None,
            before_id=before,
            limit=JOBS_PAGE + 1,
        )
        counts = await jobs.status_counts(system, organization_id=tenant.id)
    next_cursor = encode_cursor(rows[JOBS_PAGE - 1].id) if len(rows) > JOBS_PAGE else None
    return render(
        request,
        "admin/jobs.html",
        {
            **await admin_context(session, "jobs"),
            "jobs": rows[:JOBS_PAGE],
            "counts": [(label, counts.get(state, 0)) for state, label in JOB_STATES],
            "handler": handler,
            "next_url": (
                "/admin/jobs?" + urlencode({"handler": handler, "cursor": next_cursor})
                if next_cursor
                else None
            ),
            "paged": cursor is not None,
            "notice": _notice(notice),
        },
    )


@router.post("/admin/jobs/{job_id}/{action}")
async def job_action(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    action: Annotated[str, Path(pattern="^(replay|discard)$")],
    job_id: Annotated[int, JOB_ID],
) -> Response:
    actor = Actor.user(admin.id)
    try:
        async with get_runtime(request).db.session() as system:
            if action == "replay":
                await jobs.replay(system, job_id, organization_id=tenant.id, actor=actor)
            else:
                await jobs.discard(system, job_id, organization_id=tenant.id, actor=actor)
    except Conflict as exc:
        key = exc.code if exc.code in NOTICES else "job_not_failed"
        return redirect(request, f"/admin/jobs?notice={key}")
    done = "replayed" if action == "replay" else "discarded"
    return redirect(request, f"/admin/jobs?notice={done}")
