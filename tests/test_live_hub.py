"""The live hub in-process: visibility rules, the fan-out's de-duplication and catch-up, signals
and slow clients (the end-to-end behaviour through real servers is in test_live.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from servicedesk.core import events
from servicedesk.core.actor import SYSTEM
from servicedesk.core.db import Database
from servicedesk.core.runtime import Runtime
from servicedesk.live.hub import SLOW_CLIENT, Connection, Hub
from servicedesk.live.policy import LiveEvent, default_rooms, may_join, may_receive
from servicedesk.live.protocol import ProtocolError, Room, parse_client_message
from servicedesk.live.service import LiveService, RedactTokens
from servicedesk.models import Role, User
from servicedesk.tickets.auth import Viewer
from tests.ticket_helpers import Desk, desk_fixture  # noqa: F401

ORG = uuid.uuid4()
OTHER_ORG = uuid.uuid4()
DEPT = uuid.uuid4()


def person(role: Role, department: uuid.UUID | None = None) -> User:
    return User(
        id=uuid.uuid4(),
        role=role,
        first_name="Test",
        last_name=role.capitalize(),
        department_id=department,
        organization_id=ORG,
    )


def ticket_event(event_type: str = "ticket.created", **payload: Any) -> LiveEvent:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": "2026-11-25T12:00:00+00:00",
        "organization_id": str(ORG),
        "actor": {"type": "system", "id": None},
        "payload": {
            "ticket_id": str(uuid.uuid4()),
            "requester_id": None,
            "assignee_id": None,
            "department_id": None,
            **{k: str(v) if isinstance(v, uuid.UUID) else v for k, v in payload.items()},
        },
    }
    return LiveEvent.of(1, envelope)


# Visibility -----------------------------------------------------------------------------


def test_requesters_see_their_own_tickets_and_never_internal_ones() -> None:
    me, other = person(Role.REQUESTER), person(Role.REQUESTER)
    mine = ticket_event("comment.created", requester_id=me.id, is_internal=False)
    note = ticket_event("comment.created", requester_id=me.id, is_internal=True)
    theirs = ticket_event("comment.created", requester_id=other.id, is_internal=False)
    viewer = Viewer(me)
    assert may_receive(viewer, ORG, mine)
    assert not may_receive(viewer, ORG, note)
    assert not may_receive(viewer, ORG, theirs)
    assert not may_receive(viewer, OTHER_ORG, mine)


def test_staff_visibility_follows_the_viewer_rule() -> None:
    agent, admin = person(Role.AGENT, DEPT), person(Role.ADMIN)
    elsewhere = ticket_event(department_id=uuid.uuid4())
    own_dept = ticket_event(department_id=DEPT)
    note = ticket_event("comment.created", is_internal=True, department_id=DEPT)
    assert may_receive(Viewer(agent), ORG, elsewhere)  # not restricted: everything
    assert not may_receive(Viewer(agent, restricted_to_departments=True), ORG, elsewhere)
    assert may_receive(Viewer(agent, restricted_to_departments=True), ORG, own_dept)
    assert may_receive(Viewer(agent, restricted_to_departments=True), ORG, note)
    assert may_receive(Viewer(admin, restricted_to_departments=True), ORG, elsewhere)
    # The agent a ticket was taken from hears of it.
    moved = ticket_event(
        "ticket.assigned", department_id=uuid.uuid4(), previous_assignee_id=agent.id
    )
    assert may_receive(Viewer(agent, restricted_to_departments=True), ORG, moved)


def test_user_events_go_to_the_user_and_admins_and_unknown_types_to_nobody() -> None:
    user, admin, agent = person(Role.REQUESTER), person(Role.ADMIN), person(Role.AGENT)
    env = {
        "event_id": str(uuid.uuid4()),
        "event_type": "user.approved",
        "organization_id": str(ORG),
        "payload": {"user_id": str(user.id), "email": "x@example.com"},
    }
    event = LiveEvent.of(1, env)
    assert may_receive(Viewer(user), ORG, event)
    assert may_receive(Viewer(admin), ORG, event)
    assert not may_receive(Viewer(agent), ORG, event)
    unknown = LiveEvent.of(2, {**env, "event_type": "sla.breached", "payload": {}})
    assert unknown.rooms() == []
    assert not may_receive(Viewer(admin), ORG, unknown)


def test_rooms_one_may_join() -> None:
    requester, agent = person(Role.REQUESTER), person(Role.AGENT)
    assert may_join(Viewer(agent), ORG, Room("org", ORG)) is True
    assert may_join(Viewer(agent), ORG, Room("org", OTHER_ORG)) is False
    assert may_join(Viewer(requester), ORG, Room("org", ORG)) is False
    assert may_join(Viewer(requester), ORG, Room("user", requester.id)) is True
    assert may_join(Viewer(requester), ORG, Room("user", agent.id)) is False
    assert may_join(Viewer(requester), ORG, Room("ticket", uuid.uuid4())) is None  # ask
    assert [r.kind for r in default_rooms(Viewer(requester), ORG)] == ["user"]
    assert [r.kind for r in default_rooms(Viewer(agent), ORG)] == ["user", "org"]


def test_client_messages_are_validated() -> None:
    assert parse_client_message('{"type":"join","room":"ticket:1"}').type == "join"
    for bad in ('{"type":"join"}', '{"type":"shout"}', "not json", '{"type":"ping","x":1}'):
        with pytest.raises(ProtocolError):
            parse_client_message(bad)
    with pytest.raises(ProtocolError, match="at most"):
        parse_client_message('{"type":"ping","id":"' + "x" * 5000 + '"}')
    assert Room.parse("ticket:not-a-uuid") is None
    assert Room.parse(f"queue:{uuid.uuid4()}") is None


# Hub ------------------------------------------------------------------------------------


def _hub(**kwargs: Any) -> Hub:
    return Hub(
        node_id="n1",
        ttls={"viewing": 0.3, "typing": 0.2, "replying": 0.3},
        max_queue=kwargs.pop("max_queue", 100),
        **kwargs,
    )


def _connect(hub: Hub, user: User) -> Connection:
    viewer = Viewer(user)
    return hub.connect(
        kind="test", organization_id=ORG, viewer=viewer, rooms=default_rooms(viewer, ORG)
    )


def _texts(conn: Connection) -> list[dict[str, Any]]:
    out = [orjson.loads(text) for text, _ in conn._buffer]
    conn._buffer.clear()
    return out


async def test_a_slow_client_is_closed_not_waited_for() -> None:
    hub = _hub(max_queue=3)
    conn = _connect(hub, person(Role.AGENT))
    for _ in range(4):
        hub.deliver(ticket_event())
    assert conn.close_code == SLOW_CLIENT
    hub.disconnect(conn)
    assert len(hub) == 0


async def test_signals_lapse_and_collisions_need_two_agents() -> None:
    published: list[dict[str, Any]] = []
    hub = _hub(publish=published.append)
    ana, ben, req = person(Role.AGENT), person(Role.AGENT), person(Role.REQUESTER)
    a, b, r = _connect(hub, ana), _connect(hub, ben), _connect(hub, req)
    room = Room("ticket", uuid.uuid4())
    for conn in (a, b, r):
        hub.join(conn, room)
    assert published[0] == {"op": "sync", "org": str(ORG), "room": str(room)}
    _texts(a)
    hub.signal(a, room, "replying", active=True)
    hub.signal(r, room, "replying", active=True)  # a requester replying is no collision
    assert not [m for m in _texts(b) if m["type"] == "collision"]
    hub.signal(b, room, "replying", active=True)
    collision = [m for m in _texts(a) if m["type"] == "collision"]
    assert {u["id"] for u in collision[0]["users"]} == {str(ana.id), str(ben.id)}
    assert _texts(r) == []  # requesters get no signals
    await asyncio.sleep(0.35)
    hub.sweep()
    replying = [m for m in _texts(a) if m["type"] == "replying"]
    assert replying[-1]["users"] == []
    # Signals of another process expire here on their own too.
    hub.apply_remote(
        {
            "op": "signal",
            "node": "n2",
            "org": str(ORG),
            "room": str(room),
            "kind": "typing",
            "conn": 1,
            "user": {"id": "u2", "name": "Remote Agent", "role": "agent"},
            "ttl": 0.1,
            "active": True,
        }
    )
    assert [m["users"] for m in _texts(a) if m["type"] == "typing"] == [
        [{"id": "u2", "name": "Remote Agent", "role": "agent"}]
    ]
    await asyncio.sleep(0.15)
    hub.sweep()
    assert [m["users"] for m in _texts(a) if m["type"] == "typing"] == [[]]


# The service in this process --------------------------------------------------------------


@pytest.fixture
async def live_service(runtime: Runtime) -> AsyncIterator[LiveService]:
    service = LiveService(runtime)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def _collect(conn: Connection, seconds: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        got += [orjson.loads(text) for text, _ in await conn.next_batch(left)]
    return got


async def _emit_then_fail(desk: Desk, ticket_id: str) -> None:
    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        events.emit(
            session,
            organization_id=desk.org.id,
            event_type="ticket.updated",
            actor=SYSTEM,
            payload={"ticket_id": ticket_id, "requester_id": None},
        )
        await session.flush()
        raise RuntimeError("roll back")


async def test_each_committed_event_is_delivered_once(
    live_service: LiveService, desk: Desk
) -> None:
    viewer = Viewer(desk.admin.user)
    conn = live_service.hub.connect(
        kind="test",
        organization_id=desk.org.id,
        viewer=viewer,
        rooms=default_rooms(viewer, desk.org.id),
    )
    try:
        # Committed in this process: the commit hook and NOTIFY both bring it.
        ticket = await desk.file()
        got = await _collect(conn, 0.5)
        created = [m for m in got if m["type"] == "event"]
        assert [m["event"]["payload"]["ticket_id"] for m in created] == [ticket["id"]]
        # A reconnect of the LISTEN connection re-reads the outbox: nothing is sent twice.
        await live_service._on_listening(True)
        assert await _collect(conn, 0.3) == []
        # A rolled back transaction hands nothing over, not even by the hook.
        with pytest.raises(RuntimeError, match="roll back"):
            await _emit_then_fail(desk, ticket["id"])
        assert await _collect(conn, 0.3) == []
    finally:
        live_service.hub.disconnect(conn)


def test_tokens_in_socket_urls_are_not_logged() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/api/v1/ws?tenant=acme&token=eyJhbGciOi.secret.sig&since=4"),
        None,
    )
    assert RedactTokens().filter(record)
    line = record.getMessage()
    assert "secret" not in line
    assert "token=[redacted]&since=4" in line and "tenant=acme" in line


async def test_events_missed_while_listen_was_down_are_read_back(
    live_service: LiveService, desk: Desk, database_url: str
) -> None:
    viewer = Viewer(desk.admin.user)
    conn = live_service.hub.connect(
        kind="test",
        organization_id=desk.org.id,
        viewer=viewer,
        rooms=default_rooms(viewer, desk.org.id),
    )
    ticket = await desk.file()
    await _collect(conn, 0.3)
    # Another process (another engine: no commit hook here) commits while LISTEN is down.
    other = Database(database_url, app_role=desk.runtime.settings.app_db_role)
    listener = live_service.listener
    dsn, listener.dsn = listener.dsn, "postgresql://nobody@127.0.0.1:1/none"
    try:
        pid = listener._conn.get_server_pid()  # type: ignore[union-attr]
        async with other.session() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.3)
        assert not listener.ready.is_set()
        async with other.tenant_session(desk.org.id) as session:
            missed = events.emit(
                session,
                organization_id=desk.org.id,
                event_type="ticket.updated",
                actor=SYSTEM,
                payload={
                    "ticket_id": ticket["id"],
                    "requester_id": str(desk.requester.user.id),
                    "assignee_id": None,
                    "department_id": None,
                    "changed_fields": ["priority"],
                },
            )
        listener.dsn = dsn
        got = await _collect(conn, 3.0)
    finally:
        listener.dsn = dsn
        live_service.hub.disconnect(conn)
        await other.dispose()
    assert [m["event"]["event_id"] for m in got if m["type"] == "event"] == [str(missed.id)]
