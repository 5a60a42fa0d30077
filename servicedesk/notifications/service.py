"""Notification rules applied: fan-out of events, preferences, quiet hours, de-dup, digests,
and what the API does for a user (their list, read marks, preferences, push subscriptions).

`notify_for_event` is the core of the job handler. It runs in the handler's tenant-bound
transaction and is idempotent by itself: a receipt per (event, user) is written with the
rows it causes, and every row has a unique key per event, so a second run changes nothing.
Sending happens later, from the committed rows (notifications.delivery).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.audit import service as audit
from servicedesk.config import Settings
from servicedesk.core.actor import Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import NotFound, Unprocessable
from servicedesk.core.runtime import Runtime
from servicedesk.core.text import plain
from servicedesk.models import (
    Comment,
    Email,
    EmailStatus,
    Notification,
    NotificationChannel,
    Organization,
    PushSubscription,
    Role,
    Ticket,
    User,
    UserStatus,
)
from servicedesk.notifications import email as mail
from servicedesk.notifications import quiet_hours, rules
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
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import comments as ticket_comments
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer

CHANNELS = tuple(c.value for c in NotificationChannel)
PREFERENCES_PATH = "/notifications/preferences"
NOTIFICATIONS_PATH = "/notifications"
EXCERPT = 280


@dataclass(frozen=True)
class Delivery:
    """A row `notify_for_event` wrote: the send step picks up queued emails and pushes."""

    channel: str
    user_id: uuid.UUID
    id: uuid.UUID
    outcome: str
    """`created`, `folded` (in-app); `queued`, `held`, `batched` (email, push)."""
    send_after: datetime | None = None
    """Email and push: not before this time (quiet hours)."""


@dataclass
class Content:
    """What one recipient is told about one event, in every channel's shape."""

    title: str
    body: str
    path: str
    """Within the organization, e.g. `/tickets/{id}`."""
    subject: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    ticket_id: uuid.UUID | None = None


@dataclass
class _Event:
    id: uuid.UUID
    type: str
    organization_id: uuid.UUID
    actor: Actor
    payload: dict[str, Any]
    tenant: Tenant
    brand: mail.Branding
    users: dict[uuid.UUID, User]

    @property
    def actor_name(self) -> str:
        if self.actor.id is not None and (user := self.users.get(self.actor.id)) is not None:
            return user.full_name
        return "The service desk" if self.actor.type == "system" else "Someone"


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def may_sign_in(user: User) -> bool:
    return user.is_active and user.status == UserStatus.APPROVED


def link(settings: Settings, tenant: Tenant, path: str) -> str:
    """An absolute link into the organization's desk (the `/t/{slug}/` form works anywhere)."""
    return f"{settings.public_url.rstrip('/')}/t/{tenant.slug}{path}"


def ticket_path(user: User, number: str) -> str:
    """The ticket's page for this recipient: the workspace for staff, the portal otherwise."""
    if user.role == Role.REQUESTER:
        return f"/tickets/{number}"
    return f"/agent/tickets/{number}"


def registration_path(user_id: uuid.UUID) -> str:
    """The admin console's page of one user (approve or reject there)."""
    return f"/admin/users/{user_id}"


def status_label(status: str | None) -> str:
    return (status or "").replace("_", " ").capitalize()


def _excerpt(text: str) -> str:
    line = plain(text)
    return line if len(line) <= EXCERPT else line[: EXCERPT - 1] + "…"


# What each recipient is told -----------------------------------------------------------------


async def _ticket_content(
    session: AsyncSession, ev: _Event, candidate: rules.Candidate, user: User
) -> Content | None:
    """The content about a ticket as `user` may see it, or None when they may not."""
    viewer = Viewer.of(user, ev.tenant)
    ticket_id = _uuid(ev.payload.get("ticket_id"))
    if ticket_id is None:
        return None
    try:
        ticket = await tickets.access_ticket(session, viewer, ticket_id)
    except NotFound:
        return None
    comment: Comment | None = None
    if ev.type == "comment.created":
        if ev.payload.get("is_internal") and not viewer.sees_internal:
            return None  # requesters never hear of internal notes
        comment_id = _uuid(ev.payload.get("comment_id"))
        try:
            if comment_id is None:
                return None
            comment = await ticket_comments.get_comment(session, viewer, ticket.id, comment_id)
        except NotFound:
            return None  # deleted since, or not theirs to read
    return _describe_ticket(ev, candidate, user, ticket, comment)


def _describe_ticket(
    ev: _Event, candidate: rules.Candidate, user: User, ticket: Ticket, comment: Comment | None
) -> Content:
    who, number, subject = ev.actor_name, ticket.number, ticket.subject
    context: dict[str, Any] = {"actor_name": who}
    body = ""
    if candidate.type == "ticket.created":
        title, template = f"New ticket {number}: {subject}", "ticket_created"
    elif candidate.type == "ticket.assigned":
        title, template = f"{number} was assigned to you: {subject}", "ticket_assigned"
    elif candidate.type == "ticket.status_changed":
        new = status_label(ev.payload.get("new_status"))
        title, template = f"{number} is now {new}: {subject}", "ticket_status_changed"
        reason = ev.payload.get("reason")
        body = plain(str(reason)) if reason else ""
        context |= {
            "new_status_label": new,
            "old_status_label": status_label(ev.payload.get("old_status")),
            "reason": body,
        }
    else:
        mentioned = candidate.type == "comment.mentioned"
        verb = "mentioned you on" if mentioned else "replied on"
        title = f"{who} {verb} {number}: {subject}"
        template = "comment_mention" if mentioned else "comment_reply"
        body = _excerpt(comment.body) if comment else ""
        context |= {
            "is_internal": bool(comment and comment.is_internal),
            # Sanitised when the comment was written (core.text.render_markdown).
            "comment_html": Markup(comment.body_html) if comment else None,  # noqa: S704
            "comment_text": comment.body.strip() if comment else None,
        }
    return Content(
        title=title,
        body=body,
        path=ticket_path(user, ticket.number),
        subject=f"[{number}] {subject}",
        template=template,
        context=context
        | {"ticket_number": number, "ticket_subject": subject, "ticket_status": ticket.status},
        ticket_id=ticket.id,
    )


def _registration_content(ev: _Event) -> Content | None:
    registrant_id = _uuid(ev.payload.get("user_id"))
    registrant = ev.users.get(registrant_id) if registrant_id else None
    if registrant is None or registrant.status != UserStatus.PENDING:
        return None  # decided already
    name = registrant.full_name
    return Content(
        title=f"{name} registered and waits for approval",
        body=registrant.email,
        path=registration_path(registrant.id),
        subject=f"Registration waiting for approval: {name}",
        template="user_registered",
        context={"registrant_name": name, "registrant_email": registrant.email},
    )


# The fan-out ---------------------------------------------------------------------------------


async def _load_event(session: AsyncSession, event: dict[str, Any]) -> _Event:
    org: Organization = await tenancy.get_organization(
        session, uuid.UUID(str(event["organization_id"]))
    )
    actor = event.get("actor") or {}
    return _Event(
        id=uuid.UUID(str(event["event_id"])),
        type=str(event["event_type"]),
        organization_id=org.id,
        actor=Actor(str(actor.get("type") or "system"), _uuid(actor.get("id"))),
        payload=dict(event.get("payload") or {}),
        tenant=Tenant.of(org),
        brand=mail.Branding.of(org.name, dict(org.settings or {})),
        users={},
    )


def _directory(session: AsyncSession) -> rules.Directory:
    async def department_workers(department_id: uuid.UUID) -> list[uuid.UUID]:
        found: list[uuid.UUID] = []
        for role in (Role.AGENT, Role.ADMIN):
            users = await accounts.list_active_users(
                session, role=role, department_id=department_id
            )
            found += [u.id for u in users]
        return found

    async def admins() -> list[uuid.UUID]:
        return [u.id for u in await accounts.list_active_users(session, role=Role.ADMIN)]

    return rules.Directory(department_workers=department_workers, admins=admins)


async def notify_for_event(
    session: AsyncSession,
    runtime: Runtime,
    event: dict[str, Any],
    *,
    now: datetime | None = None,
) -> list[Delivery]:
    """Write the notifications one event causes (in-app rows, queued emails and pushes).

    Idempotent: running it again for the same event adds nothing. `now` is injectable so
    quiet hours, de-dup windows and digests can be tested with a controlled clock.
    """
    now = now or utc_now()
    if event.get("event_type") not in rules.EVENT_TYPES:
        return []
    ev = await _load_event(session, event)
    found = await rules.candidates(event, _directory(session))
    # Nobody is told about their own action.
    found = [c for c in found if c.user_id != ev.actor.id]
    if not found:
        return []
    wanted = {c.user_id for c in found} | {_uuid(ev.payload.get("user_id"))} | {ev.actor.id}
    ids = [i for i in wanted if i is not None]
    ev.users = {u.id: u for u in await accounts.get_users(session, ids)}
    deliveries: list[Delivery] = []
    for candidate in sorted(found, key=lambda c: c.user_id):  # one lock order: no deadlocks
        user = ev.users.get(candidate.user_id)
        if user is None or not may_sign_in(user):
            continue
        if ev.type == "user.registered":
            content = _registration_content(ev)
        else:
            content = await _ticket_content(session, ev, candidate, user)
        if content is None:
            continue
        deliveries += await _deliver(session, runtime.settings, ev, candidate, user, content, now)
    return deliveries


async def _enabled(session: AsyncSession, user_id: uuid.UUID, type_: str) -> dict[str, bool]:
    rows = await PreferenceRepository(session).for_user(user_id)
    chosen = {r.channel: r.enabled for r in rows if r.event_type == type_}
    return {channel: chosen.get(channel, True) for channel in CHANNELS}


async def _deliver(
    session: AsyncSession,
    settings: Settings,
    ev: _Event,
    candidate: rules.Candidate,
    user: User,
    content: Content,
    now: datetime,
) -> list[Delivery]:
    """Every channel for one recipient, under their lock, recorded by one receipt."""
    notifications = NotificationRepository(session)
    await notifications.lock_user(user.id)
    if await notifications.receipt_exists(ev.id, user.id):
        return []
    enabled = await _enabled(session, user.id, candidate.type)
    window_start = now - timedelta(minutes=settings.notify_dedup_minutes)
    dedup = settings.notify_dedup_minutes > 0
    outcome: dict[str, str] = {}
    out: list[Delivery] = []

    def done(
        channel: str, result: str, row_id: uuid.UUID | None = None, at: datetime | None = None
    ) -> None:
        outcome[channel] = result
        if row_id is not None:
            out.append(Delivery(channel, user.id, row_id, result, at))

    # In-app: always delivered at once (quiet hours do not apply); repeats fold into one.
    if not enabled["in_app"]:
        done("in_app", "off")
    else:
        existing = (
            await notifications.recent(user.id, candidate.dedup_key, since=window_start)
            if dedup
            else None
        )
        if existing is not None:
            _fold(existing, content, ev, now)
            done("in_app", "folded", existing.id)
        else:
            new_id = await notifications.add(
                {
                    "organization_id": ev.organization_id,
                    "user_id": user.id,
                    "event_id": ev.id,
                    "event_type": candidate.type,
                    "ticket_id": content.ticket_id,
                    "actor_id": ev.actor.id if ev.actor.type == "user" else None,
                    "title": content.title[:300],
                    "body": content.body,
                    "url": content.path,
                    "dedup_key": candidate.dedup_key,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            done("in_app", "created" if new_id else "duplicate", new_id)

    quiet = await PreferenceRepository(session).settings(user.id)
    release = quiet_hours.release_time(
        now,
        start=quiet.quiet_hours_start if quiet else None,
        end=quiet.quiet_hours_end if quiet else None,
        timezone=user.timezone,
    )

    emails = EmailRepository(session)
    if not settings.smtp_url:
        done("email", "not_configured")
    elif not enabled["email"]:
        done("email", "off")
    elif dedup and await emails.recent_exists(user.id, candidate.dedup_key, since=window_start):
        done("email", "duplicate")
    else:
        window = now - timedelta(minutes=settings.notify_digest_minutes)
        batched = await emails.count_individual(user.id, since=window) >= (
            settings.notify_digest_threshold
        )
        email_id = await _queue_email(
            session, settings, ev, candidate, user, content, now=now, release=release, batch=batched
        )
        result = "batched" if batched else "held" if release else "queued"
        done("email", result if email_id else "duplicate", email_id, release or now)

    push = PushRepository(session)
    if not (settings.vapid_private_key and settings.vapid_public_key):
        done("push", "not_configured")
    elif not enabled["push"]:
        done("push", "off")
    elif not await push.has_subscription(user.id):
        done("push", "no_subscription")
    elif dedup and await push.recent_exists(user.id, candidate.dedup_key, since=window_start):
        done("push", "duplicate")
    else:
        push_id = await push.add_message(
            {
                "organization_id": ev.organization_id,
                "user_id": user.id,
                "event_id": ev.id,
                "event_type": candidate.type,
                "dedup_key": candidate.dedup_key,
                "title": content.title[:300],
                "body": content.body[:500],
                "url": link(settings, ev.tenant, content.path)[:500],
                "send_after": release or now,
                "created_at": now,
            }
        )
        result = ("held" if release else "queued") if push_id else "duplicate"
        done("push", result, push_id, release or now)

    await notifications.add_receipt(
        {
            "organization_id": ev.organization_id,
            "event_id": ev.id,
            "user_id": user.id,
            "event_type": candidate.type,
            "outcome": outcome,
            "created_at": now,
        }
    )
    return out


def _fold(existing: Notification, content: Content, ev: _Event, now: datetime) -> None:
    """The same thing again within the window: one notification, brought back to the top."""
    existing.occurrences += 1
    existing.title = content.title[:300]
    existing.body = content.body
    existing.actor_id = ev.actor.id if ev.actor.type == "user" else None
    existing.updated_at = now
    existing.read_at = None


async def _queue_email(
    session: AsyncSession,
    settings: Settings,
    ev: _Event,
    candidate: rules.Candidate,
    user: User,
    content: Content,
    *,
    now: datetime,
    release: datetime | None,
    batch: bool,
) -> uuid.UUID | None:
    domain = mail.mail_domain(settings)
    email_id = uuid.uuid4()
    url = link(settings, ev.tenant, content.path)
    ticket: dict[str, Any] | None = None
    if content.ticket_id is not None:
        ticket = {
            "number": content.context["ticket_number"],
            "subject": content.context["ticket_subject"],
            "status_label": status_label(content.context["ticket_status"]),
            "url": url,
        }
    rendered = mail.render(
        content.template,
        {
            **content.context,
            "brand": ev.brand,
            "recipient_name": user.first_name,
            "subject": content.subject,
            "ticket": ticket,
            "action_url": url,
            "preferences_url": link(settings, ev.tenant, PREFERENCES_PATH),
        },
    )
    root = mail.thread_root(content.ticket_id, domain) if content.ticket_id else None
    return await EmailRepository(session).add(
        {
            "id": email_id,
            "organization_id": ev.organization_id,
            "user_id": user.id,
            "to_address": user.email,
            "from_name": mail.header_text(ev.brand.name, 200),
            "reply_to": ev.brand.support_email,
            "subject": mail.header_text(content.subject),
            "summary": mail.header_text(content.title),
            "url": url[:700],
            "template": content.template,
            "body_text": rendered.text,
            "body_html": rendered.html,
            "status": EmailStatus.BATCHED if batch else EmailStatus.QUEUED,
            "send_after": release or now,
            "ticket_id": content.ticket_id,
            "event_id": ev.id,
            "actor_type": ev.actor.type,
            "actor_id": ev.actor.id,
            "dedup_key": candidate.dedup_key,
            "message_id": mail.message_id_for(email_id, content.ticket_id, domain),
            "in_reply_to": root,
            "references": root,
            "created_at": now,
            "updated_at": now,
        }
    )


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


def push_configured(settings: Settings) -> bool:
    return bool(settings.vapid_private_key and settings.vapid_public_key)


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
