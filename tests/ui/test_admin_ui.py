"""The admin console in the browser: approving a registration, the category field editor (and
the portal form it drives), errors next to fields, markup as text, 403 for non-admins, CSRF;
screenshots of users, the category editor and the audit log (desktop, phone, dark)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicedesk.models import Organization
from tests.conftest import PASSWORD, Session
from tests.ui.conftest import DESKTOP, PHONE
from tests.ui.helpers import UiApi, injected, path, sign_in

pytestmark = pytest.mark.ui

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'


async def _register(ui: UiApi, email: str, first_name: str = "Noor") -> None:
    r = await UiApi(ui.base, ui.slug).request(
        "POST",
        "/auth/register",
        json={
            "first_name": first_name,
            "last_name": "Newcomer",
            "email": email,
            "company_id": f"MA{random.randint(1000, 9999)}",
            "password": PASSWORD,
        },
    )
    assert r.status_code < 300, r.text


async def _admin_signs_in(page: Any, live: str, org: Organization, admin: Session) -> None:
    await sign_in(page, live, org.slug, admin.user.email)


async def test_admin_approves_a_pending_user_who_then_signs_in(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    email = f"pending-{random.randint(10**5, 10**6)}@example.com"
    await _register(ui, email)
    await _admin_signs_in(page, live_server, org, admin)
    await page.click("nav.mainnav >> text=Admin")
    await page.wait_for_url("**/admin/users")
    assert "1" in await page.inner_text(".admin-nav .count-badge")
    first = page.locator(".user-row").first
    assert email in await first.inner_text()  # pending users come first
    await first.locator("button:has-text('Approve')").click()
    await page.wait_for_url("**/admin/users?notice=approved")
    assert "approved and can sign in" in await page.inner_text("[role=status].alert")
    assert await page.locator(".admin-nav .count-badge").count() == 0

    # The user signs in.
    other = await browser.new_context(viewport=DESKTOP)
    try:
        user_page = await other.new_page()
        await sign_in(user_page, live_server, org.slug, email)
        assert "No open tickets" in await user_page.inner_text("main")
    finally:
        await other.close()

    # Suspend from the user's page; the filter finds them; role change.
    await page.fill("#f-q", email)
    await page.select_option("#f-status", "approved")
    await page.click("button:has-text('Filter')")
    await page.locator(".user-row", has_text=email).locator("a.ticket-link").click()
    await page.select_option("#f-role", "agent")
    await page.click("button:has-text('Save changes')")
    await page.wait_for_url("**?notice=saved")
    assert await page.input_value("#f-role") == "agent"
    page.on("dialog", lambda d: d.accept())
    await page.click("button:has-text('Suspend')")
    await page.wait_for_url("**?notice=suspended")
    assert "Suspended" in await page.inner_text(".page-head")
    await page.click("button:has-text('Reinstate')")
    await page.wait_for_url("**?notice=reinstated")
    # The audit log shows it, filtered by prefix.
    await page.click(".admin-nav >> text=Audit log")
    await page.fill("#f-action", "user")
    await page.click("button:has-text('Filter')")
    await page.wait_for_url("**action=user*")  # the filtered page, not the one before it
    await page.wait_for_load_state()
    actions = await page.locator(".audit-row code.action-code").all_inner_texts()
    assert {"user.approved", "user.suspended", "user.role_changed"} <= set(actions)
    assert all(a.startswith("user.") for a in actions)
    assert not page.errors, page.errors


async def test_category_editor_adds_a_select_field_the_portal_shows(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    category = await ui.category("Office moves", fields=[], description="Desks and rooms.")
    await _admin_signs_in(page, live_server, org, admin)
    await page.goto(path(live_server, org.slug, f"/admin/categories/{category['id']}"))
    await page.click("button:has-text('Add field')")
    row = page.locator("[data-field-row]").last
    await row.locator("input[name$='-key']").fill("floor")
    await row.locator("input[name$='-label']").fill("Which floor?")
    await row.locator("select[name$='-type']").select_option("select")
    await row.locator("input[name$='-required']").check()
    # A select field without choices: the service's rule, next to the row's choices.
    await page.click("button:has-text('Save category')")
    await page.wait_for_selector("#f-fields-0-choices-error:not([hidden])")
    assert "choices" in await page.inner_text("#f-fields-0-choices-error")
    assert "Field 1 choices" in await page.inner_text(".error-summary")
    assert await page.input_value("#f-fields-0-label") == "Which floor?"  # kept

    await page.fill("#f-fields-0-choices", "Ground, First, Second")
    await page.click("button:has-text('Add field')")
    second = page.locator("[data-field-row]").last
    await second.locator("input[name$='-key']").fill("desk_count")
    await second.locator("input[name$='-label']").fill("Desks")
    await second.locator("select[name$='-type']").select_option("number")
    await second.locator("[data-row-up]").click()  # reorder: desks first
    await page.click("button:has-text('Save category')")
    await page.wait_for_url("**?notice=saved")
    saved = await ui.ok("GET", f"/categories/{category['id']}")
    assert [f["key"] for f in saved["fields"]] == ["desk_count", "floor"]
    assert saved["fields"][1]["choices"] == ["Ground", "First", "Second"]

    # Duplicate keys: the error sits next to both rows.
    await page.fill("#f-fields-0-key", "floor")
    await page.click("button:has-text('Save category')")
    await page.wait_for_selector("#f-fields-0-key-error:not([hidden])")
    assert "Another field has this key" in await page.inner_text("#f-fields-1-key-error")

    # The portal's new-ticket form shows the new select field.
    requester = await ui.user("requester")
    other = await browser.new_context(viewport=DESKTOP)
    try:
        portal = await other.new_page()
        await sign_in(portal, live_server, org.slug, requester["email"])
        await portal.goto(path(live_server, org.slug, "/tickets/new"))
        await portal.select_option("#f-category", label="Office moves")
        await portal.wait_for_selector("#f-cf-floor")
        options = await portal.locator("#f-cf-floor option").all_inner_texts()
        assert {"Ground", "First", "Second"} <= set(options)
        assert "Which floor?" in await portal.inner_text("label[for=f-cf-floor]")
    finally:
        await other.close()
    assert not page.errors, page.errors


async def test_departments_duplicate_name_and_settings_errors(
    page: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    await ui.ok("POST", "/departments", json={"name": "Facilities"})
    await _admin_signs_in(page, live_server, org, admin)
    await page.goto(path(live_server, org.slug, "/admin/departments"))
    await page.fill("#f-name", "facilities")
    await page.click("button:has-text('Add department')")
    await page.wait_for_selector("#f-name-error:not([hidden])")
    assert "exists" in await page.inner_text("#f-name-error")
    assert await page.get_attribute("#f-name", "aria-invalid") == "true"
    await page.fill("#f-name", "Finance")
    await page.click("button:has-text('Add department')")
    await page.wait_for_url("**?notice=dept_created")
    row = page.locator(".dept-row", has_text="Finance")
    await row.locator("button:has-text('Deactivate')").click()
    await page.wait_for_url("**?notice=dept_saved")
    assert "Inactive" in await page.locator(".dept-row", has_text="Finance").inner_text()
    # Rename to a taken name: the error next to the field.
    await page.locator(".dept-row", has_text="Finance").locator("text=Rename").click()
    await page.fill("#f-name", "Facilities")
    await page.click("button:has-text('Save')")
    await page.wait_for_selector("#f-name-error:not([hidden])")

    # Organization settings: a server error next to its field, then a good save.
    await page.goto(path(live_server, org.slug, "/admin/settings"))
    await page.evaluate("document.getElementById('f-reopen_window_days').removeAttribute('max')")
    await page.fill("#f-reopen_window_days", "999")
    await page.click("button:has-text('Save settings')")
    await page.wait_for_selector("#f-reopen_window_days-error:not([hidden])")
    await page.fill("#f-reopen_window_days", "14")
    await page.fill("#f-name", "Acme Renamed")
    await page.click("button:has-text('Save settings')")
    await page.wait_for_url("**?notice=settings")
    org_now = await ui.ok("GET", "/organization")
    assert org_now["name"] == "Acme Renamed" and org_now["settings"]["reopen_window_days"] == 14
    assert not page.errors, page.errors


async def test_markup_in_names_and_labels_renders_as_text(
    page: Any, browser: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    await _admin_signs_in(page, live_server, org, admin)
    await page.goto(path(live_server, org.slug, "/admin/departments"))
    await page.fill("#f-name", "Dept " + XSS)
    await page.click("button:has-text('Add department')")
    await page.wait_for_url("**?notice=dept_created")
    assert XSS in await page.inner_text(".dept-row")
    assert await injected(page) == []

    await page.goto(path(live_server, org.slug, "/admin/categories/new"))
    await page.fill("#f-name", "Cat " + XSS)
    await page.fill("#f-description", XSS)
    await page.click("button:has-text('Add field')")
    row = page.locator("[data-field-row]").last
    await row.locator("input[name$='-key']").fill("xss")
    await row.locator("input[name$='-label']").fill("Label " + XSS)
    await row.locator("input[name$='-help_text']").fill(XSS)
    await page.click("button:has-text('Add category')")
    await page.wait_for_url("**?notice=created")
    assert await page.input_value("#f-fields-0-label") == "Label " + XSS
    assert await injected(page) == []
    for url in ("/admin/categories", "/admin/audit", "/admin/users"):
        await page.goto(path(live_server, org.slug, url))
        assert await injected(page) == [], url
    await page.goto(path(live_server, org.slug, "/admin/categories"))
    assert "Cat " + XSS in await page.inner_text(".admin-table")

    requester = await ui.user("requester")
    other = await browser.new_context(viewport=DESKTOP)
    try:
        portal = await other.new_page()
        await sign_in(portal, live_server, org.slug, requester["email"])
        await portal.goto(path(live_server, org.slug, "/tickets/new"))
        await portal.select_option("#f-category", label="Cat " + XSS)
        await portal.wait_for_selector("#f-cf-xss")
        assert XSS in await portal.inner_text("label[for=f-cf-xss]")
        assert await injected(portal) == []
    finally:
        await other.close()
    assert not page.errors, page.errors


async def test_non_admins_get_the_403_page_and_forms_need_csrf(
    page: Any, live_server: str, org: Organization, ui: UiApi, admin: Session
) -> None:
    for role in ("requester", "agent"):
        user = await ui.user(role)
        await page.context.clear_cookies()
        await sign_in(page, live_server, org.slug, user["email"])
        assert "Admin" not in await page.inner_text("nav.mainnav")
        response = await page.goto(path(live_server, org.slug, "/admin/users"))
        assert response is not None and response.status == 403
        assert "You can't do that" in await page.inner_text("h1")

    await page.context.clear_cookies()
    await _admin_signs_in(page, live_server, org, admin)
    await page.goto(path(live_server, org.slug, "/admin/departments"))
    await page.fill("#f-name", "Forged")
    await page.evaluate(
        "document.querySelectorAll('input[name=csrf_token]').forEach(i => i.remove())"
    )
    await page.click("button:has-text('Add department')")
    assert "You can't do that" in await page.inner_text("h1")
    names = [d["name"] for d in await ui.ok("GET", "/departments")]
    assert "Forged" not in names

    # A cross-site post with the session cookies only.
    target = await ui.user("requester")
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    session_only = {"sd_access": cookies["sd_access"], "sd_refresh": cookies["sd_refresh"]}
    async with httpx.AsyncClient(cookies=session_only) as client:
        r = await client.post(
            path(live_server, org.slug, f"/admin/users/{target['id']}/suspend"),
            data={"csrf_token": "guess"},
        )
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert (await ui.ok("GET", f"/users/{target['id']}"))["status"] == "approved"


async def test_admin_screenshots(
    browser: Any, live_server: str, org: Organization, ui: UiApi, admin: Session, tmp_path: Path
) -> None:
    out = DOCS if os.environ.get("SERVICEDESK_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    it = await ui.ok("POST", "/departments", json={"name": "IT"})
    await ui.ok("POST", "/departments", json={"name": "Facilities"})
    await ui.ok("POST", "/departments", json={"name": "Finance"})
    for first in ("Priya", "Jonas"):
        await _register(ui, f"{first.lower()}-{random.randint(1000, 9999)}@example.com", first)
    for role, name in (("agent", "Ana"), ("agent", "Marco"), ("requester", "Lena")):
        await ui.user(role, first_name=name, department_id=it["id"])
    laptops = await ui.category(
        "Laptop problems",
        description="Broken or slow laptops.",
        department_id=it["id"],
        default_priority="high",
    )
    await ui.category("Access request", fields=[], parent_id=None)
    await ui.ok("PATCH", f"/categories/{laptops['id']}", json={"description": "Broken laptops."})
    for scheme, sizes in (
        ("light", {"desktop": DESKTOP, "phone": PHONE}),
        ("dark", {"desktop": DESKTOP}),
    ):
        for size_name, viewport in sizes.items():
            suffix = size_name + ("-dark" if scheme == "dark" else "")
            context = await browser.new_context(
                viewport=viewport, color_scheme=scheme, locale="en-GB", timezone_id="Europe/Berlin"
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            try:
                await sign_in(page, live_server, org.slug, admin.user.email)
                for name, url in (
                    ("users", "/admin/users"),
                    ("category-editor", f"/admin/categories/{laptops['id']}"),
                    ("audit-log", "/admin/audit"),
                ):
                    await page.goto(path(live_server, org.slug, url))
                    await page.wait_for_load_state("load")
                    await page.screenshot(
                        path=str(out / f"admin-{name}-{suffix}.png"), full_page=True
                    )
            finally:
                await context.close()
            assert not errors, errors
