"""Live updates through real `servicedesk serve` processes sharing the tests' database.

Two processes share Redis (events on Redis and NOTIFY, presence on Redis) and two others share
only PostgreSQL (events and presence by NOTIFY). Users and categories are made in-process; the
tokens are valid on the servers because they share the test SECRET_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from servicedesk.models import Organization, Role, User
from tests.conftest import REDIS_URL, Session, require_service
from tests.live_helpers import (
    Server,
    close_code,
    launch_server,
    live,
    servers,
    stop_server,
    wait_ready,
)
from tests.ticket_helpers import TICKETS, Desk, desk_fixture  # noqa: F401

Login = Callable[..., Awaitable[Session]]
MakeUser = Callable[..., Awaitable[User]]


def _require_redis() -> None:
    parts = urlsplit(REDIS_URL)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)


@pytest.fixture(scope="module")
def redis_pair(database_url: str) -> Iterator[list[Server]]:
    """Two processes sharing Redis (and the database)."""
    _require_redis()
    prefix = f"sdtest-{secrets.token_hex(4)}"
    with servers(database_url, 2, redis_url=REDIS_URL, redis_prefix=prefix) as pair:
        yield pair


@pytest.fixture(scope="module")
def pg_pair(database_url: str) -> Iterator[list[Server]]:
    """Two processes sharing only PostgreSQL."""
    with servers(database_url, 2) as pair:
        yield pair


async def file_on(server: Server, desk: Desk, who: Session | None = None) -> dict[str, Any]:
    who = who or desk.requester
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        r = await http.post(TICKETS, json=desk.ticket_body(), headers=who.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def comment_on(
    server: Server, desk: Desk, ticket: dict[str, Any], who: Session, *, internal: bool
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        r = await http.post(
            f"{TICKETS}/{ticket['id']}/comments",
            json={"body": "A note" if internal else "A reply", "is_internal": internal},
            headers=who.headers,
        )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# Fan-out across processes ----------------------------------------------------------------


@pytest.mark.redis
async def test_event_created_on_one_process_reaches_a_socket_on_the_other(
    redis_pair: list[Server], desk: Desk, other_org: Organization, make_user: MakeUser, login: Login
) -> None:
    one, two = redis_pair
    stranger = await login(await make_user(other_org, Role.ADMIN), other_org)
    async with (
        live(one, desk.agent) as agent,
        live(one, desk.requester) as requester,
        live(one, stranger) as outsider,
    ):
        started = time.perf_counter()
        ticket = await file_on(two, desk)
        event = (await agent.event("ticket.created", ticket_id=ticket["id"], within=1.0))["event"]
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0
        assert event["organization_id"] == str(desk.org.id)
        assert event["payload"]["number"] == ticket["number"]
        assert "description" not in event["payload"]
        # The requester hears of their own ticket through their user room.
        await requester.event("ticket.created", ticket_id=ticket["id"], within=1.0)
        # Nothing of organization A reaches organization B.
        assert [m for m in await outsider.drain(1.0) if m["type"] == "event"] == []


@pytest.mark.redis
async def test_each_event_arrives_once_whichever_paths_carry_it(
    redis_pair: list[Server], desk: Desk
) -> None:
    """An event reaches a process by its own commit or Redis, and by NOTIFY: sent once."""
    one, two = redis_pair
    async with live(one, desk.admin) as admin:
        tickets = [await file_on(server, desk) for server in (one, two, one, two)]
        ids = {t["id"] for t in tickets}
        for ticket in tickets:
            await admin.event("ticket.created", ticket_id=ticket["id"])
        await admin.drain(1.0)  # the slower copies have come by now
    created = [e for e in admin.events() if e["event_type"] == "ticket.created"]
    assert {e["payload"]["ticket_id"] for e in created} == ids
    counts = Counter(e["event_id"] for e in admin.events())
    assert set(counts.values()) == {1}, counts


async def test_without_redis_events_and_presence_travel_by_notify(
    pg_pair: list[Server], desk: Desk
) -> None:
    one, two = pg_pair
    async with live(one, desk.agent) as agent, live(two, desk.agent2) as agent2:
        ticket = await file_on(two, desk)
        await agent.event("ticket.created", ticket_id=ticket["id"], within=1.0)
        room = f"ticket:{ticket['id']}"
        await agent.send(type="join", room=room)
        await agent.next("joined")
        await agent2.send(type="join", room=room)
        await agent2.next("joined")
        await agent2.send(type="typing", room=room)
        typing = await agent.next("typing", where=lambda m: len(m["users"]) == 1)
        assert typing["users"][0]["id"] == str(desk.agent2.user.id)


# Who sees what ----------------------------------------------------------------------------


@pytest.mark.redis
async def test_requester_never_receives_internal_notes(
    redis_pair: list[Server], desk: Desk
) -> None:
    one, two = redis_pair
    ticket = await file_on(two, desk)
    async with live(one, desk.requester) as requester, live(one, desk.agent) as agent:
        await requester.send(type="join", room=f"ticket:{ticket['id']}")
        await requester.next("joined")
        note = await comment_on(two, desk, ticket, desk.agent, internal=True)
        reply = await comment_on(two, desk, ticket, desk.agent, internal=False)
        await agent.event("comment.created", comment_id=note["id"])
        await agent.event("comment.created", comment_id=reply["id"])
        got = await requester.event("comment.created", comment_id=reply["id"])
        assert got["event"]["payload"]["is_internal"] is False
        await requester.drain(0.5)
    comments = [e for e in requester.events() if e["event_type"] == "comment.created"]
    comment_ids = {e["payload"]["comment_id"] for e in comments}
    assert comment_ids == {reply["id"]}
    # Nor ephemeral signals: those are for staff.
    assert not [m for m in requester.received if m["type"] in ("presence", "typing", "replying")]


@pytest.mark.redis
async def test_other_requesters_tickets_stay_private(redis_pair: list[Server], desk: Desk) -> None:
    one, two = redis_pair
    async with live(one, desk.requester2) as other:
        ticket = await file_on(two, desk)  # desk.requester's
        await comment_on(two, desk, ticket, desk.agent, internal=False)
        assert [m for m in await other.drain(1.0) if m["type"] == "event"] == []


@pytest.mark.redis
async def test_joining_a_room_you_may_not_see_is_refused(
    redis_pair: list[Server],
    desk: Desk,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
) -> None:
    one, two = redis_pair
    ticket = await file_on(two, desk)
    stranger = await login(await make_user(other_org, Role.ADMIN), other_org)
    async with live(one, desk.requester2) as other, live(one, stranger) as outsider:
        cases = [
            (other, f"ticket:{ticket['id']}", "not_found"),
            (other, f"ticket:{uuid.uuid4()}", "not_found"),
            (other, f"org:{desk.org.id}", "forbidden"),
            (other, f"user:{desk.requester.user.id}", "forbidden"),
            (other, "ticket:42", "invalid_room"),
            (outsider, f"ticket:{ticket['id']}", "not_found"),
            (outsider, f"org:{desk.org.id}", "forbidden"),
        ]
        for client, room, code in cases:
            await client.send(type="join", room=room)
            error = await client.next()
            assert error["type"] == "error" and error["code"] == code, (room, error)
            assert error["room"] == room
        # Still open and usable, with nothing of the ticket received.
        await other.send(type="ping", id=7)
        assert (await other.next("pong"))["id"] == 7
        await comment_on(two, desk, ticket, desk.agent, internal=False)
        assert [m for m in await other.drain(0.8) if m["type"] == "event"] == []
        # Signals for a room one is not in are refused too.
        await other.send(type="typing", room=f"ticket:{ticket['id']}")
        assert (await other.next("error"))["code"] == "not_joined"


async def test_bad_credentials_close_the_socket(
    pg_pair: list[Server], desk: Desk, other_org: Organization
) -> None:
    one, _ = pg_pair
    slug = desk.org.slug
    token = desk.agent.access_token
    assert await close_code(one, token="not-a-token", tenant=slug) == 4401
    assert await close_code(one, tenant=slug) == 4401
    assert await close_code(one, token=desk.agent.refresh_token, tenant=slug) == 4401
    # A token of organization A presented to organization B.
    assert await close_code(one, token=token, tenant=other_org.slug) == 4401
    assert await close_code(one, token=token, tenant="no-such-org") == 4404
    assert await close_code(one, token=token) == 4404
    # The /t/{slug}/ form and the X-Tenant-ID header name the tenant too.
    async with live(one, token=token, path=f"/t/{slug}/api/v1/ws") as client:
        assert client.received[0]["user"]["id"] == str(desk.agent.user.id)
    async with live(one, token=token, headers={"X-Tenant-ID": slug}):
        pass
    # The cookie works only from this site's pages (no cross-site socket hijacking).
    cookie = {"Cookie": f"sd_access={token}", "X-Tenant-ID": slug}
    assert await close_code(one, headers=cookie) == 4403
    evil = {**cookie, "Origin": "https://evil.example"}
    assert await close_code(one, headers=evil) == 4403
    same = {**cookie, "Origin": one.http}
    async with live(one, headers=same) as client:
        assert client.received[0]["organization_id"] == str(desk.org.id)


async def test_suspending_a_user_closes_their_sockets(pg_pair: list[Server], desk: Desk) -> None:
    one, two = pg_pair
    async with live(one, desk.agent) as agent:
        async with httpx.AsyncClient(base_url=two.http, timeout=10) as http:
            r = await http.post(
                f"/api/v1/users/{desk.agent.user.id}/suspend", headers=desk.admin.headers
            )
        assert r.status_code == 200, r.text
        assert await agent.closed_with(3.0) == 4401


# Presence, typing, replying -------------------------------------------------------------


@pytest.mark.redis
async def test_presence_typing_replying_expire_and_collisions_are_announced(
    redis_pair: list[Server], desk: Desk
) -> None:
    one, two = redis_pair
    ticket = await file_on(one, desk)
    room = f"ticket:{ticket['id']}"
    ana, ben = str(desk.agent.user.id), str(desk.agent2.user.id)

    def holders(message: dict[str, Any]) -> set[str]:
        return {u["id"] for u in message["users"]}

    async with (
        live(one, desk.agent) as agent,
        live(two, desk.agent2) as agent2,
        live(one, desk.requester) as requester,
    ):
        await agent.send(type="join", room=room)
        await agent.next("joined")
        await agent2.send(type="join", room=room)
        await agent2.next("joined")
        await requester.send(type="join", room=room)
        await requester.next("joined")
        # Both see both viewing, across the two processes. The requester is viewing too (staff
        # see requesters), and may arrive before or after Ben: require both agents, not equality.
        await agent.next("presence", where=lambda m: {ana, ben} <= holders(m))
        await agent2.next("presence", where=lambda m: {ana, ben} <= holders(m))

        # Typing lapses after its TTL (0.8 s here) without a refresh.
        await agent2.send(type="typing", room=room)
        shown = await agent.next("typing", where=lambda m: holders(m) == {ben})
        assert shown["users"][0]["name"]
        started = time.monotonic()
        await agent.next("typing", where=lambda m: holders(m) == set(), within=10)
        # Lapses after the TTL (never before it); the upper bound only leaves room for a slow CI.
        assert 0.4 < time.monotonic() - started < 9.5

        # Two agents replying at once: both are warned.
        await agent.send(type="replying", room=room)
        await agent2.next("replying", where=lambda m: holders(m) == {ana})
        await agent2.send(type="replying", room=room)
        for client in (agent, agent2):
            collision = await client.next("collision")
            assert collision["room"] == room
            assert holders(collision) == {ana, ben}
        # Stopping clears it at once.
        await agent.send(type="replying", room=room, active=False)
        await agent2.next("replying", where=lambda m: ana not in holders(m))
        await agent2.send(type="replying", room=room, active=False)
        await agent.next("replying", where=lambda m: holders(m) == set())

        # Leaving the room ends one's presence for the others.
        shown_now = agent.latest("presence", room)
        await agent2.send(type="leave", room=room)
        await agent2.next("left")
        if shown_now is not None and ben in holders(shown_now):
            await agent.next("presence", where=lambda m: ben not in holders(m))

    signals = {"presence", "typing", "replying", "collision"}
    assert not [m for m in requester.received if m["type"] in signals]


# SSE ----------------------------------------------------------------------------------------


async def _sse_lines(lines: AsyncIterator[str], until: Callable[[list[str]], bool]) -> list[str]:
    """Lines of an SSE response until `until(lines so far)` holds."""
    got: list[str] = []
    async with asyncio.timeout(5):
        while not until(got):
            got.append(await anext(lines))
    return got


def _sse_events(lines: list[str]) -> list[tuple[int | None, dict[str, Any]]]:
    out: list[tuple[int | None, dict[str, Any]]] = []
    current: int | None = None
    for line in lines:
        if line.startswith("id: "):
            current = int(line[4:])
        elif line.startswith("data: "):
            out.append((current, orjson.loads(line[6:])))
            current = None
    return out


async def test_sse_stream_sends_events_heartbeats_and_resumes(
    pg_pair: list[Server], desk: Desk
) -> None:
    one, two = pg_pair
    async with httpx.AsyncClient(base_url=one.http, timeout=10) as http:
        async with http.stream(
            "GET", "/api/v1/events/stream", headers=desk.agent.headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = response.aiter_lines()
            first = await _sse_lines(stream, lambda ls: any('"type":"hello"' in x for x in ls))
            ticket = await file_on(two, desk)

            def got_it(lines: list[str]) -> bool:
                return any(
                    m.get("type") == "event" and m["event"]["payload"]["ticket_id"] == ticket["id"]
                    for _, m in _sse_events(lines)
                )

            lines = first + await _sse_lines(stream, got_it)
            lines += await _sse_lines(stream, lambda ls: ls.count(": heartbeat") >= 2)
        assert ": heartbeat" in lines
        messages = _sse_events(lines)
        assert messages[0][1]["type"] == "hello"
        seq = next(s for s, m in messages if m.get("type") == "event")
        assert seq is not None

        # Reconnecting with Last-Event-ID just before it replays the event (once).
        headers = {**desk.agent.headers, "Last-Event-ID": str(seq - 1)}
        async with http.stream("GET", "/api/v1/events/stream", headers=headers) as response:
            lines = await _sse_lines(
                response.aiter_lines(), lambda ls: any('"type":"replay"' in line for line in ls)
            )
        replayed = [(s, m) for s, m in _sse_events(lines) if m["type"] == "event"]
        assert [s for s, _ in replayed] == [seq]

        # A requester's stream may not name a room they cannot see.
        r = await http.get(
            "/api/v1/events/stream",
            params={"rooms": f"ticket:{ticket['id']}"},
            headers=desk.requester2.headers,
        )
        assert r.status_code == 404
        r = await http.get("/api/v1/events/stream", headers={"X-Tenant-ID": desk.org.slug})
        assert r.status_code == 401


async def test_websocket_resumes_after_a_seq(pg_pair: list[Server], desk: Desk) -> None:
    one, two = pg_pair
    async with live(one, desk.requester) as first:
        ticket = await file_on(two, desk)
        seq = (await first.event("ticket.created", ticket_id=ticket["id"]))["seq"]
    async with live(one, desk.requester, since=seq - 1) as again:
        replay = await again.next("replay")
        assert replay["count"] >= 1
    assert [m["seq"] for m in again.received if m["type"] == "event"][:1] == [seq]


# Cache invalidation across processes ------------------------------------------------------


@pytest.mark.redis
async def test_an_organization_change_reaches_the_other_process_cache(
    redis_pair: list[Server], desk: Desk
) -> None:
    """Process 1 caches the tenant; a settings change made on process 2 invalidates it there."""
    one, two = redis_pair
    await file_on(one, desk)
    async with httpx.AsyncClient(base_url=one.http, timeout=10) as http:
        r = await http.get(TICKETS, headers=desk.agent.headers)
        assert r.status_code == 200 and r.json()["items"]  # unrestricted: the agent sees all
        async with httpx.AsyncClient(base_url=two.http, timeout=10) as other:
            r = await other.patch(
                "/api/v1/organization",
                json={"settings": {"agents_restricted_to_departments": True}},
                headers=desk.admin.headers,
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 3
        while True:
            r = await http.get(TICKETS, headers=desk.agent.headers)
            assert r.status_code == 200
            if not r.json()["items"]:  # the agent has no department: now sees none
                break
            assert time.monotonic() < deadline, "process 1 kept the stale tenant"
            await asyncio.sleep(0.1)


async def test_stopping_the_server_ends_open_streams(database_url: str, desk: Desk) -> None:
    """A SIGTERM closes SSE streams (which never end by themselves) and WebSockets at once."""
    server = launch_server(database_url)
    try:
        await asyncio.to_thread(wait_ready, server)
        async with (
            httpx.AsyncClient(base_url=server.http, timeout=10) as http,
            http.stream("GET", "/api/v1/events/stream", headers=desk.agent.headers) as response,
            live(server, desk.agent) as socket,
        ):
            lines = response.aiter_lines()
            await _sse_lines(lines, lambda ls: any('"type":"hello"' in x for x in ls))
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert await socket.closed_with(5.0) == 1012
            with contextlib.suppress(httpx.HTTPError):
                async with asyncio.timeout(5):
                    async for _ in lines:
                        pass
            await asyncio.to_thread(server.proc.wait, 10)
            assert time.monotonic() - started < 8
    finally:
        stop_server(server)


async def test_a_fresh_token_extends_the_socket_another_users_ends_it(
    pg_pair: list[Server], desk: Desk, login: Login
) -> None:
    one, _ = pg_pair
    async with live(one, desk.agent) as agent:
        fresh = await login(desk.agent.user, desk.org)
        await agent.send(type="auth", token=fresh.access_token)
        assert (await agent.next("authenticated"))["expires_at"] > time.time()
        await agent.send(type="auth", token=desk.agent2.access_token)
        assert await agent.closed_with(3.0) == 4401
