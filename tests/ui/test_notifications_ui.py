"""The notification centre in the browser: an agent's public reply reaches the requester's
bell; opening the notification lands on the ticket and the count drops."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from servicedesk.core.events import envelope
from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, OutboxEvent
from servicedesk.notifications import service
from tests.ui.helpers import UiApi, path, sign_in

pytestmark = pytest.mark.ui
# A function, not an expression: a string predicate is eval'ed, which the CSP refuses.
ZERO = (
    "() => (document.querySelector('#bell') || {textContent: ''}).textContent.includes('0 unread')"
)


async def fan_out(runtime: Runtime, org_id: uuid.UUID) -> None:
    """What the job handler does: `notify_for_event` for each of the organization's events."""
    async with runtime.db.tenant_session(org_id) as session:
        rows = list(
            (await session.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars()
        )
    for row in rows:
        async with runtime.db.tenant_session(org_id) as session:
            await service.notify_for_event(session, runtime, envelope(row))


async def test_a_reply_rings_the_bell_and_opening_it_lands_on_the_ticket(
    page: Any, live_server: str, org: Organization, ui: UiApi, runtime: Runtime
) -> None:
    category = await ui.category("Printers")
    requester = await ui.user("requester", first_name="Rita")
    agent = await ui.user("agent", first_name="Ben")
    as_requester = await ui.as_user(requester["email"])
    as_agent = await ui.as_user(agent["email"])
    ticket = await as_requester.ticket(category, subject="Printer jams on every page")

    await sign_in(page, live_server, org.slug, requester["email"])
    await page.wait_for_function(ZERO)
    assert await page.locator("#bell .bell-count").count() == 0

    await as_agent.ok(
        "POST",
        f"/tickets/{ticket['id']}/comments",
        json={"body": "Please try the tray on the left."},
    )
    await fan_out(runtime, org.id)

    # The count comes with the next page (htmx asks for the bell on load).
    await page.reload()
    await page.wait_for_selector("#bell .bell-count")
    assert await page.inner_text("#bell .bell-count") == "1"
    assert "1 unread" in await page.inner_text("#bell")

    await page.click("#bell")
    await page.wait_for_url("**/notifications")
    item = page.locator(".notif-unread .notif-open")
    assert await item.count() == 1
    assert "Ben Agent replied on" in await item.inner_text()
    assert "Please try the tray on the left." in await item.inner_text()

    await item.click()
    await page.wait_for_url(path(live_server, org.slug, f"/tickets/{ticket['number']}"))
    assert "Printer jams on every page" in await page.inner_text("h1")
    await page.wait_for_function(ZERO)  # the ticket page's bell, fetched after the read
    assert await page.locator("#bell .bell-count").count() == 0

    await page.click("#bell")
    await page.wait_for_url("**/notifications")
    assert await page.locator(".notif-unread").count() == 0
    assert await page.locator(".notif").count() == 1
    assert page.errors == []
