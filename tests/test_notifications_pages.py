"""The notification centre pages (bell, list, read marks, preferences) over real PostgreSQL,
and the links notifications carry: each one opens for its recipient.

Pages are driven with httpx and the browser's cookies (`sd_access` and the double-submit
`sd_csrf`); the fan-out runs `notify_for_event` on the organization's committed outbox events,
as the job handler does.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import select

from servicedesk.core.clock import utc_now
from servicedesk.core.events import envelope
from servicedesk.core.runtime import Runtime
from servicedesk.models import Notification, OutboxEvent, Role, User
from servicedesk.notifications import service
from servicedesk.notifications.repository import NotificationRepository
from tests.conftest import Session, client_for
from tests.ticket_helpers import API, Desk, desk_fixture  # noqa: F401

CSRF = "csrf-value-for-tests"
PageClient = Callable[[Session], Any]


@asynccontextmanager
async def browser(app: object, who: Session, *, csrf: bool = True) -> AsyncIterator[Any]:
    """A client with `who`'s browser cookies, on the organization's `/t/{slug}` pages."""
    cookies = {"sd_access": who.access_token}
    if csrf:
        cookies["sd_csrf"] = CSRF
    async with client_for(app, cookies=cookies) as c:
        c.base_url = httpx.URL(f"http://testserver/t/{who.org.slug}")
        yield c


async def fan_out(rt: Runtime, org_id: uuid.UUID, seen: set[uuid.UUID]) -> None:
    """Run the fan-out for the organization's events not seen yet (like the job handler)."""
    async with rt.db.tenant_session(org_id) as session:
        rows = list(
            (await session.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars()
        )
    for row in rows:
        if row.id in seen:
            continue
        seen.add(row.id)
        async with rt.db.tenant_session(org_id) as session:
            await service.notify_for_event(session, rt, envelope(row))


async def notifications_of(rt: Runtime, user: User) -> list[Notification]:
    async with rt.db.tenant_session(user.organization_id) as session:
        rows = await session.execute(
            select(Notification)
            .where(Notification.user_id == user.id)
            .order_by(Notification.updated_at.desc(), Notification.id.desc())
        )
        return list(rows.scalars())


async def add_notifications(rt: Runtime, user: User, count: int) -> None:
    """`count` notifications, a minute apart (the newest is number count - 1)."""
    start = utc_now() - timedelta(hours=1)
    async with rt.db.tenant_session(user.organization_id) as session:
        repo = NotificationRepository(session)
        for i in range(count):
            at = start + timedelta(minutes=i)
            await repo.add(
                {
                    "organization_id": user.organization_id,
                    "user_id": user.id,
                    "event_id": uuid.uuid4(),
                    "event_type": "comment.created",
                    "title": f"Notice number {i}",
                    "body": f"Body {i}",
                    "url": "/tickets",
                    "dedup_key": f"test:{i}",
                    "created_at": at,
                    "updated_at": at,
                }
            )


async def post_form(c: httpx.AsyncClient, path: str, form: list[tuple[str, str]]) -> Any:
    """A form with repeated names, as a browser posts it."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return await c.post(path, content=urlencode(form), headers=headers)


def bell_count(html: str) -> int:
    found = re.search(r'class="bell-count"[^>]*data-count="(\d+)"', html)
    return int(found.group(1)) if found else 0


def field_error(html: str, field_id: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    return found.group(1) if found else ""


def open_forms(html: str) -> list[str]:
    return re.findall(r'action="/t/[^/]+/notifications/([0-9a-f-]{36})/open"', html)


# Links ---------------------------------------------------------------------------------------


async def test_every_kind_of_notification_links_to_a_page_its_recipient_can_open(
    desk: Desk, app: object, make_user: Any, login: Any
) -> None:
    rt = desk.runtime
    seen: set[uuid.UUID] = set()
    it_agent = await login(
        await make_user(desk.org, Role.AGENT, department_id=uuid.UUID(desk.it_dept["id"])),
        desk.org,
    )
    ticket = await desk.file()  # ticket.created → the IT agent
    assert (await desk.patch(ticket, assignee_id=str(desk.agent2.user.id))).status_code == 200
    await desk.comment(ticket, "Please restart once.", desk.agent)  # → the requester
    await desk.comment(ticket, "Still black.", desk.requester)  # → the assignee
    await desk.comment(
        ticket, f"@{desk.agent.user.email} can you look?", desk.agent2, internal=True
    )  # comment.mentioned → agent
    assert (await desk.move(ticket, "open")).status_code == 200  # → the requester
    r = await desk.client.post(
        f"{API}/auth/register",
        json={
            "first_name": "Nina",
            "last_name": "New",
            "email": f"nina-{secrets.token_hex(3)}@example.com",
            "company_id": f"MA{secrets.randbelow(9000) + 1000}",
            "password": "A-long-enough-pass-42",
        },
        headers={"X-Tenant-ID": desk.org.slug},
    )
    assert r.status_code == 201, r.text  # user.registered → the admin
    await fan_out(rt, desk.org.id, seen)

    kinds: dict[str, list[tuple[Session, str]]] = {}
    for who in (it_agent, desk.agent, desk.agent2, desk.requester, desk.admin):
        for n in await notifications_of(rt, who.user):
            kinds.setdefault(n.event_type, []).append((who, n.url))
    assert set(kinds) == {
        "ticket.created",
        "ticket.assigned",
        "comment.created",
        "comment.mentioned",
        "ticket.status_changed",
        "user.registered",
    }
    number = ticket["number"]
    assert (desk.requester, f"/tickets/{number}") in kinds["comment.created"]
    assert (desk.agent2, f"/agent/tickets/{number}") in kinds["comment.created"]
    assert kinds["ticket.created"] == [(it_agent, f"/agent/tickets/{number}")]
    assert kinds["user.registered"][0][1].startswith("/admin/users/")
    for kind, links in kinds.items():
        for who, link in links:
            async with browser(app, who) as c:
                r = await c.get(link)
                assert r.status_code == 200, (kind, who.user.role, link, r.status_code)
                if kind == "user.registered":
                    assert "Nina New" in r.text
                else:
                    assert number in r.text
    # The links of emails that are not about one thing: the list and the settings.
    for path in (service.NOTIFICATIONS_PATH, service.PREFERENCES_PATH):
        async with browser(app, desk.requester) as c:
            assert (await c.get(path)).status_code == 200


# The list, the bell, read marks --------------------------------------------------------------


async def test_list_bell_pages_and_read_marks(desk: Desk, app: object) -> None:
    rt = desk.runtime
    ticket = await desk.file()
    await desk.comment(ticket, "First answer.", desk.agent)
    await desk.comment(ticket, "Second <b>answer</b>.", desk.agent)
    await fan_out(rt, desk.org.id, set())
    newest, older = await notifications_of(rt, desk.requester.user)

    async with browser(app, desk.requester) as c:
        r = await c.get("/notifications")
        assert r.status_code == 200
        assert "Second &lt;b&gt;answer&lt;/b&gt;." in r.text  # text, never markup
        assert r.text.count("notif notif-unread") == 2
        assert open_forms(r.text) == [str(newest.id), str(older.id)]  # newest first
        assert "Mark all read" in r.text
        # The bell: a link everywhere, with the count swapped in by htmx.
        page = await c.get("/tickets")
        assert 'id="bell"' in page.text and 'hx-get="/t/' in page.text
        bell = await c.get("/notifications/bell")
        assert bell.status_code == 200 and bell_count(bell.text) == 2
        assert "2 unread" in bell.text

        # Opening one marks it read and goes to the ticket.
        r = await c.post(f"/notifications/{newest.id}/open", data={"csrf_token": CSRF})
        assert r.status_code == 303
        assert r.headers["location"] == f"/t/{desk.org.slug}/tickets/{ticket['number']}"
        assert bell_count((await c.get("/notifications/bell")).text) == 1
        r = await c.get("/notifications?show=unread")
        assert open_forms(r.text) == [str(older.id)]

        r = await c.post("/notifications/read-all", data={"csrf_token": CSRF})
        assert r.status_code == 303
        r = await c.get(r.headers["location"].removeprefix(f"/t/{desk.org.slug}"))
        assert "Every notification is marked as read." in r.text
        assert "notif-unread" not in r.text and "Mark all read" not in r.text
        assert bell_count((await c.get("/notifications/bell")).text) == 0
    assert all(n.read_at is not None for n in await notifications_of(rt, desk.requester.user))

    # Without a session the bell answers 204 (a background refresh never redirects).
    async with client_for(app) as c:
        r = await c.get(f"/t/{desk.org.slug}/notifications/bell")
        assert r.status_code == 204
        r = await c.get(f"/t/{desk.org.slug}/notifications")
        assert r.status_code == 303 and "/login" in r.headers["location"]


async def test_keyset_pages_and_tampered_cursors(desk: Desk, app: object) -> None:
    user = desk.requester.user
    await add_notifications(desk.runtime, user, 23)
    async with browser(app, desk.requester) as c:
        first = await c.get("/notifications")
        assert first.status_code == 200
        assert len(open_forms(first.text)) == 20
        assert "Notice number 22" in first.text and "Notice number 2<" not in first.text
        cursor = re.search(r"cursor=([A-Za-z0-9_=-]+)", first.text)
        assert cursor is not None
        second = await c.get(f"/notifications?show=all&cursor={cursor.group(1)}")
        assert second.status_code == 200
        assert len(open_forms(second.text)) == 3
        assert "Notice number 0<" in second.text and "Older notifications" not in second.text
        assert not set(open_forms(first.text)) & set(open_forms(second.text))

        # A cursor that was changed, or that belongs to another list, is a 400 page.
        for bad in ("!!", cursor.group(1)[:-4] + "AAAA", "eyJhIjoxfQ"):
            r = await c.get(f"/notifications?cursor={bad}")
            assert r.status_code == 400, bad
            assert "text/html" in r.headers["content-type"]
        r = await c.get(f"/notifications?show=unread&cursor={cursor.group(1)}")
        assert r.status_code == 400
        assert (await c.get("/notifications?show=everything")).status_code == 422


async def test_another_users_or_organizations_notification_is_not_found(
    desk: Desk, app: object, make_org: Any, make_user: Any, login: Any
) -> None:
    await add_notifications(desk.runtime, desk.requester.user, 1)
    (mine,) = await notifications_of(desk.runtime, desk.requester.user)
    other = await make_org("Elsewhere")
    outsider = await login(await make_user(other, Role.ADMIN), other)
    for who in (desk.requester2, desk.admin, outsider):
        async with browser(app, who) as c:
            r = await c.post(f"/notifications/{mine.id}/open", data={"csrf_token": CSRF})
            assert r.status_code == 404, who.user.role
            assert "text/html" in r.headers["content-type"]
            assert "Notice number 0" not in (await c.get("/notifications")).text
    async with browser(app, desk.requester) as c:
        r = await c.post(f"/notifications/{uuid.uuid4()}/open", data={"csrf_token": CSRF})
        assert r.status_code == 404
    assert (await notifications_of(desk.runtime, desk.requester.user))[0].read_at is None


async def test_posts_without_the_csrf_token_are_refused(desk: Desk, app: object) -> None:
    await add_notifications(desk.runtime, desk.requester.user, 1)
    (mine,) = await notifications_of(desk.runtime, desk.requester.user)
    posts = [
        (f"/notifications/{mine.id}/open", {}),
        ("/notifications/read-all", {}),
        ("/notifications/preferences", {"pref": "ticket.created:email", "timezone": "UTC"}),
    ]
    async with browser(app, desk.requester) as c:
        for path, data in posts:
            r = await c.post(path, data=data)  # the cookie, but not the field
            assert r.status_code == 403, path
            r = await c.post(path, data={**data, "csrf_token": "another-value"})
            assert r.status_code == 403, path
    async with browser(app, desk.requester, csrf=False) as c:
        for path, data in posts:
            r = await c.post(path, data={**data, "csrf_token": CSRF})  # no cookie to match
            assert r.status_code == 403, path
    assert (await notifications_of(desk.runtime, desk.requester.user))[0].read_at is None


# Preferences ---------------------------------------------------------------------------------


def _all_pairs(on: set[str] | None = None) -> list[tuple[str, str]]:
    pairs = [f"{t}:{c}" for t in service.rules.TYPES for c in ("in_app", "email", "push")]
    form = [("pref", p) for p in pairs]
    form += [("on", p) for p in pairs if on is None or p in on]
    return form


async def test_preferences_save_and_come_back(desk: Desk, app: object) -> None:
    h = desk.agent.headers
    async with browser(app, desk.agent) as c:
        r = await c.get("/notifications/preferences")
        assert r.status_code == 200
        # The kinds an agent can get (not registrations: those are for admins), each on three
        # channels; no row means on.
        assert r.text.count('type="checkbox" name="on"') == 15
        assert r.text.count(" checked") == 15
        assert "A registration waits" not in r.text
        form = [p for p in _all_pairs() if p != ("on", "ticket.created:email")]
        form += [
            ("quiet_start", "22:00"),
            ("quiet_end", "07:00"),
            ("timezone", "Europe/Berlin"),
            ("csrf_token", CSRF),
        ]
        r = await post_form(c, "/notifications/preferences", form)
        assert r.status_code == 303, r.text
        r = await c.get("/notifications/preferences?notice=saved")
        assert "Your notification settings have been saved." in r.text
        assert r.text.count(" checked") == 14
        assert 'value="22:00"' in r.text and 'value="07:00"' in r.text
    prefs = (await desk.client.get(f"{API}/notifications/preferences", headers=h)).json()
    assert prefs["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert prefs["timezone"] == "Europe/Berlin"
    off = [(p["event_type"], p["channel"]) for p in prefs["preferences"] if not p["enabled"]]
    assert off == [("ticket.created", "email")]

    # Both times empty: quiet hours off.
    async with browser(app, desk.agent) as c:
        form = [
            *_all_pairs(),
            ("quiet_start", ""),
            ("quiet_end", ""),
            ("timezone", "Europe/Berlin"),
            ("csrf_token", CSRF),
        ]
        r = await post_form(c, "/notifications/preferences", form)
        assert r.status_code == 303
    prefs = (await desk.client.get(f"{API}/notifications/preferences", headers=h)).json()
    assert prefs["quiet_hours"] is None
    assert all(p["enabled"] for p in prefs["preferences"])

    # A requester is offered only what can reach them; an admin everything.
    for who, rows in ((desk.requester, 2), (desk.admin, 6)):
        async with browser(app, who) as c:
            r = await c.get("/notifications/preferences")
            assert r.text.count('type="checkbox" name="on"') == rows * 3, who.user.role


async def test_bad_preference_input_shows_errors_next_to_fields_and_saves_nothing(
    desk: Desk, app: object
) -> None:
    h = desk.agent.headers
    before = (await desk.client.get(f"{API}/notifications/preferences", headers=h)).json()
    cases: list[tuple[list[tuple[str, str]], str, str]] = [
        ([("pref", "ticket.exploded:email"), ("on", "ticket.exploded:email")], "f-preferences", ""),
        ([("pref", "ticket.created:pigeon")], "f-preferences", ""),
        ([("on", "user.registered:sms")], "f-preferences", ""),
        ([("quiet_start", "25:00"), ("quiet_end", "07:00")], "f-quiet_start", "25:00"),
        ([("quiet_start", "22:00"), ("quiet_end", "soon")], "f-quiet_end", "soon"),
        ([("quiet_start", "22:00"), ("quiet_end", "")], "f-quiet_end", "22:00"),
        ([("quiet_start", "08:00"), ("quiet_end", "08:00")], "f-quiet_end", "08:00"),
        ([("timezone", "Mars/Olympus_Mons")], "f-timezone", "Mars/Olympus_Mons"),
        ([("timezone", "")], "f-timezone", ""),
    ]
    async with browser(app, desk.agent) as c:
        for extra, field_id, kept in cases:
            form = [*_all_pairs(on=set()), ("csrf_token", CSRF)]  # everything switched off …
            names = {name for name, _ in extra}
            if "timezone" not in names:
                form.append(("timezone", "Asia/Tokyo"))
            form += extra
            r = await post_form(c, "/notifications/preferences", form)
            assert r.status_code == 422, extra
            assert field_error(r.text, field_id), (extra, field_id)
            assert 'aria-invalid="true"' in r.text or field_id == "f-preferences"
            assert "Nothing was saved" in r.text
            if kept:
                assert f'value="{kept}"' in r.text, extra  # what was typed stays
            assert " checked" not in r.text  # … and the boxes stay as they were posted
    # … yet nothing was saved: not the switches, not the quiet hours, not the zone.
    after = (await desk.client.get(f"{API}/notifications/preferences", headers=h)).json()
    assert after == before
    assert after["timezone"] != "Asia/Tokyo"
