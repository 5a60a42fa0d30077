"""Saved views and rejecting in the browser: an agent saves a filtered queue as a view (a tab
that comes back with the same filters), renames and deletes it (after confirming); an agent
rejects a ticket with a reason and the requester sees the reason; markup as a view name renders
as text."""

from __future__ import annotations

from typing import Any

import pytest

from servicedesk.models import Organization
from tests.conftest import PASSWORD
from tests.ui.conftest import DESKTOP
from tests.ui.helpers import UiApi, injected, path, sign_in

pytestmark = pytest.mark.ui

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script><xss-tag>'


@pytest.fixture
async def laptop(ui: UiApi) -> dict[str, Any]:
    return await ui.category("Laptop problems", description="Broken or slow laptops.")


async def subjects(page: Any) -> list[str]:
    return sorted(await page.locator(".queue-row .ticket-link").all_inner_texts())


async def test_agent_saves_a_filtered_view_and_deletes_it(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    requester = await ui.as_user((await ui.user("requester"))["email"])
    await requester.ticket(laptop, subject="Server room is on fire", priority="critical")
    await requester.ticket(laptop, subject="Mouse pad is worn", priority="low")
    agent = await ui.user("agent", first_name="Ana")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, "/agent?tab=open"))
    assert await subjects(page) == ["Mouse pad is worn", "Server room is on fire"]

    await page.select_option(".queue-filters select[name=priority]", "critical")
    await page.click(".queue-filters button:has-text('Apply')")
    await page.wait_for_url("**priority=critical**")
    assert await subjects(page) == ["Server room is on fire"]

    # No name: the browser's check shows the message next to the field; nothing is posted.
    await page.click("summary:has-text('Save this view')")
    await page.click("button:has-text('Save view')")
    assert await page.inner_text("#f-view_name-error") == "Give the view a name."
    assert await page.get_attribute("#f-view_name", "aria-invalid") == "true"
    await page.fill("#f-view_name", "Fires")
    await page.click("button:has-text('Save view')")
    await page.wait_for_selector("text=The view is saved.")
    tab = page.locator(".tabs a", has_text="Fires")
    assert await tab.get_attribute("aria-current") == "page"
    assert await subjects(page) == ["Server room is on fire"]

    # The same filters after a reload, and after coming back from another tab.
    await page.reload()
    assert await subjects(page) == ["Server room is on fire"]
    await page.click(".tabs >> text=All open")
    await page.wait_for_url("**tab=open")
    assert len(await subjects(page)) == 2
    await page.click(".tabs >> text=Fires")
    await page.wait_for_url("**tab=view-*")
    assert await subjects(page) == ["Server room is on fire"]
    assert await page.input_value(".queue-filters select[name=priority]") == "critical"

    # Rename, then delete: cancelling the confirmation keeps the view.
    await page.click("summary:has-text('Rename or delete this view')")
    await page.fill("#f-new_name", "Fires only")
    await page.click("button:has-text('Rename')")
    await page.wait_for_selector("text=The view is renamed.")
    assert await page.locator(".tabs a", has_text="Fires only").count() == 1
    await page.click("summary:has-text('Rename or delete this view')")
    messages: list[str] = []

    async def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await page.click("button:has-text('Delete view')")
    assert messages and "Fires only" in messages[0]
    assert await page.locator(".tabs a", has_text="Fires only").count() == 1

    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await page.click("button:has-text('Delete view')")
    await page.wait_for_selector("text=The view is deleted.")
    assert await page.locator(".tabs a", has_text="Fires").count() == 0
    assert (await ui.as_user(agent["email"])).token
    assert await (await ui.as_user(agent["email"])).ok("GET", "/views") == []
    assert not page.errors, page.errors


async def test_agent_rejects_with_a_reason_and_the_requester_sees_it(
    page: Any,
    browser: Any,
    live_server: str,
    org: Organization,
    ui: UiApi,
    laptop: dict[str, Any],
) -> None:
    requester_user = await ui.user("requester")
    requester = await ui.as_user(requester_user["email"])
    ticket = await requester.ticket(laptop, subject="Please buy me a yacht")
    agent = await ui.user("agent")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, f"/agent/tickets/{ticket['number']}"))

    await page.click("summary:has-text('Reject ticket')")
    await page.click("#props button:has-text('Reject ticket')")
    assert await page.inner_text("#f-reason-error") == "Give a reason: the requester will see it."
    reason = "Yachts are not IT equipment. " + XSS
    await page.fill("#f-reason", reason)
    await page.click("#props button:has-text('Reject ticket')")
    await page.wait_for_selector("text=The ticket is rejected.")
    assert "Rejected" in await page.inner_text(".ticket-badges")
    assert await page.inner_text("#props .rejection-reason") == reason
    assert await page.locator("#reply-form").count() == 0
    assert await page.locator("#props summary:has-text('Reject ticket')").count() == 0
    assert await injected(page) == []
    assert not page.errors, page.errors

    context = await browser.new_context(viewport=DESKTOP)
    other = await context.new_page()
    try:
        await sign_in(other, live_server, org.slug, requester_user["email"], PASSWORD)
        await other.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
        assert f"Reason: {reason}" in await other.inner_text("main")
        assert await other.locator("text=Reject ticket").count() == 0
        assert await injected(other) == []
    finally:
        await context.close()


async def test_markup_as_a_view_name_renders_as_text(
    page: Any, live_server: str, org: Organization, ui: UiApi
) -> None:
    agent = await ui.user("agent")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, "/agent?tab=unassigned"))
    await page.click("summary:has-text('Save this view')")
    await page.fill("#f-view_name", XSS[:100])
    await page.click("button:has-text('Save view')")
    await page.wait_for_selector("text=The view is saved.")
    assert await page.inner_text(".tabs a[aria-current=page]") == XSS[:100]
    await page.click("summary:has-text('Rename or delete this view')")
    assert await page.input_value("#f-new_name") == XSS[:100]
    assert await injected(page) == []
    # The same name again: the error and the kept input are text too.
    await page.click("summary:has-text('Save this view')")
    await page.fill("#f-view_name", XSS[:100])
    await page.click("button:has-text('Save view')")
    await page.wait_for_selector("#f-view_name-error:has-text('You have a view with this name.')")
    assert await page.input_value("#f-view_name") == XSS[:100]
    assert await injected(page) == []
    assert not page.errors, page.errors
