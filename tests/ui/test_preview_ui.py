"""The Markdown preview of the editors in the browser: an agent previews a reply with markup in
it (formatted text, nothing injected, no script run, no dialog), switches back with the text
and the focus kept, and sends it; a requester does the same on the portal, and previews a new
ticket's description (empty, too long, then fine)."""

from __future__ import annotations

from typing import Any

import pytest

from servicedesk.models import Organization
from tests.ui.helpers import UiApi, injected, path, sign_in

pytestmark = pytest.mark.ui

XSS = (
    '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script><xss-tag>'
    " [bad link](javascript:window.__xss=1) <svg/onload=alert(1)>"
)
MARKDOWN = (
    "Try **another port**.\n\n- first step\n- second step\n\n[Guide](https://example.com/g)\n\n"
)


@pytest.fixture
async def laptop(ui: UiApi) -> dict[str, Any]:
    return await ui.category("Laptop problems", description="Broken or slow laptops.")


def watch_dialogs(page: Any) -> list[str]:
    """Every dialog that opens (an alert from injected script) is dismissed and recorded."""
    dialogs: list[str] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


async def preview_and_check(page: Any, textarea: str, text: str) -> None:
    """Type `text`, preview it and check the rendered, harmless result; then back to Write."""
    area = f"{textarea}-preview"
    editor = page.locator(f"[data-md-editor]:has({textarea})")
    write = editor.locator("[data-md-mode=write]")
    preview = editor.locator("[data-md-mode=preview]")
    assert await page.is_visible(f"{textarea}") and not await page.is_visible(area)
    assert await write.get_attribute("aria-pressed") == "true"

    await page.fill(textarea, text)
    await page.click(textarea)
    await page.keyboard.press("Control+Home")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    csrf = next(c["value"] for c in await page.context.cookies() if c["name"] == "sd_csrf")
    # By keyboard: the switch (before the textarea) and Enter.
    await preview.focus()
    async with page.expect_request("**/preview") as sent:
        await page.keyboard.press("Enter")
    request = await sent.value
    assert request.method == "POST"
    assert request.headers.get("x-csrf-token") == csrf
    await page.wait_for_selector(f"{area} strong")

    assert await preview.get_attribute("aria-pressed") == "true"
    assert not await page.is_visible(textarea)
    assert await page.get_attribute(area, "aria-live") == "polite"
    assert await page.inner_text(f"{area} strong") == "another port"
    assert await page.locator(f"{area} li").all_inner_texts() == ["first step", "second step"]
    assert await page.get_attribute(f"{area} a[href^='https']", "href") == "https://example.com/g"
    shown = await page.inner_text(area)
    assert "<xss-tag>" in shown and "<script>" in shown  # the markup is text
    assert await page.locator(f"{area} a[href^='javascript']").count() == 0
    assert await injected(page) == []
    # The preview area is reachable with the keyboard (next after the switch).
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == area.lstrip("#")

    # Back to Write: the same text, the focus in the textarea, the caret where it was.
    await write.click()
    assert await page.is_visible(textarea) and not await page.is_visible(area)
    assert await page.input_value(textarea) == text
    assert await page.evaluate("document.activeElement.id") == textarea.lstrip("#")
    assert await page.evaluate("document.activeElement.selectionStart") == 2


async def test_agent_previews_a_reply_then_sends_it(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    dialogs = watch_dialogs(page)
    requester = await ui.as_user((await ui.user("requester"))["email"])
    ticket = await requester.ticket(laptop, subject="Dock does not charge")
    agent = await ui.user("agent", first_name="Ana")
    await sign_in(page, live_server, org.slug, agent["email"])
    await page.goto(path(live_server, org.slug, f"/agent/tickets/{ticket['number']}"))

    await preview_and_check(page, "#f-body", MARKDOWN + XSS)

    # The "r" shortcut brings a previewed reply box back and focuses it.
    await page.click("[data-md-mode=preview]")
    await page.wait_for_selector("#f-body-preview strong")
    await page.keyboard.press("r")
    assert await page.evaluate("document.activeElement.id") == "f-body"
    assert not await page.is_visible("#f-body-preview")

    # Previewing again and sending straight from the preview: the form switches back first
    # and posts the text (the textarea was only hidden).
    await page.click("[data-md-mode=preview]")
    await page.wait_for_selector("#f-body-preview strong")
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector("text=Your reply has been sent")
    reply = page.locator(".comment:not(.comment-internal)").last
    assert await reply.locator(".prose strong").inner_text() == "another port"
    assert "<xss-tag>" in await reply.inner_text()
    assert await injected(page) == []
    assert await page.evaluate("window.__xss === undefined")
    assert dialogs == []
    assert not page.errors, page.errors


async def test_requester_previews_a_reply_and_a_new_description(
    page: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    dialogs = watch_dialogs(page)
    user = await ui.user("requester")
    requester = await ui.as_user(user["email"])
    ticket = await requester.ticket(laptop, subject="Keyboard misses keys")
    await sign_in(page, live_server, org.slug, user["email"])
    await page.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))

    await preview_and_check(page, "#f-body", MARKDOWN + XSS)
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector("#comment-list .comment .prose strong")
    await page.wait_for_function(
        "() => document.getElementById('live').textContent.includes('Your reply has been added')"
    )
    # The form came back empty (htmx swap): the switch is there again, in Write mode.
    assert await page.input_value("#f-body") == ""
    # Revealed once htmx has settled the swap (under load, a moment after the reply shows).
    await page.wait_for_selector("[data-md-mode=preview]", state="visible")
    assert await injected(page) == []

    # The new ticket's description: empty, too long (a client past maxlength), then fine.
    await page.click("nav.mainnav >> text=New ticket")
    await page.click("[data-md-mode=preview]")
    await page.wait_for_selector("#f-description-preview >> text=Nothing to preview.")
    await page.click("[data-md-mode=write]")
    await page.evaluate(
        "() => { const t = document.getElementById('f-description');"
        " t.removeAttribute('maxlength'); t.value = 'x'.repeat(50001); }"
    )
    await page.click("[data-md-mode=preview]")
    error = page.locator("#f-description-preview .md-preview-error")
    await error.wait_for()
    assert "too long to preview: 50,001 characters" in await error.inner_text()
    await page.click("[data-md-mode=write]")
    await preview_and_check(page, "#f-description", MARKDOWN + XSS)
    assert await page.evaluate("window.__xss === undefined")
    assert dialogs == []
    assert not page.errors, page.errors


async def test_without_javascript_the_textarea_just_works(
    browser: Any, live_server: str, org: Organization, ui: UiApi, laptop: dict[str, Any]
) -> None:
    user = await ui.user("requester")
    requester = await ui.as_user(user["email"])
    ticket = await requester.ticket(laptop, subject="Mouse is slow")
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await sign_in(page, live_server, org.slug, user["email"])
        await page.goto(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
        assert not await page.is_visible("[data-md-mode=preview]")
        assert not await page.is_visible("#f-body-preview")
        await page.fill("#f-body", "Plain **form** post")
        await page.click("button:has-text('Send reply')")
        await page.wait_for_selector("#comment-list .comment .prose strong")
        assert await page.inner_text("#comment-list .comment .prose strong") == "form"
    finally:
        await context.close()
