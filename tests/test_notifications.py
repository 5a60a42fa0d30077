"""Notifications: who gets what, on which channel, when; real SMTP into a sink, web push into a
local push service, quiet hours / de-dup / digests on a controlled clock, and the API.

The fan-out is driven the way the job system drives it: the committed outbox events of the
test's organization, one `notify_for_event` transaction each (and once through the real
handler with a JobContext). Sending goes through aiosmtplib to an aiosmtpd server on a free
loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email
import email.policy
import json
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

import http_ece
import pytest
from aiohttp import web
from aiosmtpd import smtp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from sqlalchemy import select, text

from servicedesk.core.events import envelope
from servicedesk.core.jobs import AlreadyHandled, JobContext
from servicedesk.core.runtime import Runtime
from servicedesk.models import (
    Email,
    Notification,
    NotificationReceipt,
    OutboxEvent,
    PushMessage,
    PushSubscription,
    Role,
    User,
)
from servicedesk.notifications import delivery, handlers, quiet_hours, service
from servicedesk.notifications.email import SmtpTarget
from tests.conftest import Session, client_for, test_settings
from tests.ticket_helpers import API, Desk, desk_fixture, problem  # noqa: F401

NOTIFICATIONS = f"{API}/notifications"
DOMAIN = "mail.test"


# The SMTP sink -------------------------------------------------------------------------------


@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message["To"])

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]


class Sink:
    """An SMTP server that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.port = 0

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: smtp.SMTP, session: smtp.Session, envelope: smtp.Envelope
    ) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], message)
        )
        return "250 Message accepted"

    def to(self, user: User) -> list[Received]:
        return [r for r in self.received if user.email in r.rcpt_tos]

    def recipients(self) -> set[str]:
        return {a for r in self.received for a in r.rcpt_tos}


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    handler = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: smtp.SMTP(handler), "127.0.0.1", 0)
    handler.port = server.sockets[0].getsockname()[1]
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()


def mail_settings(port: int, **overrides: object) -> Any:
    return test_settings(
        SMTP_URL=f"smtp://127.0.0.1:{port}",
        SMTP_FROM="desk@mail.test",
        SERVICEDESK_MAIL_DOMAIN=DOMAIN,
        SERVICEDESK_PUBLIC_URL="https://desk.example.com",
        **overrides,
    )


@pytest.fixture
def rt(runtime: Runtime, sink: Sink) -> Runtime:
    """The app's runtime (same database) with SMTP pointing at the sink."""
    return dataclasses.replace(runtime, settings=mail_settings(sink.port))


# Driving the fan-out -------------------------------------------------------------------------


class Fanout:
    """Runs `notify_for_event` for each new outbox event of one organization, like the handler."""

    def __init__(self, rt: Runtime, org_id: uuid.UUID) -> None:
        self.rt = rt
        self.org_id = org_id
        self.seen: set[uuid.UUID] = set()

    async def new_events(self) -> list[dict[str, Any]]:
        async with self.rt.db.tenant_session(self.org_id) as session:
            rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars()
            fresh = [r for r in rows if r.id not in self.seen]
            self.seen |= {r.id for r in fresh}
            return [envelope(r) for r in fresh]

    async def run(
        self, *, now: datetime | None = None, rt: Runtime | None = None
    ) -> list[service.Delivery]:
        out: list[service.Delivery] = []
        for event in await self.new_events():
            out += await self.one(event, now=now, rt=rt)
        return out

    async def one(
        self, event: dict[str, Any], *, now: datetime | None = None, rt: Runtime | None = None
    ) -> list[service.Delivery]:
        rt = rt or self.rt
        async with rt.db.tenant_session(self.org_id) as session:
            return await service.notify_for_event(session, rt, event, now=now)


async def notifications_of(rt: Runtime, user: User) -> list[Notification]:
    async with rt.db.tenant_session(user.organization_id) as session:
        rows = await session.execute(
            select(Notification)
            .where(Notification.user_id == user.id)
            .order_by(Notification.created_at, Notification.id)
        )
        return list(rows.scalars())


async def emails_of(rt: Runtime, user: User) -> list[Email]:
    async with rt.db.tenant_session(user.organization_id) as session:
        rows = await session.execute(
            select(Email).where(Email.user_id == user.id).order_by(Email.created_at, Email.id)
        )
        return list(rows.scalars())


def types_of(rows: list[Notification]) -> list[str]:
    return [n.event_type for n in rows]


@pytest.fixture
async def it_agent(desk: Desk, make_user: Callable[..., Awaitable[User]], login: Any) -> Session:
    """An agent of the IT department (the IT Support category's department)."""
    user = await make_user(desk.org, Role.AGENT, department_id=uuid.UUID(desk.it_dept["id"]))
    session: Session = await login(user, desk.org)
    return session


# Who gets what -------------------------------------------------------------------------------


async def test_recipients_follow_the_rules(desk: Desk, rt: Runtime, it_agent: Session) -> None:
    fan = Fanout(rt, desk.org.id)
    requester, agent, agent2 = desk.requester.user, desk.agent.user, desk.agent2.user

    # A new unassigned ticket: the agents of its department (not other agents, not the filer).
    ticket = await desk.file()
    await fan.run()
    assert types_of(await notifications_of(rt, it_agent.user)) == ["ticket.created"]
    assert await notifications_of(rt, agent) == []
    assert await notifications_of(rt, requester) == []

    # Assignment: the new assignee, not the agent who assigned.
    assert (await desk.patch(ticket, assignee_id=str(agent2.id))).status_code == 200
    # A public agent reply: the requester.
    await desk.comment(ticket, "We are on it, please restart once.", desk.agent)
    # A requester reply: the assignee.
    await desk.comment(ticket, "Restarted, still black.", desk.requester)
    # A status change: the requester.
    assert (await desk.move(ticket, "open")).status_code == 200
    await fan.run()

    assert types_of(await notifications_of(rt, agent2)) == ["ticket.assigned", "comment.created"]
    assert types_of(await notifications_of(rt, requester)) == [
        "comment.created",
        "ticket.status_changed",
    ]
    assert await notifications_of(rt, agent) == []  # every change was their own
    reply = (await notifications_of(rt, requester))[0]
    assert reply.title.startswith(f"{agent.full_name} replied on {ticket['number']}")
    assert reply.body == "We are on it, please restart once."
    assert reply.url == f"/tickets/{ticket['number']}"  # the portal page: a requester
    (created,) = await notifications_of(rt, it_agent.user)
    assert created.url == f"/agent/tickets/{ticket['number']}"  # the workspace: staff

    # A pending registration: the admins.
    r = await desk.client.post(
        f"{API}/auth/register",
        json={
            "first_name": "Nina",
            "last_name": "New",
            "email": f"nina-{secrets.token_hex(3)}@example.com",
            "company_id": f"MA{secrets.randbelow(9000) + 1000}",
            "password": "A-long-enough-pass-42",
        },
        headers={"X-Tenant-ID": desk.org.slug},
    )
    assert r.status_code == 201, r.text
    await fan.run()
    admin_rows = await notifications_of(rt, desk.admin.user)
    assert types_of(admin_rows)[-1] == "user.registered"
    assert admin_rows[-1].title == "Nina New registered and waits for approval"
    assert admin_rows[-1].url.startswith("/admin/users/")
    assert await notifications_of(rt, requester) != []  # unchanged: not an admin matter
    assert types_of(await notifications_of(rt, agent)) == []


async def test_a_department_of_more_than_a_thousand_agents_is_told_in_full(
    desk: Desk, runtime: Runtime
) -> None:
    """No page limit on the recipients: every agent of a big department hears of a new ticket
    (one set-based fan-out; a suspended and a deactivated agent do not). Without SMTP here:
    1,100 queued emails would hold up the other tests' sends on this database."""
    rt = runtime
    assert not rt.settings.smtp_url
    await desk.sql(
        "INSERT INTO users (id, organization_id, email, first_name, last_name, role, status, "
        "is_active, timezone, password_hash, department_id) "
        "SELECT gen_random_uuid(), CAST(:org AS uuid), 'bulk-' || g || '-' || :tag "
        "|| '@example.com', 'Bulk', 'Agent ' || g, 'agent', "
        "CASE WHEN g = 1 THEN 'suspended' ELSE 'approved' END, g <> 2, 'UTC', 'x', "
        "CAST(:dept AS uuid) FROM generate_series(1, 1102) AS g",
        org=str(desk.org.id),
        tag=secrets.token_hex(3),
        dept=desk.it_dept["id"],
    )
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    deliveries = await fan.run()
    assert len({d.user_id for d in deliveries}) == 1100
    async with rt.db.tenant_session(desk.org.id) as session:
        rows = (
            await session.execute(
                select(Notification.user_id, Notification.url).where(
                    Notification.ticket_id == uuid.UUID(ticket["id"])
                )
            )
        ).all()
    assert len(rows) == 1100
    assert {url for _, url in rows} == {f"/agent/tickets/{ticket['number']}"}


async def test_nobody_is_told_about_their_own_action(desk: Desk, rt: Runtime) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file(desk.agent)  # an agent files for themselves …
    assert (await desk.patch(ticket, assignee_id=str(desk.agent.user.id))).status_code == 200
    await desk.comment(ticket, "Note to self.", desk.agent)  # … assigns it to themselves …
    assert (await desk.move(ticket, "open", desk.agent)).status_code == 200  # … and moves it
    deliveries = await fan.run()
    assert deliveries == []
    assert await notifications_of(rt, desk.agent.user) == []


async def test_internal_notes_reach_staff_only(desk: Desk, rt: Runtime, sink: Sink) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    assert (await desk.patch(ticket, assignee_id=str(desk.agent2.user.id))).status_code == 200
    await fan.run()
    sink.received.clear()
    await desk.comment(
        ticket,
        f"Vendor says the board is dead. @{desk.agent2.user.email} please order one.",
        desk.agent,
        internal=True,
    )
    deliveries = await fan.run()
    await delivery.send_due_emails(rt)

    assert {d.user_id for d in deliveries} == {desk.agent2.user.id}
    assert types_of(await notifications_of(rt, desk.agent2.user))[-1] == "comment.mentioned"
    assert "comment.created" not in types_of(await notifications_of(rt, desk.requester.user))
    assert await emails_of(rt, desk.requester.user) == []
    # The sink is shared with earlier tests' leftovers: look at this organization's people.
    staff = {desk.agent.user.email, desk.agent2.user.email, desk.admin.user.email}
    everyone = staff | {desk.requester.user.email, desk.requester2.user.email}
    assert sink.recipients() & everyone == {desk.agent2.user.email}
    (note,) = [m for m in sink.to(desk.agent2.user) if "mentioned you" in m.text()]
    assert "in an internal note" in note.text()
    assert "the board is dead" in note.text()


# Email: recipients, threading, branding ------------------------------------------------------


async def test_emails_reach_the_sink_threaded_and_branded(
    desk: Desk, rt: Runtime, sink: Sink
) -> None:
    await desk.set_settings(brand_color="#ff6600", support_email="help@acme.test")
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await desk.comment(ticket, "First answer: **reboot** <script>alert(1)</script>", desk.agent)
    assert (await desk.move(ticket, "open")).status_code == 200
    await desk.comment(ticket, "Second answer.", desk.agent)
    await fan.run()
    report = await delivery.send_due_emails(rt)
    assert report.sent >= 3

    received = sink.to(desk.requester.user)
    assert len(received) == 3
    root = f"<ticket-{ticket['id']}@{DOMAIN}>"
    rows = {e.message_id: e for e in await emails_of(rt, desk.requester.user)}
    for mail in received:
        assert mail.rcpt_tos == [desk.requester.user.email]
        assert mail.mail_from == "desk@mail.test"
        message_id = str(mail.message["Message-ID"])
        assert message_id.startswith(f"<ticket-{ticket['id']}-")
        assert message_id.endswith(f"@{DOMAIN}>")
        assert str(mail.message["In-Reply-To"]) == root
        assert str(mail.message["References"]) == root
        assert str(mail.message["Subject"]) == f"[{ticket['number']}] {ticket['subject']}"
        assert str(mail.message["Reply-To"]) == "help@acme.test"
        assert desk.org.name in str(mail.message["From"])
        assert str(mail.message["Auto-Submitted"]) == "auto-generated"
        assert "#ff6600" in mail.html()
        assert (
            f"https://desk.example.com/t/{desk.org.slug}/tickets/{ticket['number']}" in mail.text()
        )
        row = rows[message_id]
        assert row.status == "sent" and row.sent_at is not None and row.attempts == 0
        assert row.ticket_id == uuid.UUID(ticket["id"])
        assert row.actor_type == "user" and row.actor_id == desk.agent.user.id
    # Distinct messages, one thread.
    assert len({str(m.message["Message-ID"]) for m in received}) == 3
    first = received[0]
    assert "<strong>reboot</strong>" in first.html()
    assert "<script>" not in first.html()
    assert "**reboot**" in first.text()


async def test_smtp_failure_is_retried_with_the_same_message_id(
    desk: Desk, rt: Runtime, sink: Sink
) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await desk.comment(ticket, "Try this.", desk.agent)
    deliveries = await fan.run()
    email_ids = [d.id for d in deliveries if d.channel == "email"]
    assert len(email_ids) == 1
    # The server is down: the attempt is recorded and the row waits for its back-off.
    down = dataclasses.replace(rt, settings=mail_settings(_free_port()))
    now = datetime.now(UTC)
    report = await delivery.send_due_emails(down, ids=email_ids, now=now)
    assert report.retried == 1
    (row,) = await emails_of(rt, desk.requester.user)
    assert row.status == "queued" and row.attempts == 1 and row.last_error
    assert row.send_after > now
    assert (await delivery.send_due_emails(rt, ids=email_ids, now=now)).sent == 0  # not yet
    report = await delivery.send_due_emails(rt, ids=email_ids, now=now + timedelta(minutes=2))
    assert report.sent == 1
    (mail,) = sink.to(desk.requester.user)
    assert str(mail.message["Message-ID"]) == row.message_id
    # The claim is exactly once: sending again finds nothing queued.
    assert (
        await delivery.send_due_emails(rt, ids=email_ids, now=now + timedelta(hours=1))
    ).sent == 0
    assert len(sink.to(desk.requester.user)) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_smtp_urls_are_parsed() -> None:
    t = SmtpTarget.parse("smtps://us%40er:p%3Ass@mail.example.com")
    assert (t.hostname, t.port, t.username, t.password) == (
        "mail.example.com",
        465,
        "us@er",
        "p:ss",
    )
    assert t.use_tls and t.start_tls is None
    t = SmtpTarget.parse("smtp://relay:2525?starttls=require")
    assert (t.port, t.use_tls, t.start_tls, t.username) == (2525, False, True, None)
    assert SmtpTarget.parse("smtp://relay").port == 25
    with pytest.raises(ValueError, match="smtp://"):
        test_settings(SMTP_URL="http://relay")


# Preferences, quiet hours, de-dup, digests ---------------------------------------------------


async def test_a_channel_switched_off_gets_nothing(desk: Desk, rt: Runtime) -> None:
    r = await desk.client.put(
        f"{NOTIFICATIONS}/preferences",
        json={
            "preferences": [{"event_type": "comment.created", "channel": "email", "enabled": False}]
        },
        headers=desk.requester.headers,
    )
    assert r.status_code == 200, r.text
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await desk.comment(ticket, "A reply you will only see in the app.", desk.agent)
    assert (await desk.move(ticket, "open")).status_code == 200
    await fan.run()
    assert types_of(await notifications_of(rt, desk.requester.user)) == [
        "comment.created",
        "ticket.status_changed",
    ]
    assert [e.template for e in await emails_of(rt, desk.requester.user)] == [
        "ticket_status_changed"
    ]
    # In-app off too: nothing at all for replies.
    r = await desk.client.put(
        f"{NOTIFICATIONS}/preferences",
        json={
            "preferences": [
                {"event_type": "comment.created", "channel": "in_app", "enabled": False}
            ]
        },
        headers=desk.requester.headers,
    )
    assert r.status_code == 200
    await desk.comment(ticket, "Another reply.", desk.agent)
    await fan.run()
    assert len(await notifications_of(rt, desk.requester.user)) == 2
    async with rt.db.tenant_session(desk.org.id) as session:
        receipt = (
            await session.execute(
                select(NotificationReceipt)
                .where(NotificationReceipt.user_id == desk.requester.user.id)
                .order_by(NotificationReceipt.created_at.desc())
                .limit(1)
            )
        ).scalar_one()
    assert receipt.outcome == {"in_app": "off", "email": "off", "push": "not_configured"}


async def test_quiet_hours_hold_email_but_not_in_app(desk: Desk, rt: Runtime, sink: Sink) -> None:
    requester = desk.requester.user
    await desk.sql("UPDATE users SET timezone = 'Europe/Berlin' WHERE id = :id", id=requester.id)
    r = await desk.client.put(
        f"{NOTIFICATIONS}/preferences",
        json={"quiet_hours": {"start": "22:00", "end": "07:00"}},
        headers=desk.requester.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert r.json()["timezone"] == "Europe/Berlin"

    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await desk.comment(ticket, "Answer at night.", desk.agent)
    night = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # 23:30 in Berlin (UTC+1)
    await fan.run(now=night)
    assert types_of(await notifications_of(rt, requester)) == ["comment.created"]
    (held,) = await emails_of(rt, requester)
    assert held.status == "queued"
    assert held.send_after == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # 07:00 Berlin
    await delivery.send_due_emails(rt, now=night + timedelta(hours=2))
    assert sink.to(requester) == []
    await delivery.send_due_emails(rt, now=datetime(2026, 11, 26, 6, 1, tzinfo=UTC))
    assert len(sink.to(requester)) == 1

    # Outside quiet hours it goes at once.
    await desk.comment(ticket, "Answer at noon.", desk.agent)
    noon = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    deliveries = await fan.run(now=noon)
    assert [d.outcome for d in deliveries if d.channel == "email"] == ["queued"]
    # Switched off: nothing is held.
    r = await desk.client.put(
        f"{NOTIFICATIONS}/preferences", json={"quiet_hours": None}, headers=desk.requester.headers
    )
    assert r.json()["quiet_hours"] is None


def test_quiet_hours_end_in_the_users_zone_across_daylight_saving() -> None:
    night, morning = time(22, 0), time(7, 0)
    # 23:00 in Berlin on the night the clocks go forward: released at 07:00 CEST = 05:00 UTC.
    now = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    release = quiet_hours.release_time(now, start=night, end=morning, timezone="Europe/Berlin")
    assert release == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    # After midnight, the same morning.
    now = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    release = quiet_hours.release_time(now, start=night, end=morning, timezone="Europe/Berlin")
    assert release == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    # Outside the range, or no range: at once.
    noon = datetime(2026, 3, 29, 10, 0, tzinfo=UTC)
    assert (
        quiet_hours.release_time(noon, start=night, end=morning, timezone="Europe/Berlin") is None
    )
    assert quiet_hours.release_time(noon, start=None, end=None, timezone="Europe/Berlin") is None
    # A daytime range, and an unknown zone taken as UTC.
    lunch = quiet_hours.release_time(
        datetime(2026, 3, 29, 12, 15, tzinfo=UTC),
        start=time(12, 0),
        end=time(13, 0),
        timezone="Mars/Olympus",
    )
    assert lunch == datetime(2026, 3, 29, 13, 0, tzinfo=UTC)


async def test_the_same_event_within_the_window_is_one_notification(
    desk: Desk, rt: Runtime
) -> None:
    requester = desk.requester.user
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await fan.run()
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def status_event(new_status: str, old_status: str) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "event_type": "ticket.status_changed",
            "schema_version": 1,
            "occurred_at": t0.isoformat(),
            "organization_id": str(desk.org.id),
            "actor": {"type": "user", "id": str(desk.agent.user.id)},
            "payload": {
                "ticket_id": ticket["id"],
                "number": ticket["number"],
                "version": 2,
                "requester_id": str(requester.id),
                "assignee_id": None,
                "old_status": old_status,
                "new_status": new_status,
                "reason": None,
            },
        }

    # Resolved, reopened, resolved again within ten minutes: two notifications, not three.
    await fan.one(status_event("resolved", "open"), now=t0)
    await fan.one(status_event("open", "resolved"), now=t0 + timedelta(minutes=2))
    await fan.one(status_event("resolved", "open"), now=t0 + timedelta(minutes=4))
    rows = await notifications_of(rt, requester)
    assert [(n.title.split(":")[0], n.occurrences) for n in rows] == [
        (f"{ticket['number']} is now Resolved", 2),
        (f"{ticket['number']} is now Open", 1),
    ]
    assert rows[0].updated_at == t0 + timedelta(minutes=4)
    assert len(await emails_of(rt, requester)) == 2
    # After the window it is news again.
    await fan.one(status_event("resolved", "open"), now=t0 + timedelta(minutes=15))
    assert len(await notifications_of(rt, requester)) == 3
    assert len(await emails_of(rt, requester)) == 3
    # A redelivered event (same id) changes nothing.
    again = status_event("closed", "resolved")
    first = await fan.one(again, now=t0 + timedelta(minutes=20))
    assert await fan.one(again, now=t0 + timedelta(minutes=20)) == []
    assert len(first) == 2  # in-app and email
    assert len(await notifications_of(rt, requester)) == 4


async def test_too_many_emails_become_one_digest(desk: Desk, runtime: Runtime, sink: Sink) -> None:
    rt = dataclasses.replace(
        runtime,
        settings=mail_settings(
            sink.port,
            SERVICEDESK_NOTIFY_DIGEST_THRESHOLD=2,
            SERVICEDESK_NOTIFY_DIGEST_MINUTES=10,
        ),
    )
    requester = desk.requester.user
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await fan.run()
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    for i in range(5):
        await desk.comment(ticket, f"Update number {i}.", desk.agent)
        await fan.run(now=t0 + timedelta(minutes=i))
    rows = await emails_of(rt, requester)
    assert [e.status for e in rows] == ["queued", "queued", "batched", "batched", "batched"]
    assert len(await notifications_of(rt, requester)) == 5  # in-app is never batched

    # Not before the oldest batched one waited M minutes.
    assert await delivery.build_digests(rt, now=t0 + timedelta(minutes=11)) == 0
    assert await delivery.build_digests(rt, now=t0 + timedelta(minutes=12)) == 1
    assert await delivery.build_digests(rt, now=t0 + timedelta(minutes=13)) == 0
    await delivery.send_due_emails(rt, now=t0 + timedelta(minutes=12))
    received = sink.to(requester)
    assert len(received) == 3
    digest = received[-1]
    assert str(digest.message["Subject"]) == f"3 updates from {desk.org.name}"
    assert str(digest.message["Message-ID"]).startswith("<digest-")
    assert digest.message["In-Reply-To"] is None
    body = digest.text()
    assert body.count(f"[{ticket['number']}]") == 3
    rows = await emails_of(rt, requester)
    digest_row = next(e for e in rows if e.template == "digest")
    assert digest_row.status == "sent"
    assert [e.digest_id for e in rows if e.status == "digested"] == [digest_row.id] * 3


# The job handler -----------------------------------------------------------------------------


async def test_the_handler_writes_once_and_defers_the_sends(desk: Desk, rt: Runtime) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await fan.new_events()
    await desk.comment(ticket, "Handled by the job.", desk.agent)
    (event,) = await fan.new_events()
    ctx = JobContext(rt, event, attempt=1, handler="notifications.fan_out")
    await handlers.fan_out(ctx)
    rows = await emails_of(rt, desk.requester.user)
    assert len(rows) == 1
    async with rt.db.session() as session:
        jobs = (
            await session.execute(
                text(
                    "SELECT task_name, args FROM procrastinate.procrastinate_jobs "
                    "WHERE task_name = :name AND args->'args'->>'id' = :id"
                ),
                {"name": handlers.SEND_EMAIL, "id": str(rows[0].id)},
            )
        ).all()
    assert len(jobs) == 1
    # A second run of the same event is skipped by the job system's handled mark …
    with pytest.raises(AlreadyHandled):
        await handlers.fan_out(JobContext(rt, event, attempt=2, handler="notifications.fan_out"))
    # … and the core alone is idempotent too (receipts), for any other caller.
    assert await fan.one(event) == []
    assert len(await notifications_of(rt, desk.requester.user)) == 1


# Web push ------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def vapid_pair() -> tuple[str, str]:
    key = Vapid()
    key.generate_keys()
    private = key.private_key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64(private), _b64(public)


@dataclasses.dataclass
class Browser:
    """A browser's push keys (what `PushSubscription.toJSON()` holds)."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        return _b64(
            self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth)
        return json.loads(plain)  # type: ignore[no-any-return]


class PushService:
    """A local stand-in for FCM/Mozilla: records each POST, answers with a chosen status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 201
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((request.path, headers, await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    svc = PushService()
    app = web.Application()
    app.router.add_post("/push/{token}", svc.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    svc.url = f"http://127.0.0.1:{port}"
    try:
        yield svc
    finally:
        await runner.cleanup()


async def test_web_push_reaches_the_push_service_signed_and_encrypted(
    desk: Desk, runtime: Runtime, sink: Sink, push_service: PushService
) -> None:
    private, public = vapid_pair()
    rt = dataclasses.replace(
        runtime,
        settings=mail_settings(
            sink.port,
            SERVICEDESK_VAPID_PRIVATE_KEY=private,
            SERVICEDESK_VAPID_PUBLIC_KEY=public,
            SERVICEDESK_VAPID_SUBJECT="mailto:ops@acme.test",
        ),
    )
    requester = desk.requester.user
    browser = Browser.new()
    # Stored directly: the API only accepts HTTPS endpoints of known push services.
    async with rt.db.tenant_session(desk.org.id) as session:
        session.add(
            PushSubscription(
                organization_id=desk.org.id,
                user_id=requester.id,
                endpoint=f"{push_service.url}/push/abc",
                p256dh=browser.p256dh,
                auth=_b64(browser.auth),
            )
        )
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await desk.comment(ticket, "Pushed to your browser.", desk.agent)
    deliveries = await fan.run()
    # Only users with a subscription get push rows.
    assert {d.user_id for d in deliveries if d.channel == "push"} == {requester.id}
    report = await delivery.send_due_push(rt)
    assert report.sent == 1

    ((path, headers, body),) = push_service.requests
    assert path == "/push/abc"
    assert headers["content-encoding"] == "aes128gcm"
    assert int(headers["ttl"]) > 0
    scheme, _, params = headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == public
    claims = json.loads(base64.urlsafe_b64decode(fields["t"].split(".")[1] + "=="))
    assert claims["sub"] == "mailto:ops@acme.test"
    assert claims["aud"] == push_service.url
    payload = browser.decrypt(body)
    assert payload["title"].startswith(f"{desk.agent.user.full_name} replied on")
    assert payload["url"] == (
        f"https://desk.example.com/t/{desk.org.slug}/tickets/{ticket['number']}"
    )

    # An expired subscription (410) is forgotten.
    push_service.status = 410
    await desk.comment(ticket, "Second push.", desk.agent)
    await fan.run()
    await delivery.send_due_push(rt)
    async with rt.db.tenant_session(desk.org.id) as session:
        subs = (await session.execute(select(PushSubscription))).scalars().all()
        messages = (
            (await session.execute(select(PushMessage).order_by(PushMessage.created_at)))
            .scalars()
            .all()
        )
    assert subs == []
    assert [m.status for m in messages] == ["sent", "failed"]


async def test_push_subscription_api(
    desk: Desk, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{NOTIFICATIONS}/push-subscriptions"
    browser = Browser.new()
    body = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc:def",
        "expirationTime": None,
        "keys": {"p256dh": browser.p256dh, "auth": _b64(browser.auth)},
    }
    headers = desk.requester.headers
    problem(await desk.client.post(url, json=body, headers=headers), 422, "push_disabled")
    private, public = vapid_pair()
    monkeypatch.setattr(
        runtime,
        "settings",
        test_settings(SERVICEDESK_VAPID_PRIVATE_KEY=private, SERVICEDESK_VAPID_PUBLIC_KEY=public),
    )
    r = await desk.client.get(url, headers=headers)
    assert r.json() == {"vapid_public_key": public, "subscriptions": []}
    r = await desk.client.post(url, json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["endpoint"] == body["endpoint"]
    r = await desk.client.post(url, json=body, headers=headers)  # the same browser again
    assert r.status_code == 201
    assert len((await desk.client.get(url, headers=headers)).json()["subscriptions"]) == 1
    # Only HTTPS endpoints of push services; keys that are keys.
    for endpoint in ("http://fcm.googleapis.com/x", "https://127.0.0.1/x", "https://evil.test/x"):
        r = await desk.client.post(url, json={**body, "endpoint": endpoint}, headers=headers)
        problem(r, 422, "invalid_push_endpoint")
    for keys in ({"p256dh": "x" * 87, "auth": _b64(browser.auth)}, {"p256dh": browser.p256dh}):
        problem(await desk.client.post(url, json={**body, "keys": keys}, headers=headers), 422)
    # Another user cannot remove it; the owner can, once.
    params = {"endpoint": body["endpoint"]}
    problem(await desk.client.delete(url, params=params, headers=desk.agent.headers), 404)
    assert (await desk.client.delete(url, params=params, headers=headers)).status_code == 204
    problem(await desk.client.delete(url, params=params, headers=headers), 404)


# The API -------------------------------------------------------------------------------------


async def test_in_app_list_unread_count_and_read_marks(desk: Desk, rt: Runtime) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    for i in range(3):
        await desk.comment(ticket, f"Reply {i}.", desk.agent)
    await fan.run()
    h = desk.requester.headers
    r = await desk.client.get(f"{NOTIFICATIONS}/unread-count", headers=h)
    assert r.json() == {"count": 3}
    r = await desk.client.get(NOTIFICATIONS, params={"limit": 2}, headers=h)
    assert r.status_code == 200
    page = r.json()
    assert [n["body"] for n in page["items"]] == ["Reply 2.", "Reply 1."]
    r = await desk.client.get(
        NOTIFICATIONS, params={"limit": 2, "cursor": page["next_cursor"]}, headers=h
    )
    assert [n["body"] for n in r.json()["items"]] == ["Reply 0."]
    assert r.json()["next_cursor"] is None

    newest = page["items"][0]
    r = await desk.client.post(f"{NOTIFICATIONS}/{newest['id']}/read", headers=h)
    assert r.status_code == 200 and r.json()["read_at"] is not None
    again = await desk.client.post(f"{NOTIFICATIONS}/{newest['id']}/read", headers=h)
    assert again.json()["read_at"] == r.json()["read_at"]
    assert (await desk.client.get(f"{NOTIFICATIONS}/unread-count", headers=h)).json()["count"] == 2
    r = await desk.client.get(NOTIFICATIONS, params={"unread": True}, headers=h)
    assert newest["id"] not in {n["id"] for n in r.json()["items"]}
    r = await desk.client.post(f"{NOTIFICATIONS}/read-all", headers=h)
    assert r.json() == {"updated": 2}
    assert (await desk.client.get(f"{NOTIFICATIONS}/unread-count", headers=h)).json()["count"] == 0

    # Someone else's notification is not found; bad input is a 422.
    problem(
        await desk.client.post(f"{NOTIFICATIONS}/{newest['id']}/read", headers=desk.agent.headers),
        404,
    )
    problem(await desk.client.post(f"{NOTIFICATIONS}/{uuid.uuid4()}/read", headers=h), 404)
    problem(await desk.client.post(f"{NOTIFICATIONS}/not-a-uuid/read", headers=h), 422)
    problem(await desk.client.get(NOTIFICATIONS, params={"limit": 0}, headers=h), 422)
    problem(await desk.client.get(NOTIFICATIONS, params={"cursor": "!!"}, headers=h), 400)
    problem(await desk.client.get(NOTIFICATIONS, headers={"X-Tenant-ID": desk.org.slug}), 401)


async def test_preferences_api(desk: Desk) -> None:
    url, h = f"{NOTIFICATIONS}/preferences", desk.agent.headers
    r = await desk.client.get(url, headers=h)
    assert r.status_code == 200
    prefs = r.json()
    assert prefs["channels"] == ["in_app", "email", "push"]
    assert prefs["quiet_hours"] is None and prefs["timezone"] == "UTC"
    assert all(p["enabled"] for p in prefs["preferences"])
    assert {p["event_type"] for p in prefs["preferences"]} >= {
        "ticket.created",
        "ticket.assigned",
        "ticket.status_changed",
        "comment.created",
        "comment.mentioned",
        "user.registered",
    }
    change = {"event_type": "ticket.assigned", "channel": "push", "enabled": False}
    r = await desk.client.put(
        url,
        json={"preferences": [change], "quiet_hours": {"start": "21:30", "end": "06:45"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    flat = {(p["event_type"], p["channel"]): p["enabled"] for p in r.json()["preferences"]}
    assert flat[("ticket.assigned", "push")] is False
    assert flat[("ticket.assigned", "email")] is True
    assert r.json()["quiet_hours"] == {"start": "21:30:00", "end": "06:45:00"}
    # Leaving quiet_hours out keeps them.
    r = await desk.client.put(url, json={"preferences": []}, headers=h)
    assert r.json()["quiet_hours"] == {"start": "21:30:00", "end": "06:45:00"}
    # Another user's settings are their own.
    other = (await desk.client.get(url, headers=desk.agent2.headers)).json()
    assert other["quiet_hours"] is None
    for bad in (
        {"preferences": [{"event_type": "ticket.exploded", "channel": "email", "enabled": False}]},
        {"preferences": [{"event_type": "ticket.assigned", "channel": "pigeon", "enabled": False}]},
        {"preferences": [{"event_type": "ticket.assigned", "channel": "email"}]},
        {"quiet_hours": {"start": "22:00", "end": "22:00"}},
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"quiet_hours": {"start": "22:00+02:00", "end": "07:00"}},
        {"unknown": True},
    ):
        problem(await desk.client.put(url, json=bad, headers=h), 422)
    history = await desk.client.get(
        f"{API}/audit-log",
        params={"action": "notification_preferences.updated"},
        headers=desk.admin.headers,
    )
    assert history.json()["items"][0]["new_values"]["ticket.assigned/push"] is False


async def test_email_log_for_admins(desk: Desk, rt: Runtime, sink: Sink) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    other = await desk.file(desk.requester2)
    await desk.comment(ticket, "Logged reply.", desk.agent)
    await desk.comment(other, "Another logged reply.", desk.agent)
    await fan.run()
    await delivery.send_due_emails(rt)
    url = f"{API}/emails"
    problem(await desk.client.get(url, headers=desk.agent.headers), 403)
    r = await desk.client.get(url, params={"ticket_id": ticket["id"]}, headers=desk.admin.headers)
    assert r.status_code == 200, r.text
    (entry,) = [e for e in r.json()["items"] if e["template"] == "comment_reply"]
    assert entry["to_address"] == desk.requester.user.email
    assert entry["status"] == "sent" and entry["sent_at"] and entry["attempts"] == 0
    assert entry["subject"] == f"[{ticket['number']}] {ticket['subject']}"
    assert entry["references"] == f"<ticket-{ticket['id']}@{DOMAIN}>"
    assert entry["actor_id"] == str(desk.agent.user.id) and entry["event_id"]
    assert "body_html" not in entry
    r = await desk.client.get(url, params={"status": "queued"}, headers=desk.admin.headers)
    assert ticket["id"] not in {e["ticket_id"] for e in r.json()["items"]}
    r = await desk.client.get(url, params={"limit": 1}, headers=desk.admin.headers)
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"]
    problem(await desk.client.get(url, params={"status": "lost"}, headers=desk.admin.headers), 422)


async def test_notifications_never_cross_organizations(
    desk: Desk, rt: Runtime, app: object, make_org: Any, make_user: Any, login: Any
) -> None:
    fan = Fanout(rt, desk.org.id)
    ticket = await desk.file()
    await desk.comment(ticket, "Only for Acme.", desk.agent)
    await fan.run()
    (mine,) = await notifications_of(rt, desk.requester.user)
    other = await make_org("Elsewhere")
    outsider = await login(await make_user(other, Role.ADMIN), other)
    async with client_for(app) as c:
        problem(await c.post(f"{NOTIFICATIONS}/{mine.id}/read", headers=outsider.headers), 404)
        r = await c.get(NOTIFICATIONS, headers=outsider.headers)
        assert r.json()["items"] == []
        r = await c.get(f"{API}/emails", headers=outsider.headers)
        assert r.json()["items"] == []
        r = await c.post(f"{NOTIFICATIONS}/read-all", headers=outsider.headers)
        assert r.json() == {"updated": 0}
    assert (await notifications_of(rt, desk.requester.user))[0].read_at is None
    # Row-level security holds for the notification tables without any filter.
    async with rt.db.tenant_session(other.id) as session:
        for model in (Notification, Email, NotificationReceipt):
            assert (await session.execute(select(model))).first() is None


async def test_every_notification_route_has_a_summary(app: Any) -> None:
    paths = app.openapi()["paths"]
    ours = {p: ops for p, ops in paths.items() if p.startswith((NOTIFICATIONS, f"{API}/emails"))}
    assert len(ours) == 7
    assert all(op.get("summary") for ops in ours.values() for op in ops.values())


async def test_notifications_of_a_registration_decided_already_are_skipped(
    desk: Desk, rt: Runtime
) -> None:
    fan = Fanout(rt, desk.org.id)
    r = await desk.client.post(
        f"{API}/auth/register",
        json={
            "first_name": "Quick",
            "last_name": "Decision",
            "email": f"quick-{secrets.token_hex(3)}@example.com",
            "company_id": f"MA{secrets.randbelow(9000) + 1000}",
            "password": "A-long-enough-pass-42",
        },
        headers={"X-Tenant-ID": desk.org.slug},
    )
    user_id = r.json()["id"]
    r = await desk.client.post(f"{API}/users/{user_id}/approve", headers=desk.admin.headers)
    assert r.status_code == 200
    await fan.run()
    assert "user.registered" not in types_of(await notifications_of(rt, desk.admin.user))


# End to end through the job system -----------------------------------------------------------


async def test_end_to_end_api_action_worker_email(
    desk: Desk, sink: Sink, database_url: str
) -> None:
    from servicedesk.core.job_runner import JobSystem
    from servicedesk.core.jobs import Registry, registry

    settings = mail_settings(
        sink.port, SERVICEDESK_JOBS_POLL_SECONDS=0.2, SERVICEDESK_DB_POOL_SIZE=4
    )
    worker_runtime = Runtime.build(settings, database_url)
    mine = Registry()
    mine.handlers = {k: v for k, v in registry.handlers.items() if k.startswith("notifications.")}
    mine.tasks = {k: v for k, v in registry.tasks.items() if k.startswith("notifications.")}
    # Earlier tests of this database left their events undispatched (no worker ran): count
    # them as dispatched, so this worker handles only this test's events.
    await desk.sql("UPDATE outbox_events SET dispatched_at = now() WHERE dispatched_at IS NULL")
    try:
        async with JobSystem(worker_runtime, registry=mine, scheduler=False, concurrency=2):
            ticket = await desk.file()
            await desk.comment(ticket, "Sent by the worker.", desk.agent)
            for _ in range(600):
                if sink.to(desk.requester.user):
                    break
                await asyncio.sleep(0.1)
    finally:
        await worker_runtime.db.dispose()
    (mail,) = sink.to(desk.requester.user)
    assert "Sent by the worker." in mail.text()
    assert str(mail.message["In-Reply-To"]) == f"<ticket-{ticket['id']}@{DOMAIN}>"


# A sender killed in the middle of sending ----------------------------------------------------

SENDER = """
import asyncio, sys, uuid
from servicedesk.config import Settings
from servicedesk.core.runtime import Runtime
from servicedesk.notifications import delivery

async def main() -> None:
    runtime = Runtime.build(Settings(), sys.argv[1])
    await delivery.send_due_emails(runtime, ids=[uuid.UUID(i) for i in sys.argv[2:]])

asyncio.run(main())
"""


class KillingSink(Sink):
    """Kills the sender with SIGKILL while it waits for the answer to its first message: the
    message has arrived, the sender never learns it was accepted and never commits."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: int | None = None

    async def handle_DATA(  # noqa: N802
        self, server: smtp.SMTP, session: smtp.Session, envelope: smtp.Envelope
    ) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
            self.victim = None
            await asyncio.sleep(0.2)
        return answer


async def test_a_sender_killed_mid_send_delivers_every_email_once_by_message_id(
    desk: Desk, runtime: Runtime, database_url: str, tmp_path: Any
) -> None:
    sink = KillingSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: smtp.SMTP(sink), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    rt = dataclasses.replace(runtime, settings=mail_settings(sink.port))
    try:
        fan = Fanout(rt, desk.org.id)
        ticket = await desk.file()
        for i in range(3):
            await desk.comment(ticket, f"Crash-safe reply {i}.", desk.agent)
        await fan.run()
        rows = await emails_of(rt, desk.requester.user)
        ids = [str(e.id) for e in rows]
        assert len(ids) == 3

        env = {
            **os.environ,
            "SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
            "SMTP_FROM": "desk@mail.test",
            "SERVICEDESK_MAIL_DOMAIN": DOMAIN,
            "SECRET_KEY": "test-secret-" + "x" * 40,
            "SERVICEDESK_DATA_DIR": str(tmp_path),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SENDER, database_url, *ids, env=env
        )
        sink.victim = proc.pid
        assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL
        assert len(sink.received) == 1  # it arrived; the sender died before its commit
        assert {e.status for e in await emails_of(rt, desk.requester.user)} == {"queued"}

        # A restarted sender sends everything still queued (the dead sender's row lock goes
        # with its connection), the interrupted one again under the same Message-ID.
        for _ in range(50):
            await delivery.send_due_emails(rt, ids=[uuid.UUID(i) for i in ids])
            if {e.status for e in await emails_of(rt, desk.requester.user)} == {"sent"}:
                break
            await asyncio.sleep(0.1)
        rows = await emails_of(rt, desk.requester.user)
        assert {e.status for e in rows} == {"sent"}
        message_ids = [str(r.message["Message-ID"]) for r in sink.to(desk.requester.user)]
        assert len(message_ids) == 4
        assert set(message_ids) == {e.message_id for e in rows}  # each email once by its id
        assert message_ids.count(message_ids[0]) == 2  # the interrupted one, resent as itself
    finally:
        server.close()
        await server.wait_closed()
