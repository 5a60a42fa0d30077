"""The fan-out: who is told what about one event, on which channel, and when.

`notify_for_event` is the core of the job handler `notifications.fan_out`. It runs in the
handler's tenant-bound transaction and is idempotent by itself: a receipt per (event, user) is
written with the rows it causes, and every row has a unique key per event, so a second run
changes nothing. Sending happens later, from the committed rows (notifications.delivery).

It is set-based, so one event for 10,000 people costs a few dozen statements, not a dozen per
person (benchmarks/bench_fanout.py): recipients come as ids, the ticket and comment are read
once and each recipient is checked with their own `Viewer`; preferences, quiet hours, receipts
and de-dup windows are read for everyone in one query each; rows go in as multi-row inserts;
the send jobs are deferred in one statement (handlers.schedule_sends).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.config import Settings
from servicedesk.core.actor import Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.runtime import Runtime
from servicedesk.core.text import plain
from servicedesk.models import (
    Comment,
    EmailStatus,
    Notification,
    NotificationChannel,
    Organization,
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


async def _ticket_contents(
    session: AsyncSession, ev: _Event, recipients: list[tuple[rules.Candidate, User]]
) -> list[tuple[rules.Candidate, User, Content]]:
    """What each recipient is told about the ticket, for those who may see it.

    The ticket (and comment) is read once; each recipient is checked with their own
    `Viewer` (`can_see`, the Python side of the visibility rule), and internal notes are
    dropped for everyone who is not staff — the same rules as `access_ticket` and
    `get_comment`, without a query per person.
    """
    ticket_id = _uuid(ev.payload.get("ticket_id"))
    if ticket_id is None:
        return []
    ticket = await tickets.get_ticket_unchecked(session, ticket_id)
    if ticket is None:
        return []
    comment: Comment | None = None
    if ev.type == "comment.created":
        comment_id = _uuid(ev.payload.get("comment_id"))
        if comment_id is None:
            return []
        comment = await ticket_comments.get_live_comment(session, ticket.id, comment_id)
        if comment is None:
            return []  # deleted since
    internal = bool(ev.payload.get("is_internal")) or bool(comment and comment.is_internal)
    described: dict[tuple[str, str], Content] = {}
    out: list[tuple[rules.Candidate, User, Content]] = []
    for candidate, user in recipients:
        viewer = Viewer.of(user, ev.tenant)
        if not viewer.can_see(ticket):
            continue
        if ev.type == "comment.created" and internal and not viewer.sees_internal:
            continue  # requesters never hear of internal notes
        path = ticket_path(user, ticket.number)
        content = described.get((candidate.type, path))
        if content is None:
            content = _describe_ticket(ev, candidate, path, ticket, comment)
            described[(candidate.type, path)] = content
        out.append((candidate, user, content))
    return out


def _describe_ticket(
    ev: _Event, candidate: rules.Candidate, path: str, ticket: Ticket, comment: Comment | None
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
        path=path,
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
        return await accounts.active_user_ids(
            session, roles=[Role.AGENT, Role.ADMIN], department_id=department_id
        )

    async def admins() -> list[uuid.UUID]:
        return await accounts.active_user_ids(session, roles=[Role.ADMIN])

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
    quiet hours, de-dup windows and digests can be tested with a controlled clock. Set-based:
    a fan-out to 10,000 people is a handful of queries and multi-row inserts, not a few per
    person (benchmarks/bench_fanout.py).
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
    recipients = [
        (c, user)
        for c in sorted(found, key=lambda c: c.user_id)
        if (user := ev.users.get(c.user_id)) is not None and may_sign_in(user)
    ]
    items: list[tuple[rules.Candidate, User, Content]] = []
    if ev.type == "user.registered":
        content = _registration_content(ev)
        items = [(c, u, content) for c, u in recipients] if content else []
    else:
        items = await _ticket_contents(session, ev, recipients)
    return await _deliver(session, runtime.settings, ev, items, now)


@dataclass
class _Outcome:
    """One recipient's result per channel, and the rows written (for the send jobs)."""

    outcome: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)


async def _deliver(
    session: AsyncSession,
    settings: Settings,
    ev: _Event,
    items: list[tuple[rules.Candidate, User, Content]],
    now: datetime,
) -> list[Delivery]:
    """Every channel for every recipient, under their locks, each recorded by one receipt."""
    if not items:
        return []
    notifications = NotificationRepository(session)
    await notifications.lock_users([u.id for _, u, _ in items])
    handled = await notifications.receipts_of(ev.id, [u.id for _, u, _ in items])
    items = [i for i in items if i[1].id not in handled]
    if not items:
        return []
    user_ids = [u.id for _, u, _ in items]
    prefs = PreferenceRepository(session)
    chosen = {
        (r.user_id, r.event_type, r.channel): r.enabled for r in await prefs.for_users(user_ids)
    }
    quiet = await prefs.settings_of(user_ids)
    window_start = now - timedelta(minutes=settings.notify_dedup_minutes)
    dedup = settings.notify_dedup_minutes > 0
    results = {u.id: _Outcome() for _, u, _ in items}

    def enabled(candidate: rules.Candidate, channel: str) -> bool:
        return chosen.get((candidate.user_id, candidate.type, channel), True)

    def done(
        user: User,
        channel: str,
        result: str,
        row_id: uuid.UUID | None = None,
        at: datetime | None = None,
    ) -> None:
        results[user.id].outcome[channel] = result
        if row_id is not None:
            results[user.id].deliveries.append(Delivery(channel, user.id, row_id, result, at))

    # In-app: always delivered at once (quiet hours do not apply); repeats fold into one.
    in_app = [i for i in items if enabled(i[0], "in_app")]
    existing = (
        await notifications.recent_many(
            [(c.user_id, c.dedup_key) for c, _, _ in in_app], since=window_start
        )
        if dedup
        else {}
    )
    new_rows: list[dict[str, Any]] = []
    for candidate, user, content in items:
        if not enabled(candidate, "in_app"):
            done(user, "in_app", "off")
        elif (folded := existing.get((user.id, candidate.dedup_key))) is not None:
            _fold(folded, content, ev, now)
            done(user, "in_app", "folded", folded.id)
        else:
            new_rows.append(
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
    if existing:
        await session.flush()  # the folds, before the inserts
    added = await notifications.add_many(new_rows)
    for row in new_rows:
        user = ev.users[row["user_id"]]
        new_id = added.get(user.id)
        done(user, "in_app", "created" if new_id else "duplicate", new_id)

    release = {
        u.id: quiet_hours.release_time(
            now,
            start=q.quiet_hours_start if (q := quiet.get(u.id)) else None,
            end=q.quiet_hours_end if q else None,
            timezone=u.timezone,
        )
        for _, u, _ in items
    }

    # Email: rendered for each recipient, inserted together.
    emails = EmailRepository(session)
    if not settings.smtp_url:
        for _, user, _ in items:
            done(user, "email", "not_configured")
    else:
        wanted = [i for i in items if enabled(i[0], "email")]
        recent = (
            await emails.recent_pairs(
                [(c.user_id, c.dedup_key) for c, _, _ in wanted], since=window_start
            )
            if dedup
            else set()
        )
        sent = await emails.count_individual_many(
            [u.id for _, u, _ in wanted],
            since=now - timedelta(minutes=settings.notify_digest_minutes),
        )
        rows: list[dict[str, Any]] = []
        planned: list[tuple[User, uuid.UUID, str]] = []
        for candidate, user, content in items:
            if not enabled(candidate, "email"):
                done(user, "email", "off")
            elif (user.id, candidate.dedup_key) in recent:
                done(user, "email", "duplicate")
            else:
                batched = sent.get(user.id, 0) >= settings.notify_digest_threshold
                at = release[user.id]
                row = _email_row(
                    settings, ev, candidate, user, content, now=now, release=at, batch=batched
                )
                rows.append(row)
                planned.append(
                    (user, row["id"], "batched" if batched else "held" if at else "queued")
                )
        inserted = await emails.add_many(rows)
        for user, email_id, result in planned:
            if email_id in inserted:
                done(user, "email", result, email_id, release[user.id] or now)
            else:
                done(user, "email", "duplicate")

    # Web push: to users with a subscription.
    push = PushRepository(session)
    if not push_configured(settings):
        for _, user, _ in items:
            done(user, "push", "not_configured")
    else:
        wanted = [i for i in items if enabled(i[0], "push")]
        subscribed = await push.with_subscription([u.id for _, u, _ in wanted])
        recent = (
            await push.recent_pairs(
                [(c.user_id, c.dedup_key) for c, u, _ in wanted if u.id in subscribed],
                since=window_start,
            )
            if dedup
            else set()
        )
        messages: list[dict[str, Any]] = []
        for candidate, user, content in items:
            if not enabled(candidate, "push"):
                done(user, "push", "off")
            elif user.id not in subscribed:
                done(user, "push", "no_subscription")
            elif (user.id, candidate.dedup_key) in recent:
                done(user, "push", "duplicate")
            else:
                messages.append(
                    {
                        "organization_id": ev.organization_id,
                        "user_id": user.id,
                        "event_id": ev.id,
                        "event_type": candidate.type,
                        "dedup_key": candidate.dedup_key,
                        "title": content.title[:300],
                        "body": content.body[:500],
                        "url": link(settings, ev.tenant, content.path)[:500],
                        "send_after": release[user.id] or now,
                        "created_at": now,
                    }
                )
        pushed = await push.add_messages(messages)
        for message in messages:
            user = ev.users[message["user_id"]]
            push_id = pushed.get(user.id)
            at = release[user.id]
            result = ("held" if at else "queued") if push_id else "duplicate"
            done(user, "push", result, push_id, at or now)

    await notifications.add_receipts(
        [
            {
                "organization_id": ev.organization_id,
                "event_id": ev.id,
                "user_id": user.id,
                "event_type": candidate.type,
                "outcome": results[user.id].outcome,
                "created_at": now,
            }
            for candidate, user, _ in items
        ]
    )
    return [d for _, user, _ in items for d in results[user.id].deliveries]


def _fold(existing: Notification, content: Content, ev: _Event, now: datetime) -> None:
    """The same thing again within the window: one notification, brought back to the top."""
    existing.occurrences += 1
    existing.title = content.title[:300]
    existing.body = content.body
    existing.actor_id = ev.actor.id if ev.actor.type == "user" else None
    existing.updated_at = now
    existing.read_at = None


def _email_row(
    settings: Settings,
    ev: _Event,
    candidate: rules.Candidate,
    user: User,
    content: Content,
    *,
    now: datetime,
    release: datetime | None,
    batch: bool,
) -> dict[str, Any]:
    """The `emails` row for one recipient, its bodies rendered."""
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
    return {
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


def push_configured(settings: Settings) -> bool:
    return bool(settings.vapid_private_key and settings.vapid_public_key)
