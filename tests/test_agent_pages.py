"""The agent workspace's write paths over HTTP, with bad input: saved views (save, rename,
delete; only one's own), rejecting with a reason (required, versioned, agents and admins only),
CSRF on every form, and queue notices that only ever come from fixed keys."""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from servicedesk.models import Organization, Role, User
from servicedesk.web.agent import queue_notice
from tests.conftest import PASSWORD, Session, client_for
from tests.ticket_helpers import API, Desk, desk_fixture  # noqa: F401

MakeUser = Callable[..., Awaitable[User]]


@asynccontextmanager
async def browser_for(app: object, who: Session) -> AsyncIterator[httpx.AsyncClient]:
    """A client with the cookie session of `who` (as the browser has it after signing in)."""
    async with client_for(app) as c:
        r = await c.post(
            f"{API}/auth/login",
            json={"email": who.user.email, "password": PASSWORD},
            headers={"X-Tenant-ID": who.org.slug},
        )
        assert r.status_code == 200, r.text
        assert c.cookies.get("sd_csrf")
        yield c


def page(org: Organization, rest: str) -> str:
    return f"/t/{org.slug}{rest}"


def form(c: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    return {"csrf_token": c.cookies["sd_csrf"], **fields}


def field_error(body: str, field: str) -> str:
    """The text of the error shown next to a field (`f-<field>-error`)."""
    found = re.search(rf'<p class="field-error" id="f-{field}-error">([^<]*)</p>', body)
    assert found, f"no error next to {field}"
    return html.unescape(found.group(1))


async def my_views(desk: Desk, who: Session) -> list[dict[str, Any]]:
    r = await desk.client.get(f"{API}/views", headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def save(c: httpx.AsyncClient, org: Organization, name: str, **state: str) -> httpx.Response:
    return await c.post(page(org, "/agent/views"), data=form(c, view_name=name, **state))


# Saved views ---------------------------------------------------------------------------------


async def test_save_view_keeps_the_filters_and_shows_a_tab(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await save(
            c,
            desk.org,
            "  Urgent hardware ",
            tab="open",
            priority="critical",
            category=desk.it["id"],
            sort="priority",
            q="",
        )
        assert r.status_code == 303, r.text
        (view,) = await my_views(desk, desk.agent)
        assert view["name"] == "Urgent hardware"
        assert view["filters"] == {
            "status": ["in_progress", "new", "on_hold", "open"],
            "priority": ["critical"],
            "category_id": desk.it["id"],
            "sort": "priority",
        }
        assert r.headers["location"].endswith(f"/agent?tab=view-{view['id']}&notice=view_saved")
        r = await c.get(r.headers["location"])
        assert r.status_code == 200
        assert "The view is saved." in r.text
        tab = f'href="/t/{desk.org.slug}/agent?tab=view-{view["id"]}" aria-current="page"'
        assert tab in r.text
        # The filter form shows the view's values.
        assert '<option value="critical" selected>' in r.text
        assert f'<option value="{desk.it["id"]}" selected>' in r.text


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Give the view a name."), ("   ", "Give the view a name."), ("x" * 101, "At most 100")],
)
async def test_save_view_needs_a_good_name(
    app: object, desk: Desk, name: str, message: str
) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await save(c, desk.org, name, tab="unassigned", priority="high", sort="updated")
        assert r.status_code == 422
        assert message in field_error(r.text, "view_name")
        # The queue comes back as it was, with the form open and the input kept.
        assert '<details class="view-tool save-view" open>' in r.text
        assert '<option value="high" selected>' in r.text
        if name.strip():
            assert f'value="{name}"' in r.text
    assert await my_views(desk, desk.agent) == []


async def test_save_view_with_a_duplicate_name(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        assert (await save(c, desk.org, "Mine", tab="mine")).status_code == 303
        r = await save(c, desk.org, "MINE", tab="open")
        assert r.status_code == 422
        assert field_error(r.text, "view_name") == "You have a view with this name."
        assert 'value="MINE"' in r.text
    assert [v["name"] for v in await my_views(desk, desk.agent)] == ["Mine"]
    # Another user may use the same name.
    async with browser_for(app, desk.agent2) as c:
        assert (await save(c, desk.org, "Mine", tab="mine")).status_code == 303


async def test_save_view_with_forged_filters_saves_nothing(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await save(c, desk.org, "Forged", tab="open", status="deleted", assignee="somebody")
        assert r.status_code == 422
        assert "These filters cannot be saved" in r.text
    assert await my_views(desk, desk.agent) == []


async def test_rename_and_delete_own_view(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        await save(c, desk.org, "Old name", tab="open")
        await save(c, desk.org, "Taken", tab="open")
        views = {v["name"]: v["id"] for v in await my_views(desk, desk.agent)}
        view_id = views["Old name"]
        rename = page(desk.org, f"/agent/views/{view_id}")

        r = await c.post(rename, data=form(c, new_name=""))
        assert r.status_code == 422
        assert field_error(r.text, "new_name") == "Give the view a name."
        r = await c.post(rename, data=form(c, new_name="x" * 101))
        assert r.status_code == 422
        assert "At most 100" in field_error(r.text, "new_name")
        r = await c.post(rename, data=form(c, new_name="taken"))
        assert r.status_code == 422
        assert field_error(r.text, "new_name") == "You have a view with this name."
        assert 'value="taken"' in r.text

        r = await c.post(rename, data=form(c, new_name="New name"))
        assert r.status_code == 303, r.text
        assert r.headers["location"].endswith("notice=view_renamed")
        names = {v["name"] for v in await my_views(desk, desk.agent)}
        assert names == {"New name", "Taken"}

        r = await c.post(page(desk.org, f"/agent/views/{view_id}/delete"), data=form(c))
        assert r.status_code == 303
        assert [v["name"] for v in await my_views(desk, desk.agent)] == ["Taken"]
        r = await c.get(page(desk.org, "/agent?notice=view_deleted"))
        assert "The view is deleted." in r.text


async def test_another_users_view_is_a_404(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        await save(c, desk.org, "Ana's", tab="open")
    (view,) = await my_views(desk, desk.agent)
    async with browser_for(app, desk.agent2) as c:
        r = await c.post(page(desk.org, f"/agent/views/{view['id']}"), data=form(c, new_name="X"))
        assert r.status_code == 404
        r = await c.post(page(desk.org, f"/agent/views/{view['id']}/delete"), data=form(c))
        assert r.status_code == 404
        for bad in (str(uuid.uuid4()), "not-an-id"):
            r = await c.post(page(desk.org, f"/agent/views/{bad}/delete"), data=form(c))
            assert r.status_code == 404
        # Another user's view id as a tab is just the default queue.
        r = await c.get(page(desk.org, f"/agent?tab=view-{view['id']}"))
        assert r.status_code == 200 and "Ana&#39;s" not in r.text
    assert [v["name"] for v in await my_views(desk, desk.agent)] == ["Ana's"]


async def test_a_view_of_another_organization_is_a_404(
    app: object, desk: Desk, other_org: Organization, make_user: MakeUser, login: Any
) -> None:
    async with browser_for(app, desk.agent) as c:
        await save(c, desk.org, "Ours", tab="open")
    (view,) = await my_views(desk, desk.agent)
    stranger = await login(await make_user(other_org, Role.AGENT), other_org)
    async with browser_for(app, stranger) as c:
        r = await c.post(page(other_org, f"/agent/views/{view['id']}"), data=form(c, new_name="X"))
        assert r.status_code == 404
        r = await c.post(page(other_org, f"/agent/views/{view['id']}/delete"), data=form(c))
        assert r.status_code == 404
    assert [v["name"] for v in await my_views(desk, desk.agent)] == ["Ours"]


async def test_view_forms_need_the_csrf_token(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        await save(c, desk.org, "Kept", tab="open")
        (view,) = await my_views(desk, desk.agent)
        r = await c.post(page(desk.org, "/agent/views"), data={"view_name": "No token"})
        assert r.status_code == 403
        r = await c.post(
            page(desk.org, f"/agent/views/{view['id']}"),
            data={"new_name": "Y", "csrf_token": "wrong"},
        )
        assert r.status_code == 403
        r = await c.post(page(desk.org, f"/agent/views/{view['id']}/delete"), data={})
        assert r.status_code == 403
    assert [v["name"] for v in await my_views(desk, desk.agent)] == ["Kept"]


# Rejecting -----------------------------------------------------------------------------------


def reject_form(c: httpx.AsyncClient, ticket: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return form(c, version=str(ticket["version"]), **fields)


async def test_reject_with_a_reason(app: object, desk: Desk) -> None:
    ticket = await desk.file()
    async with browser_for(app, desk.agent) as c:
        shown = await c.get(page(desk.org, f"/agent/tickets/{ticket['number']}"))
        assert "Reject ticket" in shown.text
        r = await c.post(
            page(desk.org, f"/agent/tickets/{ticket['number']}/reject"),
            data=reject_form(c, ticket, reason="Duplicate of <b>TKT1</b>"),
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"].endswith("?notice=rejected")
        r = await c.get(r.headers["location"])
        assert "The ticket is rejected." in r.text
        assert "Duplicate of &lt;b&gt;TKT1&lt;/b&gt;" in r.text
        assert "Reject ticket…" not in r.text  # final: nothing more to reject
    now = await desk.get(ticket)
    assert now["status"] == "rejected"
    assert now["rejection_reason"] == "Duplicate of <b>TKT1</b>"


async def test_reject_without_a_reason_changes_nothing(app: object, desk: Desk) -> None:
    ticket = await desk.file()
    url = page(desk.org, f"/agent/tickets/{ticket['number']}/reject")
    async with browser_for(app, desk.agent) as c:
        for reason in ("", "   "):
            r = await c.post(url, data=reject_form(c, ticket, reason=reason))
            assert r.status_code == 422
            assert field_error(r.text, "reason") == "Give a reason: the requester will see it."
        r = await c.post(url, data=reject_form(c, ticket, reason="x" * 2001))
        assert r.status_code == 422
        assert "At most 2,000" in field_error(r.text, "reason")
        assert "x" * 2001 in r.text  # kept
        # htmx gets the panel alone, with the error and the form open.
        htmx = {"HX-Request": "true"}
        r = await c.post(url, data=reject_form(c, ticket, reason=""), headers=htmx)
        assert r.status_code == 422
        assert r.text.lstrip().startswith('<section id="props"')
        assert '<details class="reject-box" open>' in r.text
    now = await desk.get(ticket)
    assert now["status"] == "new" and now["version"] == ticket["version"]


async def test_reject_by_a_manager_or_requester_is_refused(app: object, desk: Desk) -> None:
    ticket = await desk.file()
    url = page(desk.org, f"/agent/tickets/{ticket['number']}/reject")
    async with browser_for(app, desk.manager) as c:
        shown = await c.get(page(desk.org, f"/agent/tickets/{ticket['number']}"))
        assert shown.status_code == 200 and "Reject ticket" not in shown.text
        r = await c.post(url, data=reject_form(c, ticket, reason="No"))
        assert r.status_code == 403
    async with browser_for(app, desk.requester) as c:
        r = await c.post(url, data=reject_form(c, ticket, reason="No"))
        assert r.status_code == 403
        shown = await c.get(page(desk.org, f"/tickets/{ticket['number']}"))
        assert "Reject ticket" not in shown.text
    assert (await desk.get(ticket))["status"] == "new"


async def test_reject_on_a_stale_version_is_a_conflict(app: object, desk: Desk) -> None:
    ticket = await desk.file()
    url = page(desk.org, f"/agent/tickets/{ticket['number']}/reject")
    async with browser_for(app, desk.agent) as c:
        shown = await c.get(page(desk.org, f"/agent/tickets/{ticket['number']}"))
        seen = dict(re.findall(r'name="(seen\.\w+)" value="([^"]*)"', shown.text))
        assert seen["seen.priority"] == ticket["priority"]
        # Ben changes the priority after the page was shown.
        assert (await desk.patch(ticket, desk.agent2, priority="low")).status_code == 200
        r = await c.post(url, data=reject_form(c, ticket, reason="Out of scope", **seen))
        assert r.status_code == 409
        assert "changed priority; the ticket was not rejected" in r.text
        assert 'name="reason" value="Out of scope"' in r.text  # the re-apply form keeps it
        assert (await desk.get(ticket))["status"] == "new"
        # Re-apply on the current version.
        current = await desk.get(ticket)
        r = await c.post(url, data=form(c, version=str(current["version"]), reason="Out of scope"))
        assert r.status_code == 303, r.text
    assert (await desk.get(ticket))["rejection_reason"] == "Out of scope"


async def test_reject_needs_the_csrf_token(app: object, desk: Desk) -> None:
    ticket = await desk.file()
    url = page(desk.org, f"/agent/tickets/{ticket['number']}/reject")
    async with browser_for(app, desk.agent) as c:
        r = await c.post(url, data={"version": str(ticket["version"]), "reason": "No token"})
        assert r.status_code == 403
    assert (await desk.get(ticket))["status"] == "new"


# Notices -------------------------------------------------------------------------------------


async def test_queue_shows_no_text_from_the_link(app: object, desk: Desk) -> None:
    bait = "Your password expired. Sign in again at evil.example"
    async with browser_for(app, desk.agent) as c:
        for params in (
            {"notice": bait},
            {"notice": "bulk", "changed": bait, "of": "2"},
            {"notice": "bulk", "changed": "3", "of": "2"},
            {"notice": "bulk", "changed": "1", "of": "9999"},
        ):
            r = await c.get(page(desk.org, "/agent"), params=params)
            assert r.status_code == 200
            assert "evil.example" not in r.text
            assert 'class="alert alert-info"' not in r.text
        good = {"notice": "bulk", "changed": "2", "of": "3"}
        r = await c.get(page(desk.org, "/agent"), params=good)
        assert "2 of 3 tickets changed." in r.text


def test_queue_notice_keys() -> None:
    assert queue_notice("bulk", {"changed": "2", "of": "5"}) == "2 of 5 tickets changed."
    assert queue_notice("bulk", {"changed": "٣", "of": "5"}) is None  # digits, but not ASCII
    assert queue_notice("bulk", {"changed": "2\n", "of": "5"}) is None
    assert queue_notice("bulk", {"changed": "2"}) is None
    assert queue_notice("bulk_none", {}) == "Select at least one ticket."
    assert queue_notice("__class__", {}) is None
    assert queue_notice(None, {}) is None


async def test_bulk_refusal_comes_back_as_a_key(app: object, desk: Desk) -> None:
    ticket = await desk.file()
    async with browser_for(app, desk.agent) as c:
        r = await c.post(
            page(desk.org, "/agent/bulk"),
            data=form(c, action="priority:low", back="/agent?tab=open"),
        )
        assert r.status_code == 303
        assert r.headers["location"].endswith("/agent?tab=open&notice=bulk_none")
        r = await c.post(
            page(desk.org, "/agent/bulk"),
            data=form(c, action="priority:low", back="/agent", ticket_ids=[ticket["id"]]),
        )
        assert r.headers["location"].endswith("/agent?notice=bulk&changed=1&of=1")
        missing = str(uuid.uuid4())
        r = await c.post(
            page(desk.org, "/agent/bulk"),
            data=form(c, action="priority:high", back="/agent", ticket_ids=[ticket["id"], missing]),
        )
        assert r.headers["location"].endswith("/agent?notice=bulk_not_found&n=1&of=2")
        r = await c.get(r.headers["location"])
        assert "1 of 2 tickets were not found; nothing was changed." in r.text
    assert (await desk.get(ticket))["priority"] == "low"


# Paging and the requester panel --------------------------------------------------------------


async def test_load_more_keeps_the_filters(app: object, desk: Desk) -> None:
    for _ in range(26):
        await desk.file(priority="critical")
    low = await desk.file(priority="low")
    async with browser_for(app, desk.agent) as c:
        r = await c.get(page(desk.org, "/agent"), params={"tab": "open", "priority": "critical"})
        assert r.status_code == 200
        assert r.text.count("data-row ") == 25
        found = re.search(r'class="btn btn-secondary" href="([^"]+)"[^>]*>Load more', r.text)
        assert found, "no Load more link"
        link = html.unescape(found.group(1))
        assert "priority=critical" in link and "tab=open" in link
        r = await c.get(link)
        assert r.text.count("data-row ") == 1
        assert low["number"] not in r.text


async def test_requester_panel_links_their_other_tickets(app: object, desk: Desk) -> None:
    first = await desk.file(subject="Keyboard lost a key")
    second = await desk.file(subject="Headset crackles")
    async with browser_for(app, desk.agent) as c:
        r = await c.get(page(desk.org, f"/agent/tickets/{second['number']}"))
        link = (
            f'<a href="/t/{desk.org.slug}/agent/tickets/{first["number"]}">Keyboard lost a key</a>'
        )
        assert link in r.text


async def test_search_load_more_walks_the_matches_once(app: object, desk: Desk) -> None:
    filed = {
        (await desk.file(subject=f"Docking station flickers {i}"))["number"] for i in range(27)
    }
    async with browser_for(app, desk.agent) as c:
        r = await c.get(page(desk.org, "/agent"), params={"tab": "open", "q": "docking"})
        assert r.status_code == 200 and r.text.count("data-row ") == 25
        found = re.search(r'class="btn btn-secondary" href="([^"]+)"[^>]*>Load more', r.text)
        assert found, "no Load more link"
        link = html.unescape(found.group(1))
        first = set(re.findall(r"TKT\d{10}", r.text)) & filed
        r = await c.get(link)
        assert r.status_code == 200 and r.text.count("data-row ") == 2
        second = set(re.findall(r"TKT\d{10}", r.text)) & filed
        assert first | second == filed and not first & second
        # A cursor whose search rule was altered is refused, not guessed at.
        cursor = re.search(r"cursor=([^&]+)", link)
        assert cursor
        values = json.loads(base64.urlsafe_b64decode(cursor.group(1) + "=" * 4))
        assert values[0] == "exact"
        forged = base64.urlsafe_b64encode(json.dumps(["loose", *values[1:]]).encode()).decode()
        r = await c.get(link.replace(cursor.group(1), forged.rstrip("=")))
        assert r.status_code == 400
