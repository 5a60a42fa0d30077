"""The domain caches: categories, the authenticated user, hot ticket reads.

Each is checked through HTTP against the real database: a second read is a hit and sends no
query for its table; a write is seen by the writer's very next request; another organization or
another requester never gets a cached value; other processes drop the value when the
invalidation arrives.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import event, select

from servicedesk.core.cache import CACHE_HITS
from servicedesk.core.runtime import Runtime
from servicedesk.models import Category, OutboxEvent, Ticket
from servicedesk.tickets import categories
from tests.conftest import REDIS_URL, require_service
from tests.live_helpers import Server, servers
from tests.ticket_helpers import (
    API,
    CATEGORIES,
    TICKETS,
    Desk,
    desk_fixture,  # noqa: F401
    new_desk,
)


def _hits(cache: str) -> float:
    return float(CACHE_HITS.labels(cache, "l1")._value.get())  # type: ignore[attr-defined]


class Statements:
    """The SQL statements the app sends while it is active."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def reading(self, table: str) -> list[str]:
        pattern = re.compile(rf"\bFROM {table}\b")
        return [s for s in self.seen if pattern.search(s)]


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[Statements]:
    found = Statements()
    engine = runtime.db.engine.sync_engine

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        found.seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def _names(desk: Desk, who: Any = None) -> list[str]:
    r = await desk.client.get(CATEGORIES, headers=(who or desk.requester).headers)
    assert r.status_code == 200, r.text
    return [c["name"] for c in r.json()]


# Categories --------------------------------------------------------------------------------


async def test_a_second_category_listing_is_a_hit_without_sql(
    desk: Desk, statements: Statements
) -> None:
    await _names(desk)
    before = _hits("categories")
    statements.seen.clear()
    assert await _names(desk) == ["Budget Request", "Hardware", "IT Support"]
    assert _hits("categories") >= before + 1
    assert statements.reading("categories") == []


async def test_a_category_change_is_seen_by_the_next_request(desk: Desk) -> None:
    await _names(desk)
    await _names(desk)  # cached now
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.budget['id']}",
        json={"name": "Budget Approval"},
        headers=desk.admin.headers,
    )
    assert r.status_code == 200, r.text
    assert "Budget Approval" in await _names(desk)
    r = await desk.client.post(CATEGORIES, json={"name": "Facilities"}, headers=desk.admin.headers)
    assert r.status_code == 201, r.text
    assert "Facilities" in await _names(desk)
    r = await desk.client.patch(
        f"{CATEGORIES}/{r.json()['id']}", json={"is_active": False}, headers=desk.admin.headers
    )
    assert r.status_code == 200, r.text
    assert "Facilities" not in await _names(desk)


async def test_category_changes_emit_events(desk: Desk) -> None:
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.it['id']}", json={"sort_order": 5}, headers=desk.admin.headers
    )
    assert r.status_code == 200, r.text
    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        rows = (
            await session.execute(
                select(OutboxEvent.event_type, OutboxEvent.payload).where(
                    OutboxEvent.event_type.like("category.%")
                )
            )
        ).all()
    types = [t for t, _ in rows]
    assert types.count("category.created") == 3
    assert ("category.updated", desk.it["id"]) in [(t, p["category_id"]) for t, p in rows]


async def test_cached_categories_stay_in_their_organization(
    app: object, runtime: Runtime, desk: Desk
) -> None:
    other = await new_desk(app, runtime, desk.client, "Other Desk")
    r = await other.client.patch(
        f"{CATEGORIES}/{other.it['id']}", json={"name": "Other IT"}, headers=other.admin.headers
    )
    assert r.status_code == 200, r.text
    for _ in range(2):  # a miss, then a hit, in each organization
        assert "IT Support" in await _names(desk)
        assert "Other IT" not in await _names(desk)
        assert "Other IT" in await _names(other)
        assert "IT Support" not in await _names(other)


async def test_a_rolled_back_change_is_never_cached(desk: Desk) -> None:
    """A transaction that changed categories reads them fresh and stores nothing."""
    await _names(desk)

    class Abort(Exception):
        pass

    async def change_then_fail() -> None:
        async with desk.runtime.db.tenant_session(desk.org.id) as session:
            row = await session.get(Category, uuid.UUID(desk.it["id"]))
            assert row is not None
            row.name = "Never Committed"
            listed = await categories.list_categories(session, include_inactive=True)
            assert "Never Committed" in [c.name for c in listed]
            raise Abort

    with pytest.raises(Abort):
        await change_then_fail()
    assert "Never Committed" not in await _names(desk)
    assert "IT Support" in await _names(desk)


async def test_listed_categories_are_copies(desk: Desk) -> None:
    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        first = await categories.list_categories(session, include_inactive=True)
        first[0].fields.append({"key": "mutated"})
        second = await categories.list_categories(session, include_inactive=True)
    assert {"key": "mutated"} not in second[0].fields
    with pytest.raises(ValueError, match="frozen"):
        first[0].name = "x"  # type: ignore[misc]


# The authenticated user --------------------------------------------------------------------


async def test_a_second_request_reads_no_user_row(desk: Desk, statements: Statements) -> None:
    me = f"{API}/me"
    assert (await desk.client.get(me, headers=desk.agent.headers)).status_code == 200
    before = _hits("users")
    statements.seen.clear()
    r = await desk.client.get(me, headers=desk.agent.headers)
    assert r.status_code == 200 and r.json()["id"] == str(desk.agent.user.id)
    assert _hits("users") >= before + 1
    assert statements.reading("users") == []
    # The user built from the cached row is attached unchanged: nothing to write back.
    assert not [s for s in statements.seen if s.lstrip().upper().startswith("UPDATE USERS")]


async def test_routes_that_change_the_cached_user_still_work(desk: Desk) -> None:
    me = f"{API}/me"
    assert (await desk.client.get(me, headers=desk.agent.headers)).status_code == 200
    r = await desk.client.patch(me, json={"first_name": "Renamed"}, headers=desk.agent.headers)
    assert r.status_code == 200, r.text
    r = await desk.client.get(me, headers=desk.agent.headers)
    assert r.json()["first_name"] == "Renamed"


async def test_suspending_a_user_refuses_their_next_request(desk: Desk) -> None:
    me = f"{API}/me"
    for _ in range(2):
        assert (await desk.client.get(me, headers=desk.agent.headers)).status_code == 200
    r = await desk.client.post(
        f"{API}/users/{desk.agent.user.id}/suspend", headers=desk.admin.headers
    )
    assert r.status_code == 200, r.text
    r = await desk.client.get(me, headers=desk.agent.headers)
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


async def test_ending_every_session_refuses_the_next_request(desk: Desk) -> None:
    me = f"{API}/me"
    for _ in range(2):
        assert (await desk.client.get(me, headers=desk.agent2.headers)).status_code == 200
    r = await desk.client.delete(
        f"{API}/users/{desk.agent2.user.id}/sessions", headers=desk.admin.headers
    )
    assert r.status_code in (200, 204), r.text
    assert (await desk.client.get(me, headers=desk.agent2.headers)).status_code == 401


async def test_a_role_change_applies_to_the_next_request(desk: Desk) -> None:
    users = f"{API}/users"
    assert (await desk.client.get(users, headers=desk.manager.headers)).status_code == 403
    r = await desk.client.patch(
        f"{users}/{desk.manager.user.id}", json={"role": "admin"}, headers=desk.admin.headers
    )
    assert r.status_code == 200, r.text
    # A role change ends the sessions; the new role applies from the next sign-in. Either way
    # the old, cached role never answers again.
    r = await desk.client.get(users, headers=desk.manager.headers)
    assert r.status_code in (200, 401)
    assert r.status_code != 403


# Hot ticket reads --------------------------------------------------------------------------


async def test_a_second_ticket_read_is_a_hit_without_sql(
    desk: Desk, statements: Statements
) -> None:
    ticket = await desk.file()
    for path in (f"{TICKETS}/{ticket['id']}", f"{TICKETS}/by-number/{ticket['number']}"):
        assert (await desk.client.get(path, headers=desk.agent.headers)).status_code == 200
        before = _hits("tickets")
        statements.seen.clear()
        r = await desk.client.get(path, headers=desk.agent.headers)
        assert r.status_code == 200 and r.json()["id"] == ticket["id"]
        assert _hits("tickets") >= before + 1
        assert statements.reading("tickets") == []


async def _stored_version(desk: Desk, ticket_id: str) -> int:
    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        row = await session.get(Ticket, uuid.UUID(ticket_id))
        assert row is not None
        return row.version


async def test_a_changed_ticket_is_never_served_with_its_old_version(desk: Desk) -> None:
    ticket = await desk.file()
    path = f"{TICKETS}/{ticket['id']}"
    by_number = f"{TICKETS}/by-number/{ticket['number']}"

    async def check() -> dict[str, Any]:
        stored = await _stored_version(desk, ticket["id"])
        for url in (path, by_number):
            for who in (desk.agent, desk.requester):
                r = await desk.client.get(url, headers=who.headers)
                assert r.status_code == 200, r.text
                assert r.json()["version"] == stored
                assert r.headers["etag"] == f'"{stored}"'
        return r.json()  # type: ignore[no-any-return]

    await check()
    r = await desk.patch(ticket, priority="critical")
    assert r.status_code == 200, r.text
    assert (await check())["priority"] == "critical"
    assert (await desk.move(ticket, "in_progress")).status_code == 200
    read = await check()
    assert read["status"] == "in_progress"
    await desk.comment(ticket, "We are on it.")
    read = await check()
    assert read["first_response_at"] is not None
    # The answer's per-viewer fields follow the viewer, not whoever filled the cache.
    r = await desk.client.get(path, headers=desk.agent.headers)
    assert r.json()["allowed_transitions"] != read["allowed_transitions"]


async def test_another_requester_gets_404_from_a_cached_ticket(desk: Desk) -> None:
    ticket = await desk.file(desk.requester)
    for url in (f"{TICKETS}/{ticket['id']}", f"{TICKETS}/by-number/{ticket['number']}"):
        for _ in range(2):
            r = await desk.client.get(url, headers=desk.requester.headers)
            assert r.status_code == 200
        r = await desk.client.get(url, headers=desk.requester2.headers)
        assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_department_restriction_applies_to_cached_tickets(desk: Desk) -> None:
    ticket = await desk.file()
    url = f"{TICKETS}/{ticket['id']}"
    assert (await desk.client.get(url, headers=desk.admin.headers)).status_code == 200
    assert (await desk.client.get(url, headers=desk.agent.headers)).status_code == 200
    await desk.set_settings(agents_restricted_to_departments=True)
    # The agent has no department and the ticket is not assigned to them.
    assert (await desk.client.get(url, headers=desk.agent.headers)).status_code == 404
    assert (await desk.client.get(url, headers=desk.admin.headers)).status_code == 200


async def test_cached_tickets_stay_in_their_organization(
    app: object, runtime: Runtime, desk: Desk
) -> None:
    other = await new_desk(app, runtime, desk.client, "Other Desk")
    mine = await desk.file()
    theirs = await other.file()
    # Numbers restart in every organization.
    assert mine["number"] == theirs["number"]
    for _ in range(2):
        r = await desk.client.get(
            f"{TICKETS}/by-number/{mine['number']}", headers=desk.admin.headers
        )
        assert r.json()["id"] == mine["id"]
        r = await other.client.get(
            f"{TICKETS}/by-number/{theirs['number']}", headers=other.admin.headers
        )
        assert r.json()["id"] == theirs["id"]
        r = await other.client.get(f"{TICKETS}/{mine['id']}", headers=other.admin.headers)
        assert r.status_code == 404


# Metrics -----------------------------------------------------------------------------------


async def test_each_cache_reports_under_its_own_label(desk: Desk) -> None:
    ticket = await desk.file()
    for _ in range(2):
        await _names(desk)
        await desk.get(ticket)
    text = (await desk.client.get("/metrics")).text
    for name in ("categories", "users", "tickets"):
        assert f'servicedesk_cache_hits_total{{cache="{name}",layer="l1"}}' in text
        assert f'servicedesk_cache_misses_total{{cache="{name}",layer="l1"}}' in text
        assert f'servicedesk_cache_entries{{cache="{name}"}}' in text


# Other processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_pair(database_url: str) -> Iterator[list[Server]]:
    parts = urlsplit(REDIS_URL)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    prefix = f"sdtest-{secrets.token_hex(4)}"
    with servers(database_url, 2, redis_url=REDIS_URL, redis_prefix=prefix) as pair:
        yield pair


@pytest.fixture(scope="module")
def pg_pair(database_url: str) -> Iterator[list[Server]]:
    with servers(database_url, 2) as pair:
        yield pair


async def _eventually(check: Any, what: str, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _changes_reach_the_other_process(pair: list[Server], desk: Desk) -> None:
    one, two = pair
    ticket = await desk.file()
    async with (
        httpx.AsyncClient(base_url=one.http, timeout=10) as reader,
        httpx.AsyncClient(base_url=two.http, timeout=10) as writer,
    ):

        async def names() -> list[str]:
            r = await reader.get(CATEGORIES, headers=desk.requester.headers)
            assert r.status_code == 200, r.text
            return [c["name"] for c in r.json()]

        async def version() -> int:
            r = await reader.get(f"{TICKETS}/{ticket['id']}", headers=desk.agent.headers)
            assert r.status_code == 200, r.text
            return int(r.json()["version"])

        first = 0

        async def all_cached() -> bool:
            # Process one caches all three. The events of the ticket's creation (and of the
            # test's sign-ins) may still arrive and invalidate an entry between two reads, so
            # read until each cache has served a hit.
            nonlocal first
            assert "IT Support" in await names()
            first = await version()
            metrics = (await reader.get("/metrics")).text
            for name in ("categories", "tickets", "users"):
                hits = re.search(
                    rf'servicedesk_cache_hits_total{{cache="{name}",layer="l1"}} (\S+)', metrics
                )
                if hits is None or float(hits.group(1)) < 1:
                    return False
            return True

        await _eventually(all_cached, "process one never served a cache hit", within=10.0)

        r = await writer.patch(
            f"{CATEGORIES}/{desk.it['id']}", json={"name": "IT Help"}, headers=desk.admin.headers
        )
        assert r.status_code == 200, r.text

        async def renamed() -> bool:
            return "IT Help" in await names()

        await _eventually(renamed, "process one kept the old categories")

        r = await writer.patch(
            f"{TICKETS}/{ticket['id']}",
            json={"version": first, "priority": "low"},
            headers=desk.agent.headers,
        )
        assert r.status_code == 200, r.text

        async def bumped() -> bool:
            return await version() == first + 1

        await _eventually(bumped, "process one kept the old ticket")

        r = await writer.post(
            f"{API}/users/{desk.agent.user.id}/suspend", headers=desk.admin.headers
        )
        assert r.status_code == 200, r.text

        async def refused() -> bool:
            r = await reader.get(f"{API}/me", headers=desk.agent.headers)
            return r.status_code == 401

        await _eventually(refused, "process one still accepted the suspended user")


@pytest.mark.redis
async def test_changes_reach_the_other_process_through_redis(
    redis_pair: list[Server], desk: Desk
) -> None:
    await _changes_reach_the_other_process(redis_pair, desk)


async def test_changes_reach_the_other_process_through_postgres(
    pg_pair: list[Server], desk: Desk
) -> None:
    await _changes_reach_the_other_process(pg_pair, desk)
