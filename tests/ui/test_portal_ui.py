"""The requester portal in the browser: filing a ticket in a category with its own fields and
a file; errors next to the field (browser and server); replies; internal notes never shown;
close and reopen; another requester's ticket is a 404 page."""

from __future__ import annotations

from typing import Any

import pytest

from servicedesk.models import Organization
from tests.ui.helpers import ONE_PIXEL_PNG, UiApi, path, sign_in

pytestmark = pytest.mark.ui


@pytest.fixture
async def laptop(ui: UiApi) -> dict[str, Any]:
    return await ui.category("Laptop problems", description="Broken or slow laptops.")


async def test_file_a_ticket_with_custom_fields_and_a_file(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    user = await ui.user("requester")
    await sign_in(page, live_server, org.slug, user["email"])
    await page.click("nav.mainnav >> text=New ticket")
    await page.select_option("#f-category", label="Laptop problems")
    # htmx brings the category's own fields.
    await page.wait_for_selector("#f-cf-asset_tag")
    assert await page.inner_text("#category-fields .category-hint") == "Broken or slow laptops."

    # Browser check: nothing is sent, the messages sit next to the fields.
    await page.fill("#f-subject", "Fan")
    await page.click("button:has-text('File ticket')")
    assert await page.inner_text("#f-cf-asset_tag-error") == "This field is required."
    assert await page.inner_text("#f-cf-issue-error") == "Choose an option."
    assert await page.get_attribute("#f-subject", "aria-invalid") == "true"
    assert await page.evaluate("document.activeElement.id") == "f-cf-asset_tag"

    await page.fill("#f-cf-asset_tag", "LT-0042")
    await page.select_option("#f-cf-issue", "Hardware")
    await page.fill("#f-subject", "Fan is very loud")
    await page.fill("#f-description", "The fan runs at full speed even when idle.")
    await page.check("#f-cf-under_warranty")
    await page.fill("#f-cf-since", "2026-11-02")
    # Server check: a client that skips the browser's checks gets the service's answer, next
    # to the field.
    await page.evaluate("document.getElementById('f-cf-units').removeAttribute('max')")
    await page.fill("#f-cf-units", "900")
    await page.set_input_files(
        "#f-files", files=[{"name": "fan.png", "mimeType": "image/png", "buffer": ONE_PIXEL_PNG}]
    )
    await page.click("button:has-text('File ticket')")
    await page.wait_for_selector("#f-cf-units-error:not([hidden])")
    assert "at most 50" in await page.inner_text("#f-cf-units-error")
    assert "Units affected" in await page.inner_text(".error-summary")
    assert await page.input_value("#f-cf-asset_tag") == "LT-0042"  # the rest is kept
    assert await page.is_checked("#f-cf-under_warranty")

    await page.fill("#f-cf-units", "3")
    await page.set_input_files(
        "#f-files", files=[{"name": "fan.png", "mimeType": "image/png", "buffer": ONE_PIXEL_PNG}]
    )
    await page.click("button:has-text('File ticket')")
    await page.wait_for_url("**/tickets/TKT*?notice=created")
    main = await page.inner_text("main")
    assert "Your ticket has been filed" in main
    assert "Fan is very loud" in main
    for text in ("LT-0042", "Hardware", "Units affected", "3", "Yes", "2026-11-02"):
        assert text in main, text
    link = page.locator(".attachments a", has_text="fan.png")
    download = await page.request.get(live_server + (await link.get_attribute("href") or ""))
    assert download.status == 200 and await download.body() == ONE_PIXEL_PNG

    await page.click("text=My tickets")
    row = page.locator(".ticket-table tbody tr", has_text="Fan is very loud")
    assert "New" in await row.inner_text()
    assert not page.errors, page.errors


async def test_files_are_checked_before_upload(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    user = await ui.user("requester")
    await sign_in(page, live_server, org.slug, user["email"])
    await page.goto(path(live_server, org.slug, "/tickets/new"))
    await page.set_input_files(
        "#f-files",
        files=[{"name": "setup.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}],
    )
    assert "can't be attached" in await page.inner_text("#f-files-error")
    big = b"x" * (10 * 1024 * 1024 + 1)
    await page.set_input_files(
        "#f-files", files=[{"name": "huge.txt", "mimeType": "text/plain", "buffer": big}]
    )
    assert "the limit is 10 MB" in await page.inner_text("#f-files-error")
    assert "huge.txt" in await page.inner_text("[data-file-list]")
    await page.set_input_files(
        "#f-files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"ok"}]
    )
    assert await page.is_hidden("#f-files-error")


async def test_conversation_reply_and_internal_notes_never_shown(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    user = await ui.user("requester", first_name="Rhea")
    agent = await ui.as_user((await ui.user("agent", first_name="Ana"))["email"])
    requester = await ui.as_user(user["email"])
    ticket = await requester.ticket(laptop, subject="Docking station is dead")
    base = f"/tickets/{ticket['id']}/comments"
    await agent.ok("POST", base, json={"body": "Could you try another **USB-C** port?"})
    await agent.ok(
        "POST", base, json={"body": "INTERNAL: the dock is on the recall list", "is_internal": True}
    )

    await sign_in(page, live_server, org.slug, user["email"])
    await page.click(f"text={ticket['subject']}")
    await page.wait_for_selector("#comment-list .comment")
    html = await page.content()
    assert "INTERNAL" not in html and "recall list" not in html
    assert await page.inner_html("#comment-list .comment-staff .prose strong") == "USB-C"

    # Reply through htmx: the form comes back empty, the reply is appended and announced.
    await page.fill("#f-body", "Another port works, thank you!")
    await page.set_input_files(
        "#f-files", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": ONE_PIXEL_PNG}]
    )
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector(".comment-mine >> text=Another port works")
    assert await page.input_value("#f-body") == ""
    assert "photo.png" in await page.inner_text(".comment-mine")
    assert "Your reply has been added" in await page.inner_text("#live")

    # An empty reply: the error next to the field (server answer through htmx, too).
    await page.evaluate("document.getElementById('f-body').removeAttribute('required')")
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector("#f-body-error:not([hidden])")
    assert "Write your reply" in await page.inner_text("#f-body-error")

    # The agent answers and adds another note; the page's poll brings the reply only.
    await agent.ok("POST", base, json={"body": "Great, closing the loop."})
    await agent.ok("POST", base, json={"body": "INTERNAL again", "is_internal": True})
    # What the every-15-seconds poll does, now.
    await page.evaluate(
        "htmx.ajax('GET', document.getElementById('poller').getAttribute('hx-get'),"
        " {source: '#poller', swap: 'none'})"
    )
    await page.wait_for_selector("text=Great, closing the loop.")
    assert "INTERNAL" not in await page.content()
    assert "New reply from Ana Agent" in await page.inner_text("#live")
    assert len(await page.locator("#comment-list .comment").all()) == 3
    assert not page.errors, page.errors


async def test_close_and_reopen(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    user = await ui.user("requester")
    agent = await ui.as_user((await ui.user("agent"))["email"])
    requester = await ui.as_user(user["email"])
    first = await requester.ticket(laptop, subject="Keyboard misses keys")
    second = await requester.ticket(laptop, subject="Mouse is fine now")
    await agent.ok(
        "POST", f"/tickets/{first['id']}/status", json={"status": "resolved", "version": 1}
    )

    await sign_in(page, live_server, org.slug, user["email"])
    await page.goto(path(live_server, org.slug, f"/tickets/{first['number']}"))
    await page.click("button:has-text('Reopen ticket')")
    await page.wait_for_selector("text=The ticket has been reopened.")
    assert "Open" in await page.inner_text("#ticket-status")

    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(path(live_server, org.slug, f"/tickets/{second['number']}"))
    await page.click("button:has-text('Close ticket')")
    await page.wait_for_selector("text=The ticket is closed.")
    assert "Closed" in await page.inner_text("#ticket-status")
    assert await page.locator("#reply-form").count() == 0
    assert "File a new ticket" in await page.inner_text(".closed-note")
    await page.goto(path(live_server, org.slug, "/tickets?show=closed"))
    assert "Mouse is fine now" in await page.inner_text("main")


async def test_another_requesters_ticket_is_a_404_page(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    owner = await ui.user("requester")
    snoop = await ui.user("requester")
    ticket = await (await ui.as_user(owner["email"])).ticket(laptop, subject="Salary question")
    await sign_in(page, live_server, org.slug, snoop["email"])
    response = await page.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
    assert response.status == 404
    assert await page.inner_text("h1") == "Page not found"
    assert "Salary question" not in await page.content()
    assert response.headers["x-request-id"] in await page.inner_text(".request-id")
    # Its files and updates are not reachable either.
    updates = await page.request.get(
        path(live_server, org.slug, f"/tickets/{ticket['number']}/updates")
    )
    assert updates.status == 404
    await page.goto(path(live_server, org.slug, "/tickets?show=all"))
    assert "Salary question" not in await page.content()
    assert "No tickets yet" in await page.inner_text("main")
