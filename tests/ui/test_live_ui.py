"""Live updates in the browser (app.js over `/api/v1/ws`): two agents on one ticket see each
other viewing, typing and replying, get the collision warning, and see each other's notes and
replies arrive without a reload; the requester's open page gets the public reply at once and
never the internal note; a property change refreshes an idle panel and only offers a reload
to an agent working in it; a ticket filed through the API appears in the queue."""

from __future__ import annotations

from typing import Any

import pytest

from servicedesk.models import Organization
from tests.ui.conftest import DESKTOP
from tests.ui.helpers import UiApi, path, sign_in

pytestmark = pytest.mark.ui

NOTE = "Recall list: this dock model is affected"
REPLY = "We are sending you a new docking station"
# Faster than the requester page's 15 s fallback poll, which is off while the socket is up.
LIVE_MS = 8_000


@pytest.fixture
async def laptop(ui: UiApi) -> dict[str, Any]:
    return await ui.category("Laptop problems")


async def _patch(ui: UiApi, ticket: dict[str, Any], **changes: Any) -> None:
    current = await ui.ok("GET", f"/tickets/{ticket['id']}")
    body = {"version": current["version"], **changes}
    await ui.ok("PATCH", f"/tickets/{ticket['id']}", json=body)


async def test_two_agents_and_the_requester_follow_one_ticket_live(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    rhea = await ui.user("requester", first_name="Rhea")
    ana = await ui.user("agent", first_name="Ana")
    ben = await ui.user("agent", first_name="Ben")
    requester = await ui.as_user(rhea["email"])
    ticket = await requester.ticket(laptop, subject="Docking station is dead")
    url = path(live_server, org.slug, f"/agent/tickets/{ticket['number']}")

    # Ben (this page) and Ana (another browser) open the ticket.
    await sign_in(page, live_server, org.slug, ben["email"])
    await page.goto(url)
    ana_context = await browser.new_context(viewport=DESKTOP)
    rhea_context = await browser.new_context(viewport=DESKTOP)
    try:
        other = await ana_context.new_page()
        other_errors: list[str] = []
        other.on("pageerror", lambda e: other_errors.append(str(e)))
        await sign_in(other, live_server, org.slug, ana["email"])
        await other.goto(url)
        await page.wait_for_selector("#live-viewers:has-text('Ana Agent is viewing this ticket')")
        await other.wait_for_selector("#live-viewers:has-text('Ben Agent is viewing')")
        assert await page.get_attribute("#live-viewers", "aria-live") == "polite"

        # The requester has her ticket open too (no presence for requesters, but live replies).
        mine = await rhea_context.new_page()
        await sign_in(mine, live_server, org.slug, rhea["email"])
        await mine.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
        await mine.wait_for_selector("body.live-up", state="attached")
        await page.wait_for_selector("#live-viewers:has-text('Rhea Requester')")
        # Agents see the requester typing.
        await mine.click("#f-body")
        await mine.keyboard.type("Any news?")
        await page.wait_for_selector("#live-activity:has-text('Rhea Requester is typing…')")
        await mine.click("h1")

        # Ana writes a reply: Ben sees it; no collision while only one writes.
        await other.click("#f-body")
        await other.keyboard.type("Hello Rhea, ")
        await page.wait_for_selector("#live-activity:has-text('Ana Agent is replying…')")
        assert await page.is_hidden("#live-collision")
        # Ben starts a reply too: both are warned.
        await page.click("#f-body")
        await page.keyboard.type("Hi, could you")
        await page.wait_for_selector(
            "#live-collision:visible:has-text('Ana Agent is also replying to this ticket')"
        )
        await other.wait_for_selector(
            "#live-collision:visible:has-text('Ben Agent is also replying to this ticket')"
        )
        assert await page.get_attribute("#live-collision", "role") == "alert"

        # Ana turns hers into an internal note: the collision ends; the note reaches Ben.
        await other.click("label.mode-note")
        await page.wait_for_selector("#live-collision", state="hidden")
        await other.fill("#f-body", NOTE)
        await other.click("button:has-text('Add internal note')")
        await other.wait_for_selector("text=Internal note added")
        note = page.locator("#comment-list .comment-internal", has_text=NOTE)
        await note.wait_for()
        assert "Internal note" in (await note.text_content() or "")
        assert await page.input_value("#f-body") == "Hi, could you"  # Ben's draft is untouched
        await page.wait_for_selector(".count[data-comment-count]:has-text('1')")

        # Ana's public reply appears for Ben and for the requester, without a reload.
        await other.fill("#f-body", REPLY)
        await other.click("button:has-text('Send reply')")
        await other.wait_for_selector("text=Your reply has been sent")
        public = page.locator("#comment-list .comment:not(.comment-internal)", has_text=REPLY)
        await public.wait_for(timeout=LIVE_MS)
        await mine.locator("#comment-list .comment", has_text=REPLY).wait_for(timeout=LIVE_MS)
        html = await mine.content()
        assert NOTE not in html and "Recall list" not in html and "Internal note" not in html
        assert await mine.locator("#comment-list .comment").count() == 1
        assert await page.locator("#comment-list .comment").count() == 2

        # A property change by someone else refreshes Ben's idle panel and the header badges.
        await page.click("h1")
        await _patch(ui, ticket, priority="high")
        await page.wait_for_selector("#p-priority option[value=high]:checked", state="attached")
        await page.wait_for_selector("#ticket-badges:has-text('High')")
        # While Ben edits the tags, another change only offers a reload.
        await page.fill("#p-tags", "dock")
        await _patch(ui, ticket, priority="critical")
        await page.wait_for_selector("#props-stale:visible")
        assert await page.input_value("#p-priority") == "high"
        assert await page.input_value("#p-tags") == "dock"
        await page.click("button:has-text('Reload panel')")
        await page.wait_for_selector("#p-priority option[value=critical]:checked", state="attached")
        assert await page.is_hidden("#props-stale")
        assert not page.errors, page.errors
        assert not other_errors, other_errors
    finally:
        await ana_context.close()
        await rhea_context.close()


async def test_queue_shows_new_tickets_live(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    requester = await ui.as_user((await ui.user("requester"))["email"])
    agent = await ui.user("agent", first_name="Ana")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, "/agent?tab=unassigned"))
    await page.wait_for_selector("body.live-up", state="attached")
    assert "Queue is clear" in await page.inner_text("main")

    first = await requester.ticket(laptop, subject="Keyboard types twice")
    row = page.locator("[data-row]", has_text="Keyboard types twice")
    await row.wait_for(timeout=LIVE_MS)
    assert first["number"] in await row.inner_text()

    # With a row selected the list stays as it is and offers a refresh instead.
    await page.check(f".row-check[value='{first['id']}']")
    await requester.ticket(laptop, subject="Mouse is missing")
    button = page.locator("[data-live-refresh]")
    await button.wait_for(timeout=LIVE_MS)
    assert await button.inner_text() == "1 ticket changed — Refresh"
    assert await page.locator("[data-row]").count() == 1
    await button.click()
    await page.locator("[data-row]", has_text="Mouse is missing").wait_for()
    assert await page.locator("[data-row]").count() == 2
    assert await page.is_hidden("[data-live-changes]")

    # Taking a ticket with `a`: my own change does not pull the row from under the keyboard.
    await page.keyboard.press("j")
    await page.keyboard.press("a")
    await page.locator("[data-row][aria-current='true'] [data-assignee]", has_text="You").wait_for()
    await page.wait_for_timeout(2500)
    assert await page.locator("[data-row]").count() == 2
    assert not page.errors, page.errors


async def test_server_sent_events_when_websockets_fail(
    browser: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    rhea = await ui.user("requester", first_name="Rhea")
    agent = await ui.user("agent", first_name="Ana")
    ticket = await (await ui.as_user(rhea["email"])).ticket(laptop, subject="No sound")
    agent_api = await ui.as_user(agent["email"])
    contexts = []
    try:
        pages = []
        for who, rest in ((agent, "/agent/tickets/"), (rhea, "/tickets/")):
            context = await browser.new_context(viewport=DESKTOP)
            contexts.append(context)
            # As behind a proxy that drops WebSockets: the client takes the event stream.
            await context.add_init_script("window.WebSocket = undefined;")
            page = await context.new_page()
            await sign_in(page, live_server, org.slug, who["email"])
            await page.goto(path(live_server, org.slug, rest + ticket["number"]))
            await page.wait_for_selector("body.live-up", state="attached")
            pages.append(page)
        await agent_api.ok(
            "POST", f"/tickets/{ticket['id']}/comments", json={"body": NOTE, "is_internal": True}
        )
        await agent_api.ok("POST", f"/tickets/{ticket['id']}/comments", json={"body": REPLY})
        staff, mine = pages
        await staff.locator("#comment-list .comment", has_text=REPLY).wait_for(timeout=LIVE_MS)
        await staff.locator("#comment-list .comment-internal", has_text=NOTE).wait_for()
        await mine.locator("#comment-list .comment", has_text=REPLY).wait_for(timeout=LIVE_MS)
        assert NOTE not in await mine.content()
    finally:
        for context in contexts:
            await context.close()


async def test_requester_page_polls_without_a_live_connection(
    page: Any, context: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    rhea = await ui.user("requester", first_name="Rhea")
    agent = await ui.as_user((await ui.user("agent", first_name="Ana"))["email"])
    ticket = await (await ui.as_user(rhea["email"])).ticket(laptop, subject="No sound")
    await context.add_init_script("window.WebSocket = undefined; window.EventSource = undefined;")
    await sign_in(page, live_server, org.slug, rhea["email"])
    await page.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
    await agent.ok("POST", f"/tickets/{ticket['id']}/comments", json={"body": REPLY})
    # The 15 s poll brings it (the first reply, too: the poll starts at the ticket's filing).
    await page.locator("#comment-list .comment", has_text=REPLY).wait_for(timeout=25_000)
    assert await page.locator("body.live-up").count() == 0
    assert not page.errors, page.errors
