"""The admin console's operations pages over HTTP: sessions, sign-in attempts, failed jobs.

Pages are fetched like a browser does (session cookies from a sign-in, the `/t/{slug}/` prefix,
the CSRF token posted as a form field), on a real PostgreSQL.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from servicedesk.core.jobs import defer_job
from servicedesk.core.runtime import Runtime
from servicedesk.jobs import service as jobs
from servicedesk.models import Organization, Role, User
from servicedesk.web import admin_ops
from tests.conftest import PASSWORD, Session, client_for, tenant

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Session]]
PAGES = ("/admin/sessions", "/admin/sign-ins", "/admin/jobs")


@asynccontextmanager
async def browser(app: object, org: Organization, user: User) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in with the session cookies, like a browser after the sign-in form."""
    async with client_for(app) as c:
        r = await c.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": PASSWORD},
            headers=tenant(org),
        )
        assert r.status_code == 200, r.text
        c.base_url = httpx.URL(f"http://testserver/t/{org.slug}")
        yield c


def csrf(c: httpx.AsyncClient) -> dict[str, str]:
    return {"csrf_token": c.cookies["sd_csrf"]}


async def refreshes(app: object, org: Organization, token: str) -> bool:
    async with client_for(app) as c:
        r = await c.post("/api/v1/auth/refresh", json={"refresh_token": token}, headers=tenant(org))
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


async def failed_job(
    runtime: Runtime,
    org: Organization,
    error: str = "RuntimeError: down",
    name: str | None = None,
) -> int:
    """A dead letter of `org`: queued like any job, then failed after its last attempt."""
    name = name or f"tests.admin_ops.{secrets.token_hex(3)}"
    async with runtime.db.tenant_session(org.id) as session:
        job_id = await defer_job(session, name, organization_id=org.id, args={"n": 1})
    assert job_id is not None
    async with runtime.db.session() as session:
        await session.execute(
            text(
                "UPDATE procrastinate.procrastinate_jobs SET status = 'failed', attempts = 3 "
                "WHERE id = :id"
            ),
            {"id": job_id},
        )
        await session.execute(
            text(
                "INSERT INTO procrastinate.job_errors (job_id, attempts, error, traceback) "
                "VALUES (:id, 3, :error, 'Traceback …')"
            ),
            {"id": job_id, "error": error},
        )
    return job_id


async def drop_job(runtime: Runtime, job_id: int) -> None:
    async with runtime.db.session() as session:
        await session.execute(
            text("DELETE FROM procrastinate.procrastinate_jobs WHERE id = :id"), {"id": job_id}
        )


async def job_status(runtime: Runtime, org: Organization, job_id: int) -> str | None:
    async with runtime.db.session() as session:
        try:
            return (await jobs.get_job(session, job_id, organization_id=org.id)).status
        except Exception:
            return None


# Rendering and who may see ---------------------------------------------------------------------


async def test_pages_render_for_admins_and_are_linked(
    app: object, org: Organization, admin: Session, make_user: MakeUser
) -> None:
    user = await make_user(org)
    async with browser(app, org, admin.user) as c:
        for path in (*PAGES, f"/admin/users/{user.id}/sessions"):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text)
            nav = r.text.split('class="admin-nav"', 1)[1].split("</nav>", 1)[0]
            for linked in PAGES:
                assert f"/t/{org.slug}{linked}" in nav, (path, linked)
        r = await c.get(f"/admin/users/{user.id}")
        assert f"/t/{org.slug}/admin/users/{user.id}/sessions" in r.text
        # The admin's own session is listed, on the overview and on their page.
        r = await c.get("/admin/sessions")
        assert admin.user.email in r.text and "End this session" in r.text
        assert r.text.count("This browser") == 1


@pytest.mark.parametrize("role", [Role.AGENT, Role.REQUESTER, Role.MANAGER])
async def test_others_get_the_403_page(
    app: object,
    runtime: Runtime,
    org: Organization,
    make_user: MakeUser,
    login: Login,
    role: Role,
) -> None:
    someone = await make_user(org, role)
    target = await make_user(org)
    held = await login(target, org)
    job_id = await failed_job(runtime, org)
    try:
        async with browser(app, org, someone) as c:
            for path in (*PAGES, f"/admin/users/{target.id}/sessions"):
                r = await c.get(path)
                assert r.status_code == 403, (path, r.status_code)
                assert "text/html" in r.headers["content-type"]
            for path in (
                f"/admin/users/{target.id}/sessions/end-all",
                f"/admin/jobs/{job_id}/replay",
                f"/admin/jobs/{job_id}/discard",
            ):
                r = await c.post(path, data=csrf(c))
                assert r.status_code == 403, (path, r.status_code)
        assert await refreshes(app, org, held.refresh_token)
        assert await job_status(runtime, org, job_id) == "failed"
    finally:
        await drop_job(runtime, job_id)


# Sessions ----------------------------------------------------------------------------------------


async def test_admin_ends_one_session_then_all(
    app: object, org: Organization, admin: Session, make_user: MakeUser, login: Login
) -> None:
    user = await make_user(org)

    async def families() -> list[str]:
        async with client_for(app) as api:
            r = await api.get(f"/api/v1/users/{user.id}/sessions", headers=admin.headers)
        assert r.status_code == 200, r.text
        return [s["id"] for s in r.json()]

    first = await login(user, org)
    (first_family,) = await families()
    second = await login(user, org)
    assert len(await families()) == 2
    async with browser(app, org, admin.user) as c:
        r = await c.get(f"/admin/users/{user.id}/sessions")
        assert r.text.count('class="session-row"') == 2
        r = await c.post(f"/admin/users/{user.id}/sessions/{first_family}/end", data=csrf(c))
        assert r.status_code == 303
        assert r.headers["location"].endswith(
            f"/admin/users/{user.id}/sessions?notice=session_ended"
        )
        # Its refresh token no longer works; the other session lives on.
        assert not await refreshes(app, org, first.refresh_token)
        assert len(await families()) == 1
        r = await c.get(f"/admin/users/{user.id}/sessions?notice=session_ended")
        assert "The session has ended" in r.text
        assert r.text.count('class="session-row"') == 1
        # The same session again: it is gone.
        r = await c.post(f"/admin/users/{user.id}/sessions/{first_family}/end", data=csrf(c))
        assert r.status_code == 404

        r = await c.post(f"/admin/users/{user.id}/sessions/end-all", data=csrf(c))
        assert r.status_code == 303
        assert r.headers["location"].endswith("?notice=sessions_ended")
        r = await c.get(f"/admin/users/{user.id}/sessions?notice=sessions_ended")
        assert "All of the user" in r.text and "No active sessions" in r.text
    assert not await refreshes(app, org, second.refresh_token)
    assert await families() == []
    async with client_for(app) as api:
        r = await api.get("/api/v1/audit-log", params={"action": "session."}, headers=admin.headers)
    actions = [
        (e["action"], (e["new_values"] or {}).get("revoked_reason")) for e in r.json()["items"]
    ]
    assert ("session.revoked", "revoked_by_admin") in actions
    assert any(a == "session.revoked_all" for a, _ in actions)


async def test_ending_from_the_overview_comes_back_to_it(
    app: object, org: Organization, admin: Session, make_user: MakeUser, login: Login
) -> None:
    user = await make_user(org)
    held = await login(user, org)
    async with client_for(app) as api:
        r = await api.get(f"/api/v1/users/{user.id}/sessions", headers=admin.headers)
    family = r.json()[0]["id"]
    async with browser(app, org, admin.user) as c:
        r = await c.get("/admin/sessions")
        assert user.email in r.text
        r = await c.post(
            f"/admin/users/{user.id}/sessions/{family}/end", data={**csrf(c), "back": "overview"}
        )
        assert r.status_code == 303
        assert r.headers["location"].endswith("/admin/sessions?notice=session_ended")
        r = await c.get("/admin/sessions")
        assert user.email not in r.text
    assert not await refreshes(app, org, held.refresh_token)


async def test_sessions_of_another_organization_are_404(
    app: object,
    org: Organization,
    other_org: Organization,
    admin: Session,
    make_user: MakeUser,
    login: Login,
) -> None:
    stranger = await make_user(other_org)
    theirs = await login(stranger, other_org)
    other_admin = await login(await make_user(other_org, Role.ADMIN), other_org)
    async with client_for(app) as api:
        r = await api.get(f"/api/v1/users/{stranger.id}/sessions", headers=other_admin.headers)
    their_family = r.json()[0]["id"]
    mine = await make_user(org)
    async with browser(app, org, admin.user) as c:
        assert (await c.get(f"/admin/users/{stranger.id}/sessions")).status_code == 404
        for path in (
            f"/admin/users/{stranger.id}/sessions/end-all",
            f"/admin/users/{stranger.id}/sessions/{their_family}/end",
            # Their session under my user's id: still not found.
            f"/admin/users/{mine.id}/sessions/{their_family}/end",
            f"/admin/users/{mine.id}/sessions/{uuid.uuid4()}/end",
        ):
            r = await c.post(path, data=csrf(c))
            assert r.status_code == 404, (path, r.status_code)
        r = await c.get("/admin/sessions")
        assert stranger.email not in r.text
    assert await refreshes(app, org=other_org, token=theirs.refresh_token)


async def test_posts_without_the_csrf_token_are_refused(
    app: object,
    runtime: Runtime,
    org: Organization,
    admin: Session,
    make_user: MakeUser,
    login: Login,
) -> None:
    user = await make_user(org)
    held = await login(user, org)
    job_id = await failed_job(runtime, org)
    try:
        async with browser(app, org, admin.user) as c:
            for path in (
                f"/admin/users/{user.id}/sessions/end-all",
                f"/admin/jobs/{job_id}/replay",
                f"/admin/jobs/{job_id}/discard",
            ):
                for data in ({}, {"csrf_token": "forged"}):
                    r = await c.post(path, data=data)
                    assert r.status_code == 403, (path, data, r.status_code)
        assert await refreshes(app, org, held.refresh_token)
        assert await job_status(runtime, org, job_id) == "failed"
    finally:
        await drop_job(runtime, job_id)


# Sign-in attempts --------------------------------------------------------------------------------


async def test_sign_ins_list_and_filter(
    app: object, org: Organization, admin: Session, make_user: MakeUser
) -> None:
    user = await make_user(org)
    async with client_for(app) as c:
        r = await c.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": "wrong-password-1"},
            headers=tenant(org),
        )
        assert r.status_code == 401
    async with browser(app, org, admin.user) as c:
        r = await c.get("/admin/sign-ins")
        assert r.status_code == 200
        assert user.email in r.text and "Wrong password" in r.text
        assert admin.user.email in r.text  # the admin's own successful sign-in
        r = await c.get("/admin/sign-ins", params={"outcome": "failure"})
        assert user.email in r.text and admin.user.email not in r.text.split("<tbody", 1)[1]
        r = await c.get("/admin/sign-ins", params={"outcome": "success", "email": user.email})
        assert "No sign-in attempts" in r.text
        r = await c.get("/admin/sign-ins", params={"email": user.email.upper()})
        assert r.text.count('class="sign-in-row is-failed"') == 1
        # A range in the future has nothing; today (in the admin's zone) has the attempt.
        r = await c.get("/admin/sign-ins", params={"since": "2999-01-01"})
        assert "No sign-in attempts" in r.text
        r = await c.get("/admin/sign-ins", params={"since": "2000-01-01", "until": "2999-12-31"})
        assert user.email in r.text
        # Markup in an attempted email is text.
        async with client_for(app) as anon:
            await anon.post(
                "/api/v1/auth/login",
                json={"email": "<b>x</b>@example.com", "password": "x"},
                headers=tenant(org),
            )
        r = await c.get("/admin/sign-ins")
        assert "<b>x</b>@example.com" not in r.text


async def test_sign_in_times_and_days_are_in_the_admins_zone(
    app: object, org: Organization, admin: Session, make_user: MakeUser
) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its day is rarely the UTC day
    async with client_for(app) as api:
        r = await api.patch("/api/v1/me", json={"timezone": zone}, headers=admin.headers)
        assert r.status_code == 200, r.text
    user = await make_user(org)
    today = datetime.now(ZoneInfo(zone)).date()
    async with browser(app, org, admin.user) as c:
        await c.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": "wrong-password-1"},
            headers=tenant(org),
        )
        r = await c.get("/admin/sign-ins", params={"email": user.email})
        assert f"({zone})" in r.text  # the <time> title names the viewer's zone
        for since, until, found in (
            (today, today, True),
            (today - timedelta(days=1), today - timedelta(days=1), False),
            (today + timedelta(days=1), "", False),
        ):
            r = await c.get(
                "/admin/sign-ins",
                params={"email": user.email, "since": str(since), "until": str(until)},
            )
            assert (r.text.count('class="sign-in-row') == 1) is found, (since, until)


async def test_sign_ins_load_more_keeps_the_filters(
    app: object,
    org: Organization,
    admin: Session,
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_ops, "ATTEMPTS_PAGE", 2)
    user = await make_user(org)
    async with client_for(app) as anon:
        for _ in range(3):
            await anon.post(
                "/api/v1/auth/login",
                json={"email": user.email, "password": "wrong-password-1"},
                headers=tenant(org),
            )
    async with browser(app, org, admin.user) as c:
        r = await c.get("/admin/sign-ins", params={"email": user.email})
        assert r.text.count('class="sign-in-row') == 2
        more = re.search(r'hx-get="([^"]+/admin/sign-ins[^"]*)"', r.text)  # not the bell's
        assert more is not None
        link = more.group(1).replace("&amp;", "&").split(f"/t/{org.slug}", 1)[1]
        assert "email=" in link and "cursor=" in link
        r = await c.get(link, headers={"HX-Request": "true"})
        assert r.status_code == 200
        assert "<html" not in r.text  # only the rows
        assert r.text.count('class="sign-in-row') == 1 and user.email in r.text


async def test_bad_filter_values_are_a_message_or_a_4xx_never_a_500(
    app: object, org: Organization, admin: Session
) -> None:
    async with browser(app, org, admin.user) as c:
        # The sign-in log and the audit log read their day ranges alike (admin.day_range).
        for page in ("/admin/sign-ins", "/admin/audit"):
            r = await c.get(page, params={"since": "2026-13-45"})
            assert r.status_code == 200 and "Enter a date like" in r.text, page
            r = await c.get(page, params={"until": "yesterday"})
            assert r.status_code == 200 and "Enter a date like" in r.text, page
            r = await c.get(page, params={"since": "2026-11-25", "until": "2026-11-01"})
            assert r.status_code == 200 and "The end is before the start" in r.text, page
            r = await c.get(page, params={"since": "2026-11-01", "until": "2026-11-25"})
            assert r.status_code == 200 and "Enter a date like" not in r.text, page
            assert "The end is before the start" not in r.text, page
        r = await c.get("/admin/sign-ins", params={"outcome": "maybe"})
        assert r.status_code == 200 and "Choose an outcome" in r.text
        r = await c.get("/admin/sign-ins", params={"email": "a" * 300 + "@example.com"})
        assert r.status_code == 422
        for path in ("/admin/sign-ins", "/admin/jobs"):
            r = await c.get(path, params={"cursor": "not-a-cursor"})
            assert r.status_code == 400, (path, r.status_code)
            assert "text/html" in r.headers["content-type"]
        r = await c.get("/admin/jobs", params={"handler": "x" * 200})
        assert r.status_code == 422
        # Notices are fixed keys: anything else shows nothing.
        r = await c.get("/admin/jobs", params={"notice": "<script>alert(1)</script>"})
        assert r.status_code == 200 and "alert(1)" not in r.text
        for path in ("/admin/jobs/99999999999999999999/replay", "/admin/jobs/0/discard"):
            r = await c.post(path, data=csrf(c))
            assert r.status_code == 422, (path, r.status_code)
        r = await c.post("/admin/jobs/123/explode", data=csrf(c))
        assert r.status_code in (404, 405, 422)
        r = await c.post("/admin/jobs/9223372036854775000/replay", data=csrf(c))
        assert r.status_code == 404


# Failed jobs -------------------------------------------------------------------------------------


async def test_failed_jobs_replay_and_discard(
    app: object,
    runtime: Runtime,
    org: Organization,
    admin: Session,
) -> None:
    replayed = await failed_job(runtime, org, "RuntimeError: smtp down")
    doomed = await failed_job(runtime, org, "ValueError: <b>bad</b>")
    try:
        async with browser(app, org, admin.user) as c:
            r = await c.get("/admin/jobs")
            assert f'id="job-{replayed}"' in r.text and f'id="job-{doomed}"' in r.text
            assert "RuntimeError: smtp down" in r.text
            assert "&lt;b&gt;bad&lt;/b&gt;" in r.text  # the error is text
            counts = re.search(r'class="job-count">(\d+)</span> Failed', r.text)
            assert counts is not None and int(counts.group(1)) >= 2

            r = await c.post(f"/admin/jobs/{replayed}/replay", data=csrf(c))
            assert r.status_code == 303
            assert r.headers["location"].endswith("/admin/jobs?notice=replayed")
            assert await job_status(runtime, org, replayed) == "todo"
            r = await c.get("/admin/jobs?notice=replayed")
            assert "queued again" in r.text and f'id="job-{replayed}"' not in r.text
            # Replaying it again: it is no longer failed; a fixed notice says so.
            r = await c.post(f"/admin/jobs/{replayed}/replay", data=csrf(c))
            assert r.headers["location"].endswith("/admin/jobs?notice=job_not_failed")

            r = await c.post(f"/admin/jobs/{doomed}/discard", data=csrf(c))
            assert r.headers["location"].endswith("/admin/jobs?notice=discarded")
            assert await job_status(runtime, org, doomed) is None
            r = await c.post(f"/admin/jobs/{doomed}/discard", data=csrf(c))
            assert r.status_code == 404
        async with client_for(app) as api:
            r = await api.get("/api/v1/audit-log", params={"action": "job."}, headers=admin.headers)
        audited = {(e["action"], e["record_id"]) for e in r.json()["items"]}
        assert audited == {("job.replayed", str(replayed)), ("job.discarded", str(doomed))}
    finally:
        await drop_job(runtime, replayed)
        await drop_job(runtime, doomed)


async def test_jobs_of_another_organization_are_404(
    app: object,
    runtime: Runtime,
    org: Organization,
    other_org: Organization,
    admin: Session,
) -> None:
    theirs = await failed_job(runtime, other_org)
    try:
        async with browser(app, org, admin.user) as c:
            r = await c.get("/admin/jobs")
            assert f'id="job-{theirs}"' not in r.text
            for action in ("replay", "discard"):
                r = await c.post(f"/admin/jobs/{theirs}/{action}", data=csrf(c))
                assert r.status_code == 404, (action, r.status_code)
        assert await job_status(runtime, other_org, theirs) == "failed"
    finally:
        await drop_job(runtime, theirs)


async def test_failed_jobs_pages_and_filter(
    app: object,
    runtime: Runtime,
    org: Organization,
    admin: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_ops, "JOBS_PAGE", 1)
    name = f"tests.admin_ops.paged.{secrets.token_hex(3)}"
    older = await failed_job(runtime, org, name=name)
    newer = await failed_job(runtime, org, name=name)
    other = await failed_job(runtime, org)
    try:
        async with browser(app, org, admin.user) as c:
            r = await c.get("/admin/jobs", params={"handler": name})
            assert f'id="job-{newer}"' in r.text and f'id="job-{older}"' not in r.text
            more = re.search(r'href="([^"]+)">Older jobs', r.text)
            assert more is not None
            r = await c.get(more.group(1).replace("&amp;", "&").split(f"/t/{org.slug}", 1)[1])
            assert f'id="job-{older}"' in r.text and f'id="job-{newer}"' not in r.text
            assert f'id="job-{other}"' not in r.text  # the filter is kept
            assert "Older jobs" not in r.text and "First page" in r.text
    finally:
        for job_id in (older, newer, other):
            await drop_job(runtime, job_id)
