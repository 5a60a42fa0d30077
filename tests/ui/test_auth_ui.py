"""Sign-in in the browser: register → approve → sign in → 2FA; forgotten password; CSRF;
the silent session refresh; error pages."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import psycopg
import pyotp
import pytest

from servicedesk.accounts.password_reset import EVENT_TYPE
from servicedesk.core.security import SecretBox
from servicedesk.models import Organization
from tests.conftest import PASSWORD
from tests.ui.conftest import SECRET_KEY
from tests.ui.helpers import UiApi, path, sign_in

pytestmark = pytest.mark.ui

NEW_PASSWORD = "Another-Long-Passphrase-7"


async def test_register_approve_then_sign_in_with_two_factor(
    page: Any, live_server: str, org: Organization, ui: UiApi
) -> None:
    await ui.ok("POST", "/departments", json={"name": "Logistics"})
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"

    await page.goto(path(live_server, org.slug, "/login"))
    await page.click("text=Register as an employee")
    await page.fill("#f-first_name", "Noor")
    await page.fill("#f-last_name", "Newcomer")
    await page.fill("#f-email", email)
    await page.fill("#f-company_id", "ma4321")
    await page.select_option("#f-department_id", label="Logistics")
    await page.fill("#f-password", PASSWORD)
    await page.fill("#f-password_confirm", PASSWORD + "x")
    await page.click("button:has-text('Create account')")
    # The browser check: the repeat does not match, and the message sits next to the field.
    assert await page.inner_text("#f-password_confirm-error") == "The passwords do not match."
    assert "/register" in page.url
    await page.fill("#f-password_confirm", PASSWORD)
    await page.click("button:has-text('Create account')")
    await page.wait_for_selector("text=Your account is waiting for approval")
    assert "pending" in await page.inner_text("main")
    assert email in await page.inner_text("main")

    # Pending: signing in is refused with a clear message.
    await page.goto(path(live_server, org.slug, "/login"))
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await page.click("button:has-text('Sign in')")
    assert "waiting for an administrator's approval" in await page.inner_text("[role=alert]")

    # An admin approves through the API.
    users = (await ui.ok("GET", "/users", params={"q": email}))["items"]
    await ui.ok("POST", f"/users/{users[0]['id']}/approve")

    await page.fill("#f-password", PASSWORD)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url("**/tickets")
    assert "No open tickets" in await page.inner_text("main")

    # Enrol in 2FA: QR code, key, first code, recovery codes.
    await page.click("a.user-link")
    await page.click("button:has-text('Set up two-factor authentication')")
    assert (await page.get_attribute("img.qr", "src") or "").startswith("data:image/svg+xml")
    await page.click('summary:has-text("Can\'t scan?")')
    secret = (await page.inner_text("code.secret")).replace(" ", "")
    totp = pyotp.TOTP(secret)
    await page.fill("#f-code", "000000" if totp.now() != "000000" else "111111")
    await page.click("button:has-text('Turn on')")
    assert "does not match" in await page.inner_text("#f-code-error")
    await page.fill("#f-code", totp.now())
    await page.click("button:has-text('Turn on')")
    await page.wait_for_selector("text=Two-factor authentication is on")
    codes = await page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", c) for c in codes)

    # Sign out, sign in again: the password, then the code step.
    await page.click("button:has-text('Sign out')")
    await page.wait_for_selector("text=You have signed out.")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url("**/login/2fa")
    await page.fill("#f-code", "12345")
    await page.click("button:has-text('Verify')")
    assert await page.inner_text("#f-code-error")  # too short: refused in the browser
    # The code of the next 30-second step (the first one was used for the enrolment).
    await page.fill("#f-code", totp.at(time.time() + 30))
    await page.click("button:has-text('Verify')")
    await page.wait_for_url("**/tickets")
    assert "Noor Newcomer" in await page.inner_text("header")
    assert not page.errors, page.errors


def _reset_link(database_url: str, org: Organization) -> str:
    with psycopg.connect(database_url.replace("+asyncpg", "")) as conn:
        row = conn.execute(
            "SELECT payload FROM outbox_events WHERE organization_id = %s AND event_type = %s "
            "ORDER BY seq DESC LIMIT 1",
            (org.id, EVENT_TYPE),
        ).fetchone()
    assert row is not None, "no reset event in the outbox"
    payload = row[0]
    assert "token=" not in str(payload)  # the link travels encrypted
    return SecretBox(SECRET_KEY).decrypt(payload["reset_link_encrypted"])


async def test_forgotten_password_link_works_once_and_ends_sessions(
    page: Any, live_server: str, org: Organization, ui: UiApi, database_url: str
) -> None:
    user = await ui.user("requester", first_name="Forgetful")
    other = await ui.as_user(user["email"])  # a session that the reset must end

    await page.goto(path(live_server, org.slug, "/login"))
    await page.click("text=Forgot password?")
    await page.fill("#f-email", "nobody-" + user["email"])
    await page.click("button:has-text('Send reset link')")
    unknown_answer = (await page.inner_text(".alert")).replace("nobody-" + user["email"], "EMAIL")

    await page.goto(path(live_server, org.slug, "/forgot-password"))
    await page.fill("#f-email", user["email"])
    await page.click("button:has-text('Send reset link')")
    known_answer = (await page.inner_text(".alert")).replace(user["email"], "EMAIL")
    assert known_answer == unknown_answer  # no way to tell accounts apart

    link = _reset_link(database_url, org)
    assert link.startswith(f"{live_server}/t/{org.slug}/reset-password?token=")
    await page.goto(link)
    await page.fill("#f-password", "password")
    await page.fill("#f-password_confirm", "password")
    await page.click("button:has-text('Set new password')")
    assert "too common" in await page.inner_text("#f-password-error")  # the server's policy
    await page.fill("#f-password", NEW_PASSWORD)
    await page.fill("#f-password_confirm", NEW_PASSWORD)
    await page.click("button:has-text('Set new password')")
    await page.wait_for_selector("text=Your password has been changed")

    assert (await other.request("GET", "/me")).status_code == 401  # every session ended
    await sign_in(page, live_server, org.slug, user["email"], NEW_PASSWORD)

    await page.goto(link)  # single use
    assert "can't be used" in await page.inner_text("h1")
    await page.goto(path(live_server, org.slug, "/reset-password?token=forged-token"))
    assert "can't be used" in await page.inner_text("h1")


async def test_forms_without_the_csrf_token_are_refused(
    page: Any, live_server: str, org: Organization, ui: UiApi
) -> None:
    user = await ui.user("requester")
    await sign_in(page, live_server, org.slug, user["email"])
    await page.goto(path(live_server, org.slug, "/account"))
    await page.fill("#f-first_name", "Changed")
    await page.evaluate(
        "document.querySelectorAll('input[name=csrf_token]').forEach(i => i.remove())"
    )
    await page.click("button:has-text('Save profile')")
    assert "You can't do that" in await page.inner_text("h1")
    assert re.search(r"Request id: [0-9a-f]{32}", await page.inner_text("main"))
    assert (await ui.ok("GET", f"/users/{user['id']}"))["first_name"] != "Changed"

    # A cross-site form: the session cookie alone is not enough (no cookie copy, no header).
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    session_only = {"sd_access": cookies["sd_access"], "sd_refresh": cookies["sd_refresh"]}
    async with httpx.AsyncClient(cookies=session_only) as client:
        r = await client.post(
            path(live_server, org.slug, "/tickets/new"),
            data={"subject": "Forged ticket", "csrf_token": "guess"},
        )
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]

    # Signing in needs the token too (login CSRF).
    async with httpx.AsyncClient() as client:
        r = await client.post(
            path(live_server, org.slug, "/login"),
            data={"email": user["email"], "password": PASSWORD},
        )
    assert r.status_code == 403


async def test_expired_access_cookie_is_refreshed_silently_and_next_is_kept(
    page: Any, live_server: str, org: Organization, ui: UiApi
) -> None:
    user = await ui.user("requester")
    await page.goto(path(live_server, org.slug, "/tickets/new"))
    await page.wait_for_url("**/login?next=/tickets/new")
    await page.fill("#f-email", user["email"])
    await page.fill("#f-password", PASSWORD)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url("**/tickets/new")

    context = page.context
    jar = await context.cookies()
    before = {c["name"]: c["value"] for c in jar}
    await context.clear_cookies()
    # As if the 15-minute access cookie had expired.
    await context.add_cookies([c for c in jar if c["name"] != "sd_access"])
    await page.goto(path(live_server, org.slug, "/tickets"))
    assert page.url.endswith("/tickets")
    after = {c["name"]: c["value"] for c in await context.cookies()}
    assert after["sd_access"] and after["sd_refresh"] != before["sd_refresh"]  # rotated
    assert after["sd_csrf"] == before["sd_csrf"]  # forms in other tabs keep working

    await context.clear_cookies()
    await page.goto(path(live_server, org.slug, "/tickets"))
    await page.wait_for_url("**/login?next=/tickets")


async def test_error_pages_are_pages_and_the_api_keeps_problem_json(
    page: Any, live_server: str, org: Organization
) -> None:
    response = await page.goto(path(live_server, org.slug, "/no/such/page"))
    assert response.status == 404
    assert await page.inner_text("h1") == "Page not found"
    assert response.headers["x-request-id"] in await page.inner_text(".request-id")

    response = await page.goto(f"{live_server}/t/no-such-org/login")
    assert response.status == 404 and "Unknown organization" in await page.inner_text("main")

    async with httpx.AsyncClient() as client:
        r = await client.get(f"{live_server}/t/{org.slug}/api/v1/nothing")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"

    await page.goto(live_server + "/")
    await page.fill("#f-org", org.slug)
    await page.click("button:has-text('Continue')")
    await page.wait_for_url(f"**/t/{org.slug}/login")
    assert not page.errors, page.errors
