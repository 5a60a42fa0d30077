"""The password reset email: forgot → handler → SMTP sink → the link works; the `emails` row
never holds the link in plaintext; security mail ignores preferences, quiet hours, de-dup and
digests; exactly once per request, also through the real job system.

Uses the SMTP sink of tests/test_notifications.py (aiosmtpd on a free loopback port).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd import smtp as aiosmtpd_smtp
from sqlalchemy import select, text

from servicedesk.accounts import password_reset
from servicedesk.core.events import envelope
from servicedesk.core.jobs import AlreadyHandled, JobContext
from servicedesk.core.runtime import Runtime
from servicedesk.models import Email, Organization, OutboxEvent, User
from servicedesk.notifications import delivery, handlers, security_email
from servicedesk.notifications import email as mail
from servicedesk.notifications.repository import PreferenceRepository
from tests.conftest import Session, tenant
from tests.test_notifications import DOMAIN, Received, Sink, mail_settings

FORGOT = "/api/v1/auth/password/forgot"
RESET = "/api/v1/auth/password/reset"
NEW_PASSWORD = "A-Brand-New-Passphrase-42"
HANDLER = "notifications.password_reset"
LINK = re.compile(r"https?://[^\s\"'<>]+/reset-password\?token=[A-Za-z0-9_\-]+")


@pytest.fixture
async def smtp() -> AsyncIterator[Sink]:
    """The SMTP sink of tests/test_notifications.py on a free loopback port."""
    handler = Sink()
    server = await asyncio.get_running_loop().create_server(
        lambda: aiosmtpd_smtp.SMTP(handler), "127.0.0.1", 0
    )
    handler.port = server.sockets[0].getsockname()[1]
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def mail_rt(runtime: Runtime, smtp: Sink) -> Runtime:
    """The app's runtime (same database and secret) with SMTP pointing at the sink."""
    return dataclasses.replace(runtime, settings=mail_settings(smtp.port))


async def forgot(client: httpx.AsyncClient, org: Organization, email: str) -> None:
    r = await client.post(FORGOT, json={"email": email}, headers=tenant(org))
    assert r.status_code == 202, r.text


async def reset_events(rt: Runtime, org: Organization) -> list[dict[str, Any]]:
    async with rt.db.session() as session:
        rows = await session.execute(
            select(OutboxEvent)
            .where(
                OutboxEvent.organization_id == org.id,
                OutboxEvent.event_type == password_reset.EVENT_TYPE,
            )
            .order_by(OutboxEvent.seq)
        )
        return [envelope(r) for r in rows.scalars()]


async def run_handler(rt: Runtime, event: dict[str, Any], attempt: int = 1) -> None:
    await handlers.password_reset_email(JobContext(rt, event, attempt=attempt, handler=HANDLER))


async def reset_emails(rt: Runtime, user: User) -> list[Email]:
    async with rt.db.tenant_session(user.organization_id) as session:
        rows = await session.execute(
            select(Email)
            .where(Email.user_id == user.id, Email.template == security_email.TEMPLATE)
            .order_by(Email.created_at, Email.id)
        )
        return list(rows.scalars())


async def raw_row(rt: Runtime, email_id: uuid.UUID) -> dict[str, Any]:
    """Every column of the stored row, as the database has it."""
    async with rt.db.session() as session:
        row = await session.execute(text("SELECT * FROM emails WHERE id = :id"), {"id": email_id})
        return dict(row.mappings().one())


def link_of(mail: Received) -> str:
    found: set[str] = set(LINK.findall(mail.text()))
    assert len(found) == 1, found
    (link,) = found
    assert link in mail.html()
    return link


async def follow(client: httpx.AsyncClient, link: str, password: str) -> httpx.Response:
    """What the reset page does with the link: POST the token to the organization's API."""
    parts = urlsplit(link)
    slug = parts.path.split("/")[2]  # /t/{slug}/reset-password
    (token,) = parse_qs(parts.query)["token"]
    return await client.post(
        RESET, json={"token": token, "password": password}, headers={"X-Tenant-ID": slug}
    )


async def test_forgot_sends_one_email_whose_link_resets_the_password(
    client: httpx.AsyncClient,
    runtime: Runtime,
    mail_rt: Runtime,
    smtp: Sink,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
    login: Callable[..., Awaitable[Session]],
) -> None:
    user = await make_user(org)
    await forgot(client, org, user.email)
    (event,) = await reset_events(mail_rt, org)
    token = password_reset.reset_link_from_event(mail_rt, event["payload"]).split("token=", 1)[1]

    await run_handler(mail_rt, event)
    # Running it again (a retry, a replay) is skipped by the handled mark …
    with pytest.raises(AlreadyHandled):
        await run_handler(mail_rt, event, attempt=2)
    # … and the core alone writes nothing twice (one row per event, user and template).
    async with mail_rt.db.tenant_session(org.id) as session:
        assert await security_email.queue_password_reset_email(session, mail_rt, event) is None
    (row,) = await reset_emails(mail_rt, user)
    async with mail_rt.db.session() as session:
        jobs = (
            await session.execute(
                text(
                    "SELECT count(*) FROM procrastinate.procrastinate_jobs "
                    "WHERE task_name = :name AND args->'args'->>'id' = :id"
                ),
                {"name": handlers.SEND_EMAIL, "id": str(row.id)},
            )
        ).scalar_one()
    assert jobs == 1

    # Sent once, however often the send step runs.
    assert (await delivery.send_due_emails(mail_rt, ids=[row.id])).sent == 1
    assert (await delivery.send_due_emails(mail_rt, ids=[row.id])).sent == 0
    (mail,) = smtp.to(user)
    assert mail.rcpt_tos == [user.email]
    assert str(mail.message["Subject"]) == f"Reset your password for {org.name}"
    assert str(mail.message["Message-ID"]) == f"<notification-{row.id}@{DOMAIN}>"
    assert str(mail.message["Auto-Submitted"]) == "auto-generated"
    assert org.name in str(mail.message["From"])
    assert "notification settings at" not in mail.text()  # not a notification: no opt-out
    link = link_of(mail)
    assert link.startswith(f"{runtime.settings.public_url}/t/{org.slug}/reset-password?token=")
    assert link.endswith(f"token={token}")

    # At rest: no plaintext token (nor link) in any column of the row, sent or not.
    stored = await raw_row(mail_rt, row.id)
    assert stored["status"] == "sent"
    for column, value in stored.items():
        assert token not in str(value), column
    assert stored["body_text"].startswith("sealed:v1:")
    assert stored["body_html"] == ""
    assert stored["url"] == f"{runtime.settings.public_url}/t/{org.slug}/reset-password"

    # The link works: a new password, and signing in with it.
    assert (await follow(client, link, NEW_PASSWORD)).status_code == 204
    await login(user, org, NEW_PASSWORD)
    assert (await follow(client, link, "Another-New-Passphrase-7")).status_code == 400


async def test_security_mail_ignores_quiet_hours_dedup_and_digests(
    client: httpx.AsyncClient,
    runtime: Runtime,
    smtp: Sink,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    # One email in the window would send a notification to the digest; quiet hours all around.
    rt = dataclasses.replace(
        runtime, settings=mail_settings(smtp.port, SERVICEDESK_NOTIFY_DIGEST_THRESHOLD=1)
    )
    user = await make_user(org)
    now = datetime.now(UTC)
    async with rt.db.tenant_session(org.id) as session:
        await PreferenceRepository(session).set_quiet_hours(
            organization_id=org.id,
            user_id=user.id,
            start=(now - timedelta(hours=1)).time(),
            end=(now + timedelta(hours=1)).time(),
            at=now,
        )
    await forgot(client, org, user.email)
    await forgot(client, org, user.email)
    events = await reset_events(rt, org)
    assert len(events) == 2
    for event in events:
        await run_handler(rt, event)
    rows = await reset_emails(rt, user)
    assert [r.status for r in rows] == ["queued", "queued"]
    assert all(r.send_after <= datetime.now(UTC) for r in rows)
    assert (await delivery.send_due_emails(rt, ids=[r.id for r in rows])).sent == 2
    first, second = smtp.to(user)
    # A newer request retires the older link: only the second one works.
    assert (await follow(client, link_of(first), NEW_PASSWORD)).status_code == 400
    assert (await follow(client, link_of(second), NEW_PASSWORD)).status_code == 204


async def test_no_email_for_unknown_or_unusable_accounts(
    client: httpx.AsyncClient,
    mail_rt: Runtime,
    smtp: Sink,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    unknown = f"nobody-{secrets.token_hex(4)}@example.com"
    await forgot(client, org, unknown)
    assert await reset_events(mail_rt, org) == []  # nothing for a handler to send

    # An account deactivated between the request and the handler gets nothing either.
    user = await make_user(org)
    await forgot(client, org, user.email)
    (event,) = await reset_events(mail_rt, org)
    async with mail_rt.db.session() as session:
        await session.execute(
            text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user.id}
        )
        await session.commit()
    await run_handler(mail_rt, event)
    with pytest.raises(AlreadyHandled):  # handled: nothing left to retry
        await run_handler(mail_rt, event, attempt=2)
    assert await reset_emails(mail_rt, user) == []
    await delivery.send_due_emails(mail_rt)
    assert unknown not in smtp.recipients()
    assert smtp.to(user) == []


async def test_an_email_not_sent_before_its_link_expired_is_never_sent(
    client: httpx.AsyncClient,
    mail_rt: Runtime,
    smtp: Sink,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    user = await make_user(org)
    await forgot(client, org, user.email)
    (event,) = await reset_events(mail_rt, org)
    await run_handler(mail_rt, event)
    (row,) = await reset_emails(mail_rt, user)
    late = datetime.fromisoformat(event["payload"]["expires_at"]) + timedelta(seconds=1)
    report = await delivery.send_due_emails(mail_rt, ids=[row.id], now=late)
    assert (report.sent, report.failed) == (0, 1)
    (row,) = await reset_emails(mail_rt, user)
    assert row.status == "failed"
    assert row.last_error is not None and "expired" in row.last_error
    assert smtp.to(user) == []


async def test_end_to_end_forgot_worker_email(
    client: httpx.AsyncClient,
    runtime: Runtime,
    smtp: Sink,
    org: Organization,
    make_user: Callable[..., Awaitable[User]],
    login: Callable[..., Awaitable[Session]],
    database_url: str,
) -> None:
    from servicedesk.core.job_runner import JobSystem
    from servicedesk.core.jobs import Registry, registry

    settings = mail_settings(
        smtp.port, SERVICEDESK_JOBS_POLL_SECONDS=0.2, SERVICEDESK_DB_POOL_SIZE=4
    )
    worker_runtime = Runtime.build(settings, database_url)
    mine = Registry()
    mine.handlers = {k: v for k, v in registry.handlers.items() if k.startswith("notifications.")}
    mine.tasks = {k: v for k, v in registry.tasks.items() if k.startswith("notifications.")}
    user = await make_user(org)
    # Earlier tests left their events undispatched (no worker ran): this worker handles ours.
    async with runtime.db.session() as session:
        await session.execute(
            text("UPDATE outbox_events SET dispatched_at = now() WHERE dispatched_at IS NULL")
        )
        await session.commit()
    try:
        async with JobSystem(worker_runtime, registry=mine, scheduler=False, concurrency=2):
            await forgot(client, org, user.email)
            for _ in range(600):
                if smtp.to(user):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # room for a duplicate to show up, if there were one
    finally:
        await worker_runtime.db.dispose()
    (mail,) = smtp.to(user)
    assert (await follow(client, link_of(mail), NEW_PASSWORD)).status_code == 204
    await login(user, org, NEW_PASSWORD)
    (row,) = await reset_emails(runtime, user)
    token = parse_qs(urlsplit(link_of(mail)).query)["token"][0]
    assert all(token not in str(v) for v in (await raw_row(runtime, row.id)).values())


def test_templates_escape_html_only() -> None:
    brand = mail.Branding("Tom & Jerry <Ltd>", "#ff6600", None)
    link = "https://desk.example.com/t/tj/reset-password?token=abc_-123"
    rendered = mail.render(
        security_email.TEMPLATE,
        {
            "brand": brand,
            "recipient_name": "Ann",
            "recipient_email": "ann@example.com",
            "subject": "Reset your password for Tom & Jerry <Ltd>",
            "ticket": None,
            "reset_link": link,
            "expires_at_label": "2026-11-25 15:05 (UTC)",
        },
    )
    assert "Tom & Jerry <Ltd>" in rendered.text and link in rendered.text
    assert "Tom &amp; Jerry &lt;Ltd&gt;" in rendered.html and "<Ltd>" not in rendered.html
    assert f'href="{link}"' in rendered.html
    assert "#ff6600" in rendered.html
