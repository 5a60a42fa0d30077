"""The admin console's operations pages in the browser: sign-in attempts, ending a user's
sessions, replaying and discarding failed jobs (confirmations accepted, notices shown);
screenshots of the three pages (desktop, phone, dark)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization
from tests.conftest import Session
from tests.test_admin_ops_pages import drop_job, failed_job, job_status
from tests.ui.conftest import DESKTOP, PHONE
from tests.ui.helpers import UiApi, path, sign_in

pytestmark = pytest.mark.ui

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


async def test_admin_sees_a_failed_sign_in(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    user = await ui.user(first_name="Kim")
    # Someone types a wrong password on the sign-in page.
    other = await browser.new_context(viewport=DESKTOP)
    try:
        stranger = await other.new_page()
        await stranger.goto(path(live_server, org.slug, "/login"))
        await stranger.fill("#f-email", user["email"])
        await stranger.fill("#f-password", "Not-The-Password-1")
        await stranger.click("button:has-text('Sign in')")
        await stranger.wait_for_selector("text=The email or password is wrong")
    finally:
        await other.close()

    await sign_in(page, live_server, org.slug, admin.user.email)
    await page.goto(path(live_server, org.slug, "/admin"))
    await page.click(".admin-nav >> text=Sign-ins")
    await page.wait_for_url("**/admin/sign-ins")
    row = page.locator(".sign-in-row", has_text=user["email"])
    assert "Wrong password" in await row.first.inner_text()
    await page.select_option("#f-outcome", "failure")
    await page.fill("#f-email", user["email"])
    await page.click("button:has-text('Filter')")
    await page.wait_for_url("**outcome=failure**")
    rows = page.locator(".sign-in-row")
    assert await rows.count() == 1
    assert "Failed" in await rows.first.inner_text()
    assert await page.get_attribute(".sign-in-row time", "title") is not None
    assert page.errors == []


async def test_admin_ends_a_users_sessions(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    user = await ui.user(first_name="Sasha")
    contexts = [await browser.new_context(viewport=DESKTOP) for _ in range(2)]
    try:
        pages = [await ctx.new_page() for ctx in contexts]
        for user_page in pages:
            await sign_in(user_page, live_server, org.slug, user["email"])

        await sign_in(page, live_server, org.slug, admin.user.email)
        page.on("dialog", lambda d: d.accept())
        await page.goto(path(live_server, org.slug, f"/admin/users/{user['id']}"))
        await page.click("text=See sessions")
        await page.wait_for_url(f"**/admin/users/{user['id']}/sessions")
        assert await page.locator(".session-row").count() == 2

        await page.locator(".session-row").first.locator("button").click()
        await page.wait_for_url("**?notice=session_ended")
        assert "The session has ended" in await page.inner_text("[role=status].alert")
        assert await page.locator(".session-row").count() == 1

        await page.click("button:has-text('End all sessions')")
        await page.wait_for_url("**?notice=sessions_ended")
        assert "All of the user's sessions have ended" in await page.inner_text(
            "[role=status].alert"
        )
        assert await page.locator(".session-row").count() == 0
        assert await page.is_disabled("button:has-text('End all sessions')")

        # The user's browsers are signed out: the next page asks them to sign in.
        for user_page in pages:
            await user_page.goto(path(live_server, org.slug, "/tickets"))
            await user_page.wait_for_url("**/login**")
    finally:
        for ctx in contexts:
            await ctx.close()
    assert page.errors == []


async def test_admin_replays_and_discards_failed_jobs(
    page: Any, live_server: str, runtime: Runtime, org: Organization, admin: Session
) -> None:
    replayed = await failed_job(runtime, org, "RuntimeError: smtp down")
    discarded = await failed_job(runtime, org, "ValueError: bad address")
    try:
        await sign_in(page, live_server, org.slug, admin.user.email)
        await page.goto(path(live_server, org.slug, "/admin"))
        await page.click(".admin-nav >> text=Failed jobs")
        await page.wait_for_url("**/admin/jobs")
        assert "smtp down" in await page.inner_text(f"#job-{replayed}")

        # Dismissing the confirmation does nothing.
        page.once("dialog", lambda d: d.dismiss())
        await page.click(f"#job-{replayed} button:has-text('Replay')")
        await page.wait_for_timeout(300)
        assert await job_status(runtime, org, replayed) == "failed"

        page.on("dialog", lambda d: d.accept())
        await page.click(f"#job-{replayed} button:has-text('Replay')")
        await page.wait_for_url("**/admin/jobs?notice=replayed")
        assert "queued again" in await page.inner_text("[role=status].alert")
        assert await page.locator(f"#job-{replayed}").count() == 0
        assert await job_status(runtime, org, replayed) == "todo"

        await page.click(f"#job-{discarded} button:has-text('Discard')")
        await page.wait_for_url("**/admin/jobs?notice=discarded")
        assert "discarded" in await page.inner_text("[role=status].alert")
        assert await page.locator(f"#job-{discarded}").count() == 0
        assert await job_status(runtime, org, discarded) is None
        assert page.errors == []
    finally:
        await drop_job(runtime, replayed)
        await drop_job(runtime, discarded)


async def test_admin_ops_screenshots(
    browser: Any,
    live_server: str,
    runtime: Runtime,
    org: Organization,
    ui: UiApi,
    admin: Session,
    tmp_path: Path,
) -> None:
    out = DOCS if os.environ.get("SERVICEDESK_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    anonymous = UiApi(live_server, org.slug)
    for name in ("Ana", "Marco", "Lena"):
        user = await ui.user(first_name=name)
        await ui.as_user(user["email"])
        await anonymous.request(
            "POST", "/auth/login", json={"email": user["email"], "password": "Wrong-guess-42"}
        )
    await anonymous.request(
        "POST", "/auth/login", json={"email": "nobody@example.com", "password": "Guess-1234"}
    )
    job_ids = [
        await failed_job(
            runtime,
            org,
            "SMTPServerDisconnected: Connection unexpectedly closed",
            "notifications.send_email",
        ),
        await failed_job(
            runtime,
            org,
            "TimeoutError: the push service did not answer within 10 s",
            "notifications.send_push",
        ),
    ]
    try:
        for scheme, sizes in (
            ("light", {"desktop": DESKTOP, "phone": PHONE}),
            ("dark", {"desktop": DESKTOP}),
        ):
            for size_name, viewport in sizes.items():
                suffix = size_name + ("-dark" if scheme == "dark" else "")
                context = await browser.new_context(
                    viewport=viewport,
                    color_scheme=scheme,
                    locale="en-GB",
                    timezone_id="Europe/Berlin",
                )
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                try:
                    await sign_in(page, live_server, org.slug, admin.user.email)
                    for name, url in (
                        ("sessions", "/admin/sessions"),
                        ("sign-ins", "/admin/sign-ins"),
                        ("failed-jobs", "/admin/jobs"),
                    ):
                        await page.goto(path(live_server, org.slug, url))
                        await page.wait_for_load_state("load")
                        await page.screenshot(
                            path=str(out / f"admin-{name}-{suffix}.png"), full_page=True
                        )
                finally:
                    await context.close()
                assert not errors, errors
    finally:
        for job_id in job_ids:
            await drop_job(runtime, job_id)
