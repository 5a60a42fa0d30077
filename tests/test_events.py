"""Domain events: written to the outbox in the same transaction as the change, or not at all."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from servicedesk.core.runtime import Runtime
from servicedesk.models import OutboxEvent, Role
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.schemas import TicketCreate
from tests.ticket_helpers import TICKETS, Desk, desk_fixture  # noqa: F401


async def events_of(runtime: Runtime, org_id: uuid.UUID, **payload: str) -> list[OutboxEvent]:
    async with runtime.db.tenant_session(org_id) as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars()
        return [e for e in rows if all(str(e.payload.get(k)) == v for k, v in payload.items())]


def types(rows: list[OutboxEvent]) -> list[str]:
    return [e.event_type for e in rows]


async def test_ticket_lifecycle_events(desk: Desk) -> None:
    ticket = await desk.file()
    assert (await desk.patch(ticket, assignee_id=str(desk.agent.user.id))).status_code == 200
    assert (await desk.patch(ticket, priority="critical", tags=["vip"])).status_code == 200
    assert (await desk.move(ticket, "open")).status_code == 200
    await desk.comment(ticket, "Looking into it.")
    await desk.comment(ticket, "Internal: vendor issue.", internal=True)

    rows = await events_of(desk.runtime, desk.org.id, ticket_id=ticket["id"])
    assert types(rows) == [
        "ticket.created",
        "ticket.assigned",
        "ticket.updated",
        "ticket.status_changed",
        "comment.created",
        "comment.created",
    ]
    created, assigned, updated, moved, reply, note = rows
    assert created.payload["number"] == ticket["number"]
    assert created.payload["requester_id"] == str(desk.requester.user.id)
    assert "description" not in created.payload
    assert created.actor_type == "user" and created.actor_id == desk.requester.user.id
    assert assigned.payload["assignee_id"] == str(desk.agent.user.id)
    assert assigned.payload["previous_assignee_id"] is None
    assert updated.payload["changed_fields"] == ["priority", "tags"]
    assert updated.payload["changes"]["priority"]["new"] == "critical"
    assert (moved.payload["old_status"], moved.payload["new_status"]) == ("new", "open")
    assert reply.payload["is_internal"] is False and note.payload["is_internal"] is True
    assert reply.payload["author_role"] == Role.AGENT
    # Ordered, unique, not yet dispatched.
    assert [e.seq for e in rows] == sorted({e.seq for e in rows})
    assert all(e.dispatched_at is None for e in rows)


async def test_event_rolls_back_with_the_change(desk: Desk) -> None:
    before = len(await events_of(desk.runtime, desk.org.id))
    category_id = uuid.UUID(desk.it["id"])
    tenant = await _tenant(desk)

    async def write_then_crash() -> None:
        async with desk.runtime.db.tenant_session(desk.org.id) as session:
            await tickets.create_ticket(
                session,
                Viewer(desk.agent.user),
                tenant,
                TicketCreate(
                    subject="Rolled back ticket",
                    description="This ticket never commits, nor does its event.",
                    category_id=category_id,
                    custom_fields={"asset_name": "X", "issue_type": "Other"},
                ),
            )
            raise RuntimeError("crash after the write")

    with pytest.raises(RuntimeError, match="crash after the write"):
        await write_then_crash()
    assert len(await events_of(desk.runtime, desk.org.id)) == before


async def _tenant(desk: Desk) -> Any:
    from servicedesk.tenancy import service as tenancy

    async with desk.runtime.db.session() as session:
        return await tenancy.resolve(session, desk.org.slug)


async def test_failed_request_writes_no_event(desk: Desk) -> None:
    ticket = await desk.file()
    before = len(await events_of(desk.runtime, desk.org.id))
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/status",
        json={"status": "rejected", "version": 1},  # no reason: 422
        headers=desk.agent.headers,
    )
    assert r.status_code == 422
    assert len(await events_of(desk.runtime, desk.org.id)) == before


async def test_registration_and_approval_events(desk: Desk) -> None:
    r = await desk.client.post(
        "/api/v1/auth/register",
        json={
            "first_name": "New",
            "last_name": "Person",
            "email": "new.person@example.com",
            "company_id": "MA9911",
            "password": "A-long-enough-pass-42",
        },
        headers={"X-Tenant-ID": desk.org.slug},
    )
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await desk.client.post(f"/api/v1/users/{user_id}/approve", headers=desk.admin.headers)
    assert r.status_code == 200, r.text
    rows = await events_of(desk.runtime, desk.org.id, user_id=user_id)
    assert types(rows) == ["user.registered", "user.approved"]
    assert rows[0].actor_type == "anonymous"
    assert rows[1].actor_id == desk.admin.user.id


async def test_events_are_tenant_scoped(desk: Desk, other_org: Any) -> None:
    await desk.file()
    assert await events_of(desk.runtime, other_org.id) == []


async def test_notify_is_sent_on_commit(desk: Desk, database_url: str) -> None:
    """Listeners (dispatcher, live fan-out) wake on NOTIFY, which only commits deliver."""
    url = make_url(database_url).set(drivername="postgresql")
    conn = await psycopg.AsyncConnection.connect(
        url.render_as_string(hide_password=False), autocommit=True
    )
    try:
        await conn.execute("LISTEN servicedesk_outbox")
        ticket = await desk.file()
        org_id = str(desk.org.id)
        gen = conn.notifies(timeout=5)
        payloads = []
        async for note in gen:
            payloads.append(note.payload)
            if note.payload.startswith(org_id):
                break
        assert any(p.startswith(org_id + ":") for p in payloads)
        rows = await events_of(desk.runtime, desk.org.id, ticket_id=ticket["id"])
        assert f"{org_id}:{rows[0].seq}" in payloads
    finally:
        await conn.close()
    await asyncio.sleep(0)
