"""The agent workspace in the browser: a requester's new ticket found in Unassigned, taken with
the `a` key, an internal note and a public reply (the requester sees the reply, never the
note); two agents editing one ticket get the stale-version flow; markup typed into the note,
reply, tags and search renders as text; bulk actions; requesters get the 403 page; screenshots
of the queue and the ticket (desktop, phone, dark)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from servicedesk.models import Organization
from tests.ui.conftest import DESKTOP, PHONE
from tests.ui.helpers import ONE_PIXEL_PNG, UiApi, injected, path, sign_in

pytestmark = pytest.mark.ui

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script><xss-tag>'


@pytest.fixture
async def laptop(ui: UiApi) -> dict[str, Any]:
    return await ui.category("Laptop problems", description="Broken or slow laptops.")


async def test_agent_takes_a_new_ticket_notes_and_replies(
    page: Any,
    browser: Any,
    live_server: str,
    org: Organization,
    ui: UiApi,
    laptop: dict[str, Any],
) -> None:
    requester_user = await ui.user("requester", first_name="Rhea")
    agent_user = await ui.user("agent", first_name="Ana")
    requester = await ui.as_user(requester_user["email"])
    ticket = await requester.ticket(laptop, subject="Docking station is dead")

    await sign_in(page, live_server, org.slug, agent_user["email"])
    await page.click("nav.mainnav >> text=Queue")
    await page.wait_for_url("**/agent")
    assert "Nothing assigned to you" in await page.inner_text("main")
    await page.click(".tabs >> text=Unassigned")
    row = page.locator("[data-row]", has_text="Docking station is dead")
    await row.wait_for()
    # Keyboard: j selects the first row, a assigns it to me.
    await page.keyboard.press("j")
    assert await row.get_attribute("aria-current") == "true"
    await page.keyboard.press("a")
    await row.locator("[data-assignee]", has_text="You").wait_for()
    await page.wait_for_selector("#live:has-text('Assigned to you')", state="attached")
    await page.click(".tabs >> text=My open")
    await row.wait_for()
    await page.keyboard.press("j")
    await page.keyboard.press("o")
    await page.wait_for_url(f"**/agent/tickets/{ticket['number']}")

    # An internal note (with markup in it), then a public reply with a file.
    await page.keyboard.press("r")
    assert await page.evaluate("document.activeElement.id") == "f-body"
    await page.click("label.mode-note")
    assert await page.is_visible("text=Only staff see internal notes")
    await page.fill("#f-body", "INTERNAL: dock is on the recall list " + XSS)
    await page.click("button:has-text('Add internal note')")
    await page.wait_for_selector("text=Internal note added")
    note = page.locator(".comment-internal")
    assert "Internal note" in (await note.text_content() or "")
    assert "<xss-tag>" in await note.inner_text()

    await page.click("label.mode-reply")
    await page.fill("#f-body", "Please try another **USB-C** port. " + XSS)
    await page.set_input_files(
        "#f-files", files=[{"name": "howto.png", "mimeType": "image/png", "buffer": ONE_PIXEL_PNG}]
    )
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector("text=Your reply has been sent")
    public = page.locator(".comment:not(.comment-internal)")
    assert await public.locator(".prose strong").inner_text() == "USB-C"
    assert "howto.png" in await page.inner_text(".ticket-aside")

    # Tags with markup, through the properties panel (htmx).
    await page.fill("#p-tags", "dock, " + XSS[:40])
    await page.press("#p-tags", "Enter")
    await page.wait_for_selector("#props .alert-error >> text=not allowed")
    assert "<img" in await page.inner_text("#props .alert-error")
    assert await injected(page) == []
    await page.fill("#p-tags", "dock, Recall")
    await page.press("#p-tags", "Enter")
    await page.wait_for_selector("#props .tag >> text=recall")
    assert await page.locator("#props .tag").count() == 2
    await page.click(".tabs >> text=History")
    history = await page.inner_text(".history")
    assert "added an internal note" in history and "Assignee: none → Ana" in history
    assert await injected(page) == []
    assert not page.errors, page.errors

    # The requester sees the reply and its file, never the note.
    context = await browser.new_context(viewport=DESKTOP)
    other = await context.new_page()
    try:
        await sign_in(other, live_server, org.slug, requester_user["email"])
        await other.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
        await other.wait_for_selector("#comment-list .comment")
        html = await other.content()
        assert "USB-C" in html and "howto.png" in html
        assert "INTERNAL" not in html and "recall list" not in html
        assert await injected(other) == []
    finally:
        await context.close()


async def test_stale_edit_shows_the_change_and_reapplies(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    requester = await ui.as_user((await ui.user("requester"))["email"])
    ticket = await requester.ticket(laptop, subject="Laptop fan is loud")
    ana = await ui.user("agent", first_name="Ana")
    ben = await ui.user("agent", first_name="Ben")
    url = path(live_server, org.slug, f"/agent/tickets/{ticket['number']}")

    await sign_in(page, live_server, org.slug, ben["email"])
    await page.goto(url)
    # Ben is working in the panel, so the live update leaves it alone (it offers a reload).
    await page.focus("#p-status")
    context = await browser.new_context(viewport=DESKTOP)
    other = await context.new_page()
    try:
        await sign_in(other, live_server, org.slug, ana["email"])
        await other.goto(url)
        await other.select_option("#p-priority", "high")
        await other.wait_for_selector("#props .version-note >> text=Version 2")
    finally:
        await context.close()

    # Ben's page still shows version 1: his status change is refused, the panel says why.
    await page.select_option("#p-status", "in_progress")
    alert = page.locator("#props .conflict")
    await alert.wait_for()
    text = await alert.inner_text()
    assert "Ana changed priority; your change was not applied — re-apply?" in text
    assert "Priority is High" in text
    assert "status → In progress" in text
    assert await page.input_value("#p-priority") == "high"
    # Focus moves to the conflict box once htmx has settled the swap (a moment after it shows).
    await page.wait_for_function("() => document.activeElement.classList.contains('conflict')")
    await page.click("button:has-text('Re-apply my change')")
    await page.wait_for_selector("#props .version-note >> text=Version 3")
    assert await page.locator("#props .conflict").count() == 0
    current = await ui.ok("GET", f"/tickets/{ticket['id']}")
    assert (current["status"], current["priority"]) == ("in_progress", "high")
    assert not page.errors, page.errors


async def test_search_highlights_and_bulk_actions(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    requester = await ui.as_user((await ui.user("requester"))["email"])
    first = await requester.ticket(
        laptop,
        subject="Printer <b>jams</b> on floor 3",
        description="The printer jams on every page. " + XSS,
    )
    second = await requester.ticket(laptop, subject="Monitor cable is missing")
    agent = await ui.user("agent")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, "/agent?tab=open"))
    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.id") == "q"
    await page.keyboard.type("printer")
    await page.keyboard.press("Enter")
    headline = page.locator(".headline")
    await headline.wait_for()
    assert await headline.locator("mark").count() >= 1
    assert "<b>jams</b>" in await page.inner_text(".queue-row .ticket-link")
    assert await page.locator(".headline b").count() == 0
    assert await injected(page) == []

    await page.goto(path(live_server, org.slug, "/agent?tab=open"))
    for t in (first, second):
        await page.check(f".row-check[value='{t['id']}']")
    assert await page.inner_text("[data-selected-count]") == "2 selected"
    await page.select_option("#bulk-action", "priority:critical")
    await page.click("button:has-text('Apply to selected')")
    await page.wait_for_selector("text=2 of 2 tickets changed.")
    for t in (first, second):
        assert (await ui.ok("GET", f"/tickets/{t['id']}"))["priority"] == "critical"
    assert not page.errors, page.errors


async def test_requesters_get_the_403_page(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    user = await ui.user("requester")
    ticket = await (await ui.as_user(user["email"])).ticket(laptop)
    await sign_in(page, live_server, org.slug, user["email"])
    assert await page.locator("nav.mainnav >> text=Queue").count() == 0
    for url in ("/agent", f"/agent/tickets/{ticket['number']}"):
        response = await page.goto(path(live_server, org.slug, url))
        assert response.status == 403
        assert "support team" in await page.inner_text("main")


async def test_agent_screenshots(
    browser: Any, live_server: str, org: Organization, ui: UiApi, tmp_path: Path
) -> None:
    out = DOCS if os.environ.get("SERVICEDESK_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    it = await ui.category("IT Support", description="Laptops, accounts, network.", fields=[])
    requester = await ui.as_user(
        (await ui.user("requester", first_name="Eli", last_name="Employee"))["email"]
    )
    agent_user = await ui.user("agent", first_name="Ana", last_name="Agent")
    agent = await ui.as_user(agent_user["email"])
    me = await agent.ok("GET", "/me")
    main = await requester.ticket(
        it,
        subject="Laptop will not start after the update",
        description="Since this morning's update the laptop shows the logo, then a black "
        "screen.\n\n- Tried a restart\n- Tried another charger",
        custom_fields={},
        priority="critical",
    )
    comments = f"/tickets/{main['id']}/comments"
    await agent.ok("PATCH", f"/tickets/{main['id']}", json={"assignee_id": me["id"], "version": 1})
    await agent.ok(
        "POST",
        comments,
        json={"body": "Please hold the power button for **15 seconds**, then start again."},
    )
    await agent.ok(
        "POST", comments, json={"body": "Known driver issue, see KB-12.", "is_internal": True}
    )
    await requester.ok("POST", comments, json={"body": "It boots now, but the screen flickers."})
    for subject, priority in (
        ("VPN disconnects every few minutes", "high"),
        ("Access to the finance shared drive", "low"),
        ("Two monitors for the new analyst", "medium"),
        ("Printer on floor 3 jams", "medium"),
    ):
        await requester.ticket(it, subject=subject, custom_fields={}, priority=priority)

    for scheme, size, viewport in (
        ("light", "desktop", DESKTOP),
        ("light", "phone", PHONE),
        ("dark", "desktop", DESKTOP),
    ):
        suffix = size + ("-dark" if scheme == "dark" else "")
        context = await browser.new_context(
            viewport=viewport, color_scheme=scheme, locale="en-GB", timezone_id="Europe/Berlin"
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        try:
            await sign_in(page, live_server, org.slug, agent_user["email"])
            await page.goto(path(live_server, org.slug, "/agent?tab=open"))
            await page.keyboard.press("j")
            await page.keyboard.press("j")
            await page.screenshot(path=str(out / f"agent-queue-{suffix}.png"), full_page=True)
            await page.goto(path(live_server, org.slug, f"/agent/tickets/{main['number']}"))
            await page.click("label.mode-note")
            await page.fill("#f-body", "Driver 5.2 fixes it; pushing it tonight.")
            await page.screenshot(path=str(out / f"agent-ticket-{suffix}.png"), full_page=True)
            assert errors == [], errors
        finally:
            await context.close()


async def test_load_more_appends_the_next_page(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    requester = await ui.as_user((await ui.user("requester"))["email"])
    for n in range(27):
        await requester.ticket(laptop, subject=f"Numbered request {n:02d}", priority="high")
    agent = await ui.user("agent")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, "/agent?tab=open&sort=priority"))
    assert await page.locator("[data-row]").count() == 25
    await page.click("text=Load more")
    await page.locator("[data-row]").nth(26).wait_for()
    subjects = await page.locator("[data-row] .ticket-link").all_inner_texts()
    assert len(subjects) == 27 and len(set(subjects)) == 27
    assert await page.locator("text=Load more").count() == 0
    assert not page.errors, page.errors
