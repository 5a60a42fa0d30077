"""The fragments the pages' live client fetches (`web/live_pages.py`, `portal.ticket_updates`):
the same visibility as the pages (404 for missing, another organization's, another
requester's ticket), internal notes never in the requester's fragment, a clear error for a
malformed `after` cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from servicedesk.core.runtime import Runtime
from tests.conftest import Session, client_for
from tests.ticket_helpers import Desk, desk_fixture, new_desk  # noqa: F401

NOTE = "Internal: the requester's manager approved the budget already"
REPLY = "Public: we are replacing the screen tomorrow"


def page_client(app: object, who: Session) -> httpx.AsyncClient:
    """A browser-like client: the session cookie, pages under `/t/{slug}`."""
    c = client_for(app, cookies={"sd_access": who.access_token})
    c.base_url = httpx.URL(f"http://testserver/t/{who.org.slug}")
    return c


@pytest.fixture
async def ticket(desk: Desk) -> dict[str, Any]:
    return await desk.file()


@pytest.fixture
async def agent_page(app: object, desk: Desk) -> AsyncIterator[httpx.AsyncClient]:
    async with page_client(app, desk.agent) as c:
        yield c


@pytest.fixture
async def requester_page(app: object, desk: Desk) -> AsyncIterator[httpx.AsyncClient]:
    async with page_client(app, desk.requester) as c:
        yield c


async def test_agent_comments_fragment_has_new_replies_and_notes(
    desk: Desk, ticket: dict[str, Any], agent_page: httpx.AsyncClient
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    old = await desk.comment(ticket, "An older reply")
    cut = datetime.fromisoformat(old["created_at"])
    note = await desk.comment(ticket, NOTE, internal=True)
    reply = await desk.comment(ticket, REPLY)
    url = f"/agent/tickets/{ticket['number']}/comments"

    r = await agent_page.get(url, params={"after": cut.isoformat()})
    assert r.status_code == 200, r.text
    assert f'id="comment-{note["id"]}"' in r.text and NOTE.split(":")[1].strip() in r.text
    assert f'id="comment-{reply["id"]}"' in r.text
    assert f'id="comment-{old["id"]}"' not in r.text
    assert "<html" not in r.text  # a fragment, not a page

    # `Z` and a lower-case number work too; no `after` gives every comment.
    r = await agent_page.get(url.lower(), params={"after": before.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert r.status_code == 200 and f'id="comment-{old["id"]}"' in r.text
    r = await agent_page.get(url)
    assert r.status_code == 200 and r.text.count('<li class="comment') == 3


async def test_agent_props_fragment(
    desk: Desk, ticket: dict[str, Any], agent_page: httpx.AsyncClient
) -> None:
    await desk.patch(ticket, priority="critical")
    r = await agent_page.get(f"/agent/tickets/{ticket['number']}/props")
    assert r.status_code == 200, r.text
    assert 'id="props"' in r.text and 'id="ticket-badges"' in r.text
    assert 'data-version="2"' in r.text
    assert "Critical" in r.text


async def test_queue_rows_fragment_keeps_the_filters(
    desk: Desk, ticket: dict[str, Any], agent_page: httpx.AsyncClient
) -> None:
    r = await agent_page.get("/agent/rows", params={"tab": "unassigned"})
    assert r.status_code == 200, r.text
    assert 'id="queue-results"' in r.text and ticket["number"] in r.text
    assert "tab=unassigned" in r.text  # the refresh link keeps the view
    r = await agent_page.get("/agent/rows", params={"tab": "mine"})
    assert r.status_code == 200 and ticket["number"] not in r.text
    r = await agent_page.get("/agent/rows", params={"tab": "unassigned", "priority": "low"})
    assert r.status_code == 200
    assert (ticket["number"] in r.text) == (ticket["priority"] == "low")


async def test_requester_fragment_never_has_internal_notes(
    desk: Desk, ticket: dict[str, Any], requester_page: httpx.AsyncClient
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    note = await desk.comment(ticket, NOTE, internal=True)
    reply = await desk.comment(ticket, REPLY)
    r = await requester_page.get(
        f"/tickets/{ticket['number']}/updates",
        params={"after": start.isoformat(), "status": ticket["status"]},
    )
    assert r.status_code == 200, r.text
    assert f'id="comment-{reply["id"]}"' in r.text and "replacing the screen" in r.text
    assert note["id"] not in r.text and "manager approved" not in r.text
    # Only the note is new: nothing to show.
    r = await requester_page.get(
        f"/tickets/{ticket['number']}/updates",
        params={"after": reply["created_at"], "status": ticket["status"]},
    )
    assert r.status_code == 204


@pytest.mark.parametrize(
    "path",
    [
        "/agent/tickets/{n}/comments",
        "/agent/tickets/{n}/props",
    ],
)
async def test_agent_fragments_not_found(
    desk: Desk,
    ticket: dict[str, Any],
    agent_page: httpx.AsyncClient,
    app: object,
    runtime: Runtime,
    client: httpx.AsyncClient,
    path: str,
) -> None:
    for number in ("nope", "TKT2026999999", "TKT" + "9" * 20, "../../admin"):
        r = await agent_page.get(path.format(n=number))
        assert r.status_code == 404, (number, r.status_code)
    # Another organization's ticket: 404 for its agents.
    other = await new_desk(app, runtime, client, "Other Org")
    async with page_client(app, other.agent) as stranger:
        r = await stranger.get(path.format(n=ticket["number"]))
        assert r.status_code == 404
    # Requesters get the 403 page (the agent workspace is staff only).
    async with page_client(app, desk.requester) as requester:
        r = await requester.get(path.format(n=ticket["number"]))
        assert r.status_code == 403


async def test_requester_fragment_of_another_ticket_is_404(
    desk: Desk, ticket: dict[str, Any], app: object, runtime: Runtime, client: httpx.AsyncClient
) -> None:
    url = f"/tickets/{ticket['number']}/updates"
    async with page_client(app, desk.requester2) as other_requester:
        r = await other_requester.get(url)
        assert r.status_code == 404
        r = await other_requester.get("/tickets/TKT2026999999/updates")
        assert r.status_code == 404
    other = await new_desk(app, runtime, client, "Other Org")
    async with page_client(app, other.requester) as stranger:
        r = await stranger.get(url)
        assert r.status_code == 404


@pytest.mark.parametrize("after", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-25T10:00:00"])
async def test_garbage_after_is_a_clear_400(
    desk: Desk,
    ticket: dict[str, Any],
    agent_page: httpx.AsyncClient,
    requester_page: httpx.AsyncClient,
    after: str,
) -> None:
    for client, url in (
        (agent_page, f"/agent/tickets/{ticket['number']}/comments"),
        (requester_page, f"/tickets/{ticket['number']}/updates"),
    ):
        r = await client.get(url, params={"after": after})
        assert r.status_code == 400, (url, r.status_code)
        assert "ISO 8601 time with a time zone" in r.text
        # Far too long is a validation error before anything else.
        r = await client.get(url, params={"after": "2" * 100})
        assert r.status_code == 422
