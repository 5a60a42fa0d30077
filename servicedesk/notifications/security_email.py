"""Security emails: the password reset link.

A password reset email is not a notification: the user asked for it, so preferences, quiet
hours, de-duplication and digests do not apply (it is queued at once, never batched, and does
not count towards the digest threshold). It uses the same `emails` log and the same exactly-once
send path as every other email (notifications.delivery), with one difference: the link is a
secret, so the row is *sealed* (notifications.email.seal): `body_text` holds the template
context encrypted with the server's `SecretBox`, `body_html` is empty, `url` is the reset page
without the token, and the bodies are rendered in memory when the email is sent. An email that
could not go out before the link expired is not sent at all (it fails as expired).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import password_reset
from servicedesk.accounts import service as accounts
from servicedesk.core.clock import utc_now
from servicedesk.core.runtime import Runtime
from servicedesk.core.security import InvalidTokenError
from servicedesk.models import EmailStatus
from servicedesk.notifications import email as mail
from servicedesk.notifications.quiet_hours import zone
from servicedesk.notifications.repository import EmailRepository
from servicedesk.notifications.service import may_sign_in
from servicedesk.tenancy import service as tenancy

log = logging.getLogger(__name__)

TEMPLATE = "password_reset"


class UnreadableEvent(ValueError):
    """The event cannot be turned into an email, and no retry will change that."""


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _expires_at(payload: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(payload["expires_at"]))
    except (KeyError, ValueError) as exc:
        raise UnreadableEvent("the event has no valid expires_at") from exc


def _label(at: datetime, timezone: str | None) -> str:
    local = at.astimezone(zone(timezone))
    return f"{local:%Y-%m-%d %H:%M} ({local.tzname() or 'UTC'})"


async def queue_password_reset_email(
    session: AsyncSession,
    runtime: Runtime,
    event: dict[str, Any],
    *,
    now: datetime | None = None,
) -> uuid.UUID | None:
    """Queue the sealed reset email of a `user.password_reset_requested` event.

    Runs in the handler's tenant-bound transaction. Returns the new row's id (the caller defers
    its send job), or None when nothing is to be sent: no SMTP configured, the account cannot
    sign in any more or changed its address since, the link already expired, or this event's
    email exists already (the row is unique per event, user and template).
    Raises UnreadableEvent for a payload no retry can fix (e.g. the link cannot be decrypted).
    """
    now = now or utc_now()
    settings = runtime.settings
    if not settings.smtp_url:
        return None
    payload: dict[str, Any] = dict(event.get("payload") or {})
    event_id = uuid.UUID(str(event["event_id"]))
    organization_id = uuid.UUID(str(event["organization_id"]))
    user_id = _uuid(payload.get("user_id"))
    if user_id is None:
        raise UnreadableEvent("the event names no user")
    expires_at = _expires_at(payload)
    if expires_at <= now:
        log.info("password reset email for event %s skipped: the link expired", event_id)
        return None
    users = await accounts.get_users(session, [user_id])
    user = users[0] if users else None
    if user is None or not may_sign_in(user):
        return None
    if user.email.casefold() != str(payload.get("email") or "").casefold():
        return None  # the link was asked for an address the account no longer has
    try:
        reset_link = password_reset.reset_link_from_event(runtime, payload)
    except (InvalidTokenError, KeyError) as exc:
        raise UnreadableEvent("the reset link cannot be decrypted with the server secret") from exc

    org = await tenancy.get_organization(session, organization_id)
    brand = mail.Branding.of(org.name, dict(org.settings or {}))
    subject = f"Reset your password for {org.name}"
    domain = mail.mail_domain(settings)
    email_id = uuid.uuid4()
    context: dict[str, Any] = {
        "brand": brand,
        "recipient_name": user.first_name,
        "recipient_email": user.email,
        "subject": subject,
        "ticket": None,
        "reset_link": reset_link,
        "expires_at_label": _label(expires_at, user.timezone),
    }
    return await EmailRepository(session).add(
        {
            "id": email_id,
            "organization_id": organization_id,
            "user_id": user.id,
            "to_address": user.email,
            "from_name": mail.header_text(org.name, 200),
            "reply_to": brand.support_email,
            "subject": mail.header_text(subject),
            "summary": "A password reset link was requested",
            # The page, never the token: the log must not hold a usable link.
            "url": reset_link.split("?", 1)[0][:700],
            "template": TEMPLATE,
            "body_text": mail.seal(runtime.secrets, context, not_after=expires_at),
            "body_html": "",
            "status": EmailStatus.QUEUED,
            "send_after": now,
            "event_id": event_id,
            "actor_type": str((event.get("actor") or {}).get("type") or "anonymous"),
            "actor_id": _uuid((event.get("actor") or {}).get("id")),
            "dedup_key": f"{TEMPLATE}:{event_id}",
            "message_id": mail.message_id_for(email_id, None, domain),
            "created_at": now,
            "updated_at": now,
        }
    )
