"""The send steps: queued emails and pushes out, batched emails into digests.

Each email is sent in its own short transaction: claim one due `queued` row with
`FOR UPDATE SKIP LOCKED` (concurrent senders take different rows), hand the message to the
SMTP server, then mark it `sent` and commit. A sender that dies before the commit releases the
lock with its connection and the row stays `queued`, so another sender sends it again.

The window that cannot be closed from this side: the SMTP server accepted the message, and
the process died before the commit. The resend then carries the same `Message-ID` (derived from
the row id), which receiving systems and mail clients use to drop the copy. Everything else is
exactly once: a row is marked `sent` only after the server said 250, and only once.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.config import Settings
from servicedesk.core.clock import utc_now
from servicedesk.core.runtime import Runtime
from servicedesk.models import Email, EmailStatus, PushMessage, PushStatus
from servicedesk.notifications import email as mail
from servicedesk.notifications import push
from servicedesk.notifications.repository import EmailRepository, PushRepository
from servicedesk.notifications.service import (
    NOTIFICATIONS_PATH,
    PREFERENCES_PATH,
    link,
    may_sign_in,
    push_configured,
)
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.service import Tenant

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, … minutes after the n-th failure, at most an hour."""
    return min(timedelta(minutes=2 ** max(0, attempts - 1)), MAX_BACKOFF)


def _record_failure(
    row: Email | PushMessage,
    error: str,
    *,
    permanent: bool,
    now: datetime,
    max_attempts: int,
) -> bool:
    """Count a failed attempt; True when the row gave up (status `failed`)."""
    row.attempts += 1
    row.last_error = error[:2000]
    if permanent or row.attempts >= max_attempts:
        row.status = EmailStatus.FAILED if isinstance(row, Email) else PushStatus.FAILED
        return True
    row.send_after = now + backoff(row.attempts)
    return False


# Email ---------------------------------------------------------------------------------------


async def send_due_emails(
    runtime: Runtime,
    *,
    now: datetime | None = None,
    ids: list[uuid.UUID] | None = None,
    limit: int = 500,
    mailer: mail.Mailer | None = None,
) -> SendReport:
    """Send queued emails that are due (only `ids`, when given), one transaction each."""
    settings = runtime.settings
    report = SendReport()
    if not settings.smtp_url or ids == []:
        return report
    now = now or utc_now()
    own = mailer is None
    mailer = mailer or mail.Mailer(settings)
    try:
        for _ in range(limit):
            async with runtime.db.session() as session:
                row = await EmailRepository(session).claim_due(now=now, ids=ids)
                if row is None:
                    break
                reachable = await _send_one(mailer, row, runtime, now, report)
            if not reachable:
                break  # the server is not answering: the rest waits for the next run
    finally:
        if own:
            await mailer.close()
    return report


async def _send_one(
    mailer: mail.Mailer, row: Email, runtime: Runtime, now: datetime, report: SendReport
) -> bool:
    """Send one claimed row and record the outcome on it; False when the server is unreachable
    (the rest of the queue waits for the next run). A sealed row is rendered here, in memory."""
    settings = runtime.settings
    try:
        message = mail.build_message(row, settings, secrets=runtime.secrets, now=now)
        await mailer.send(message, to=row.to_address)
    except (mail.DeliveryError, ValueError) as exc:
        # A ValueError is a message that cannot be built (a bad stored address, a sealed email
        # that cannot be decrypted or whose link expired): permanent.
        permanent = not isinstance(exc, mail.DeliveryError) or exc.permanent
        gave_up = _record_failure(
            row, str(exc), permanent=permanent, now=now, max_attempts=settings.email_max_attempts
        )
        row.updated_at = utc_now()
        if gave_up:
            report.failed += 1
        else:
            report.retried += 1
        log.warning("email %s not sent (attempt %s): %s", row.id, row.attempts, exc)
        return not (isinstance(exc, mail.DeliveryError) and exc.connection)
    row.status = EmailStatus.SENT
    row.sent_at = row.updated_at = utc_now()
    report.sent += 1
    return True


# Digests -------------------------------------------------------------------------------------


async def build_digests(runtime: Runtime, *, now: datetime | None = None, limit: int = 500) -> int:
    """Turn each user's batched emails into one queued digest once they waited long enough.

    Due when the oldest batched email is `SERVICEDESK_NOTIFY_DIGEST_MINUTES` old and none is
    held by quiet hours any more.
    """
    now = now or utc_now()
    collected_since = now - timedelta(minutes=runtime.settings.notify_digest_minutes)
    async with runtime.db.session() as session:
        due = await EmailRepository(session).due_digests(
            now=now, collected_since=collected_since, limit=limit
        )
    built = 0
    for organization_id, user_id in due:
        async with runtime.db.tenant_session(organization_id) as session:
            if await _build_digest(session, runtime.settings, organization_id, user_id, now):
                built += 1
    return built


async def _build_digest(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
) -> uuid.UUID | None:
    items = await EmailRepository(session).batched_for_update(user_id)
    if not items:
        return None  # another scheduler took them
    users = await accounts.get_users(session, [user_id])
    if not users or not may_sign_in(users[0]):
        for item in items:
            item.status, item.last_error = EmailStatus.FAILED, "recipient can no longer sign in"
            item.updated_at = now
        return None
    user = users[0]
    org = await tenancy.get_organization(session, organization_id)
    tenant, brand = Tenant.of(org), mail.Branding.of(org.name, dict(org.settings or {}))
    digest_id = uuid.uuid4()
    count = len(items)
    subject = f"{count} update{'' if count == 1 else 's'} from {org.name}"
    rendered = mail.render(
        "digest",
        {
            "brand": brand,
            "recipient_name": user.first_name,
            "subject": subject,
            "ticket": None,
            "items": [{"subject": i.subject, "summary": i.summary, "url": i.url} for i in items],
            "preferences_url": link(settings, tenant, PREFERENCES_PATH),
        },
    )
    session.add(
        Email(
            id=digest_id,
            organization_id=organization_id,
            user_id=user.id,
            to_address=user.email,
            from_name=mail.header_text(org.name, 200),
            reply_to=brand.support_email,
            subject=mail.header_text(subject),
            summary=mail.header_text(f"A digest of {count} notifications"),
            url=link(settings, tenant, NOTIFICATIONS_PATH)[:700],
            template="digest",
            body_text=rendered.text,
            body_html=rendered.html,
            status=EmailStatus.QUEUED,
            send_after=now,
            actor_type="system",
            dedup_key=f"digest:{digest_id}",
            message_id=f"<digest-{digest_id}@{mail.mail_domain(settings)}>",
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()
    for item in items:
        item.status, item.digest_id, item.updated_at = EmailStatus.DIGESTED, digest_id, now
    return digest_id


# Web push ------------------------------------------------------------------------------------


async def send_due_push(
    runtime: Runtime,
    *,
    now: datetime | None = None,
    ids: list[uuid.UUID] | None = None,
    limit: int = 500,
) -> SendReport:
    """Send queued push messages that are due to every subscription of their user."""
    settings = runtime.settings
    report = SendReport()
    if not push_configured(settings) or ids == []:
        return report
    now = now or utc_now()
    key = push.vapid_key(settings)
    async with aiohttp.ClientSession() as http:
        for _ in range(limit):
            async with runtime.db.session() as session:
                repo = PushRepository(session)
                message = await repo.claim_due(now=now, ids=ids)
                if message is None:
                    break
                subscriptions = await repo.subscriptions_of(
                    message.organization_id, message.user_id
                )
                payload = json.dumps(
                    {
                        "title": message.title,
                        "body": message.body,
                        "url": message.url,
                        "tag": message.dedup_key,
                    }
                )
                delivered, errors = 0, []
                for subscription in subscriptions:
                    result, error = await push.send(
                        http, subscription, payload, key=key, subject=settings.vapid_subject
                    )
                    if result == push.PushResult.SENT:
                        delivered += 1
                        subscription.last_success_at = utc_now()
                    elif result == push.PushResult.GONE:
                        await session.delete(subscription)
                    else:
                        errors.append(error or "failed")
                if delivered:
                    message.status, message.sent_at = PushStatus.SENT, utc_now()
                    report.sent += 1
                elif not errors:
                    message.status = PushStatus.FAILED
                    message.last_error = "the user has no push subscription left"
                    report.failed += 1
                elif _record_failure(
                    message,
                    "; ".join(errors),
                    permanent=False,
                    now=now,
                    max_attempts=settings.email_max_attempts,
                ):
                    report.failed += 1
                else:
                    report.retried += 1
    return report


# What the job handlers call ------------------------------------------------------------------


async def deliver_due(runtime: Runtime, *, now: datetime | None = None) -> None:
    """The periodic sweep: digests that are due, then every due email and push."""
    now = now or utc_now()
    await build_digests(runtime, now=now)
    await send_due_emails(runtime, now=now)
    await send_due_push(runtime, now=now)
