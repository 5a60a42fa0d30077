"""Markup typed into every form comes back as text on every page it reaches.

Checked in the DOM the browser built (not only in the response): no element, attribute,
handler or script that the payload could have created, and the payload is visible as text.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from servicedesk.models import Organization
from tests.conftest import PASSWORD
from tests.ui.helpers import ONE_PIXEL_PNG, UiApi, injected, path, sign_in

pytestmark = pytest.mark.ui

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script><xss-tag>'
SHORT = "<img src=x onerror=window.__xss=1>"
LINK = "[click me](javascript:window.__xss=1)"


async def assert_clean(page: Any, *visible: str) -> None:
    assert await injected(page) == [], page.url
    text = await page.inner_text("body")
    for piece in visible:
        assert piece in text, (piece, page.url)


async def test_markup_in_every_form_stays_text(
    page: Any, live_server: str, org: Organization, ui: UiApi
) -> None:
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    department = await ui.ok("POST", "/departments", json={"name": "Ops " + SHORT})
    category = await ui.category(
        "Cat " + SHORT,
        description="About " + XSS,
        fields=[
            {"key": "note", "label": "Note " + SHORT, "type": "text", "help_text": XSS},
            {"key": "detail", "label": "Detail", "type": "long_text"},
            {"key": "pick", "label": "Pick", "type": "select", "choices": [SHORT, "plain"]},
        ],
    )
    agent_user = await ui.user("agent", first_name=SHORT)
    agent = await ui.as_user(agent_user["email"])

    # Anonymous forms: organization picker, sign-in, forgotten password, registration.
    await page.goto(live_server + "/")
    await page.fill("#f-org", XSS)
    await page.click("button:has-text('Continue')")
    await assert_clean(page)
    assert await page.input_value("#f-org") == XSS[:63]  # the field takes 63 characters

    await page.goto(path(live_server, org.slug, "/login?next=/x%22%3E%3Cscript%3E"))
    await page.fill("#f-email", XSS)
    await page.fill("#f-password", "whatever")
    await page.evaluate("document.querySelector('form[data-validate]').noValidate = true")
    await page.evaluate("document.querySelector('form').removeAttribute('data-validate')")
    await page.click("button:has-text('Sign in')")
    await assert_clean(page)
    assert await page.input_value("#f-email") == XSS

    await page.goto(path(live_server, org.slug, "/forgot-password"))
    await page.evaluate("document.querySelector('form').removeAttribute('data-validate')")
    await page.evaluate("document.getElementById('f-email').type = 'text'")
    await page.fill("#f-email", SHORT + "@example.com")
    await page.click("button:has-text('Send reset link')")
    await assert_clean(page, SHORT + "@example.com")

    email = f"x{uuid.uuid4().hex[:8]}@example.com"
    await page.goto(path(live_server, org.slug, "/register"))
    await assert_clean(page, "Ops " + SHORT)  # the department's name in the list
    await page.fill("#f-first_name", XSS[:100])
    await page.fill("#f-last_name", SHORT)
    await page.fill("#f-middle_name", "<b>bold</b>")
    await page.fill("#f-email", email)
    await page.fill("#f-company_id", "MA7777")
    await page.select_option("#f-department_id", department["id"])
    await page.fill("#f-password", PASSWORD)
    await page.fill("#f-password_confirm", PASSWORD)
    await page.click("button:has-text('Create account')")
    await page.wait_for_selector("text=waiting for approval")
    await assert_clean(page, email)
    users = (await ui.ok("GET", "/users", params={"q": email}))["items"]
    await ui.ok("POST", f"/users/{users[0]['id']}/approve")

    # Signed in: the name is in the header of every page.
    await sign_in(page, live_server, org.slug, email)
    await assert_clean(page, SHORT)

    # Profile form.
    await page.goto(path(live_server, org.slug, "/account"))
    await page.fill("#f-last_name", XSS[:100])
    await page.click("button:has-text('Save profile')")
    await page.wait_for_selector("text=Your profile has been saved.")
    await assert_clean(page, "<script>window.__xss=1</script>")

    # New ticket: the category, its fields and help, subject, description, a field, a file.
    await page.goto(path(live_server, org.slug, "/tickets/new"))
    await assert_clean(page, "Cat " + SHORT)
    await page.select_option("#f-category", category["id"])
    await page.wait_for_selector("#f-cf-note")
    await assert_clean(page, "Note " + SHORT, "About " + XSS)
    await page.fill("#f-cf-note", XSS[:500])
    await page.fill("#f-cf-detail", XSS + "\n\n" + LINK)
    await page.select_option("#f-cf-pick", SHORT)
    await page.fill("#f-subject", "Subject " + SHORT)
    await page.fill("#f-description", "Description " + XSS + "\n\n" + LINK)
    await page.set_input_files(
        "#f-files",
        files=[
            {
                "name": '"><img src=x onerror=window.__xss=1>.png',
                "mimeType": "image/png",
                "buffer": ONE_PIXEL_PNG,
            }
        ],
    )
    # First with an error, so every value is rendered back into the form.
    await page.evaluate("document.getElementById('f-subject').removeAttribute('minlength')")
    await page.fill("#f-subject", "<b>")
    await page.click("button:has-text('File ticket')")
    await page.wait_for_selector(".error-summary")
    await assert_clean(page)
    assert await page.input_value("#f-cf-note") == XSS[:500]
    await page.fill("#f-subject", "Subject " + SHORT)
    await page.set_input_files(
        "#f-files",
        files=[
            {
                "name": '"><img src=x onerror=window.__xss=1>.png',
                "mimeType": "image/png",
                "buffer": ONE_PIXEL_PNG,
            }
        ],
    )
    await page.click("button:has-text('File ticket')")
    await page.wait_for_url("**/tickets/TKT*")
    number = page.url.rsplit("/", 1)[-1].split("?")[0]
    await assert_clean(page, "Subject " + SHORT, "Note " + SHORT, "Description ")
    assert await page.locator(".prose a[href^='javascript']").count() == 0

    # A reply from the requester and one from the agent (whose name is markup too).
    await page.fill("#f-body", "Reply " + XSS + "\n\n" + LINK)
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector(".comment-mine")
    await assert_clean(page, "Reply ")
    ticket_id = (await ui.ok("GET", f"/tickets/by-number/{number}"))["id"]
    await agent.ok("POST", f"/tickets/{ticket_id}/comments", json={"body": "Agent " + XSS})
    await page.reload()
    await assert_clean(page, "Agent ", SHORT)

    # The list of tickets.
    await page.goto(path(live_server, org.slug, "/tickets"))
    await assert_clean(page, "Subject " + SHORT, "Cat " + SHORT)
    assert not page.errors, page.errors
