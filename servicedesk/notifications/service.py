"""What a user does with their notifications (their list, read marks, preferences, push
subscriptions) and the email log; the fan-out of events lives in notifications.fanout and is
re-exported here (`notify_for_event`, `Delivery`, the link helpers).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.audit import service as audit
from servicedesk.config import Settings
from servicedesk.core.actor import Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import NotFound, Unprocessable
from servicedesk.models import (
    Email,
    Notification,
    PushSubscription,
    User,
)
from servicedesk.notifications import quiet_hours, rules
from servicedesk.notifications.fanout import (
    CHANNELS,
    NOTIFICATIONS_PATH,
    PREFERENCES_PATH,
    Content,
    Delivery,
    link,
    may_sign_in,
    notify_for_event,
    push_configured,
    registration_path,
    status_label,
    ticket_path,
)
from servicedesk.notifications.repository import (
    EmailRepository,
    NotificationRepository,
    PreferenceRepository,
    PushRepository,
)
from servicedesk.notifications.schemas import (
    PreferenceRead,
    PreferencesRead,
    PreferencesUpdate,
    PushSubscriptionCreate,
    PushSubscriptionRead,
    PushSubscriptionsRead,
    QuietHours,
)

__all__ = [
    "CHANNELS",
    "NOTIFICATIONS_PATH",
    "PREFERENCES_PATH",
    "Content",
    "Delivery",
    "link",
    "may_sign_in",
    "notify_for_event",
    "push_configured",
    "registration_path",
    "status_label",
    "ticket_path",
]


# What a user does with their notifications ---------------------------------------------------


async def list_notifications(
    session: AsyncSession,
    user: User,
    *,
    unread_only: bool,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Notification]:
    return await NotificationRepository(session).list(
        user.id, unread_only=unread_only, before=before, limit=limit
    )


async def count_unread(session: AsyncSession, user: User) -> int:
    return await NotificationRepository(session).unread_count(user.id)


async def access_notification(
    session: AsyncSession, user: User, notification_id: uuid.UUID
) -> Notification:
    """The user's own notification, or 404 (the same for another user's or organization's)."""
    found = await NotificationRepository(session).get(user.id, notification_id)
    if found is None:
        raise NotFound("Notification not found.")
    return found


async def mark_read(
    session: AsyncSession, user: User, notification_id: uuid.UUID, *, now: datetime | None = None
) -> Notification:
    found = await access_notification(session, user, notification_id)
    if found.read_at is None:
        found.read_at = now or utc_now()
        await session.flush()
    return found


async def mark_all_read(session: AsyncSession, user: User, *, now: datetime | None = None) -> int:
    return await NotificationRepository(session).mark_all_read(user.id, at=now or utc_now())


# Preferences ---------------------------------------------------------------------------------


async def get_preferences(session: AsyncSession, user: User) -> PreferencesRead:
    repo = PreferenceRepository(session)
    chosen = {(r.event_type, r.channel): r.enabled for r in await repo.for_user(user.id)}
    settings = await repo.settings(user.id)
    quiet = None
    if settings and settings.quiet_hours_start and settings.quiet_hours_end:
        quiet = QuietHours(start=settings.quiet_hours_start, end=settings.quiet_hours_end)
    return PreferencesRead(
        timezone=quiet_hours.zone(user.timezone).key,
        quiet_hours=quiet,
        channels=list(CHANNELS),
        preferences=[
            PreferenceRead(
                event_type=t.key,
                label=t.label,
                channel=channel,
                enabled=chosen.get((t.key, channel), True),
            )
            for t in rules.TYPES.values()
            for channel in CHANNELS
        ],
    )


async def do_update_preferences(
    session: AsyncSession, user: User, data: PreferencesUpdate, *, now: datetime | None = None
) -> PreferencesRead:
    now = now or utc_now()
    before = await get_preferences(session, user)
    repo = PreferenceRepository(session)
    for item in data.preferences:
        await repo.upsert(
            organization_id=user.organization_id,
            user_id=user.id,
            event_type=item.event_type,
            channel=item.channel,
            enabled=item.enabled,
            at=now,
        )
    if "quiet_hours" in data.model_fields_set:
        quiet = data.quiet_hours
        await repo.set_quiet_hours(
            organization_id=user.organization_id,
            user_id=user.id,
            start=quiet.start if quiet else None,
            end=quiet.end if quiet else None,
            at=now,
        )
    after = await get_preferences(session, user)
    old, new = audit.diff(_audit_view(before), _audit_view(after))
    if new:
        await audit.record(
            session,
            organization_id=user.organization_id,
            actor=Actor.user(user.id),
            action="notification_preferences.updated",
            table="notification_preferences",
            record_id=user.id,
            old=old,
            new=new,
        )
    return after


def _audit_view(prefs: PreferencesRead) -> dict[str, Any]:
    view: dict[str, Any] = {f"{p.event_type}/{p.channel}": p.enabled for p in prefs.preferences}
    view["quiet_hours"] = prefs.quiet_hours.model_dump(mode="json") if prefs.quiet_hours else None
    return view


# Web push subscriptions ----------------------------------------------------------------------


def check_push_endpoint(settings: Settings, endpoint: str) -> None:
    """Only HTTPS endpoints of the configured push services: the server POSTs to them."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    allowed = [h.strip().lower() for h in settings.push_hosts.split(",") if h.strip()]
    if parts.scheme != "https" or not any(host == h or host.endswith("." + h) for h in allowed):
        raise Unprocessable(
            "The endpoint is not an HTTPS address of a known push service.",
            code="invalid_push_endpoint",
            errors=[{"loc": ["body", "endpoint"], "msg": "unknown push service", "type": "x"}],
        )


async def list_push_subscriptions(
    session: AsyncSession, settings: Settings, user: User
) -> PushSubscriptionsRead:
    rows = await PushRepository(session).subscriptions(user.id)
    return PushSubscriptionsRead(
        vapid_public_key=settings.vapid_public_key if push_configured(settings) else None,
        subscriptions=[PushSubscriptionRead.model_validate(r) for r in rows],
    )


async def do_add_push_subscription(
    session: AsyncSession,
    settings: Settings,
    user: User,
    data: PushSubscriptionCreate,
    *,
    user_agent: str | None,
) -> PushSubscription:
    """Store (or refresh the keys of) a browser's subscription for the user."""
    if not push_configured(settings):
        raise Unprocessable("Web push is not configured on this server.", code="push_disabled")
    check_push_endpoint(settings, data.endpoint)
    repo = PushRepository(session)
    row = await repo.subscription_by_endpoint(user.id, data.endpoint)
    if row is None:
        row = PushSubscription(
            organization_id=user.organization_id,
            user_id=user.id,
            endpoint=data.endpoint,
            p256dh=data.keys.p256dh,
            auth=data.keys.auth,
            user_agent=(user_agent or "")[:400] or None,
        )
        session.add(row)
        action = "push_subscription.created"
    else:
        row.p256dh, row.auth = data.keys.p256dh, data.keys.auth
        action = "push_subscription.updated"
    await session.flush()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action=action,
        table="push_subscriptions",
        record_id=row.id,
        new={"endpoint_host": urlsplit(data.endpoint).hostname, "user_agent": row.user_agent},
    )
    return row


async def do_remove_push_subscription(session: AsyncSession, user: User, endpoint: str) -> None:
    repo = PushRepository(session)
    row = await repo.subscription_by_endpoint(user.id, endpoint)
    if row is None:
        raise NotFound("Push subscription not found.")
    await session.delete(row)
    await session.flush()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action="push_subscription.deleted",
        table="push_subscriptions",
        record_id=row.id,
        old={"endpoint_host": urlsplit(endpoint).hostname},
    )


# The email log -------------------------------------------------------------------------------


async def list_emails(
    session: AsyncSession,
    *,
    status: str | None,
    ticket_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Email]:
    return await EmailRepository(session).list(
        status=status, ticket_id=ticket_id, user_id=user_id, before=before, limit=limit
    )
