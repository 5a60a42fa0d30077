"""Notifications: in-app items, the email log and queue, web push, preferences, quiet hours."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.core.clock import utc_now
from servicedesk.models.base import Base, IdMixin, TenantMixin


class NotificationChannel(enum.StrEnum):
    IN_APP = "in_app"
    EMAIL = "email"
    PUSH = "push"


class EmailStatus(enum.StrEnum):
    QUEUED = "queued"
    """Waiting for the send step (`send_after` may hold it, e.g. for quiet hours)."""
    SENT = "sent"
    FAILED = "failed"
    """Gave up after the configured number of attempts."""
    BATCHED = "batched"
    """Held for the recipient's next digest (they got too many emails lately)."""
    DIGESTED = "digested"
    """Delivered inside the digest email `digest_id`."""


class PushStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class Notification(IdMixin, TenantMixin, Base):
    """One in-app notification of one user; repeats within the de-dup window fold into it."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("uq_notifications_user_event", "user_id", "event_id", unique=True),
        Index("ix_notifications_user_updated", "user_id", "updated_at", "id"),
        Index("ix_notifications_user_unread", "user_id", postgresql_where=text("read_at IS NULL")),
        Index("ix_notifications_user_dedup", "user_id", "dedup_key", "updated_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID]
    """The domain event that created it (later repeats keep the first id)."""
    event_type: Mapped[str] = mapped_column(String(60))
    """The notification type (a preference key), e.g. `comment.created`, `comment.mentioned`."""
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    """Plain text; never an internal note shown to someone who may not read it."""
    url: Mapped[str] = mapped_column(String(500))
    dedup_key: Mapped[str] = mapped_column(String(200))
    """Same key for the same user within the de-dup window: one notification."""
    occurrences: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    """The last occurrence; lists sort by it."""
    read_at: Mapped[datetime | None]


class NotificationReceipt(TenantMixin, Base):
    """That an event was processed for a user, and what each channel did with it.

    Written in the same transaction as the notifications it caused, so processing an event
    again (at-least-once delivery) finds the receipt and changes nothing.
    """

    __tablename__ = "notification_receipts"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    event_type: Mapped[str] = mapped_column(String(60))
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """Per channel: `created`, `folded`, `queued`, `held`, `batched`, `duplicate`, `off`, …"""
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())


class NotificationPreference(IdMixin, TenantMixin, Base):
    """A user's choice for one notification type on one channel; no row means on."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        Index(
            "uq_notification_preferences_user_type_channel",
            "user_id",
            "event_type",
            "channel",
            unique=True,
        ),
        CheckConstraint("channel IN ('in_app', 'email', 'push')", name="channel_valid"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(60))
    channel: Mapped[str] = mapped_column(String(10))
    enabled: Mapped[bool]
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=func.now(), onupdate=utc_now
    )


class NotificationSettings(TenantMixin, Base):
    """Per-user notification options that are not per type: quiet hours."""

    __tablename__ = "notification_settings"
    __table_args__ = (
        # Both ends or neither; an empty range would be no quiet hours at all.
        CheckConstraint(
            "(quiet_hours_start IS NULL) = (quiet_hours_end IS NULL) "
            "AND (quiet_hours_start IS NULL OR quiet_hours_start <> quiet_hours_end)",
            name="quiet_hours_range",
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    quiet_hours_start: Mapped[time | None]
    """Local time (in `users.timezone`) from which email and push are held."""
    quiet_hours_end: Mapped[time | None]
    """Local time at which held email and push go out; before the start means overnight."""
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=func.now(), onupdate=utc_now
    )


class Email(IdMixin, TenantMixin, Base):
    """One outgoing email: the log admins read, and the queue the send step claims from."""

    __tablename__ = "emails"
    __table_args__ = (
        Index("uq_emails_event_user_template", "event_id", "user_id", "template", unique=True),
        Index("ix_emails_due", "send_after", postgresql_where=text("status = 'queued'")),
        Index("ix_emails_org_created", "organization_id", "created_at", "id"),
        Index("ix_emails_org_ticket", "organization_id", "ticket_id"),
        Index("ix_emails_user_created", "user_id", "created_at"),
        Index(
            "ix_emails_batched",
            "user_id",
            "created_at",
            postgresql_where=text("status = 'batched'"),
        ),
        CheckConstraint(
            "status IN ('queued', 'sent', 'failed', 'batched', 'digested')", name="status_valid"
        ),
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_address: Mapped[str] = mapped_column(String(254))
    """The recipient's address when the email was made."""
    from_name: Mapped[str] = mapped_column(String(200))
    """Display name of the sender: the organization's name (branding)."""
    reply_to: Mapped[str | None] = mapped_column(String(254))
    """The organization's support address, when it has one."""
    subject: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(String(300))
    """One line saying what happened, for digests and the log."""
    url: Mapped[str] = mapped_column(String(700))
    """The link the email is about (the ticket), absolute."""
    template: Mapped[str] = mapped_column(String(60))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default=EmailStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    """Failed SMTP attempts so far."""
    last_error: Mapped[str | None] = mapped_column(Text)
    send_after: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    """Not sent before this time (quiet hours, retry back-off)."""
    sent_at: Mapped[datetime | None]
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL")
    )
    event_id: Mapped[uuid.UUID | None]
    """The domain event that triggered it; null for digests."""
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None]
    """Who caused it (the event's actor)."""
    dedup_key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    """`<ticket-{ticket_id}-{email_id}@{domain}>`: derived from the row, the same on a resend."""
    in_reply_to: Mapped[str | None] = mapped_column(String(255))
    references: Mapped[str | None] = mapped_column(Text)
    digest_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("emails.id", ondelete="SET NULL"), index=True
    )
    """The digest email that carried this one (status `digested`)."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())


class PushSubscription(IdMixin, TenantMixin, Base):
    """A browser's web push subscription (the PushSubscription JSON of the Push API)."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (
        Index("uq_push_subscriptions_user_endpoint", "user_id", "endpoint", unique=True),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(2048))
    p256dh: Mapped[str] = mapped_column(String(200))
    """The browser's P-256 public key (base64url), for payload encryption."""
    auth: Mapped[str] = mapped_column(String(100))
    """The browser's authentication secret (base64url)."""
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    last_success_at: Mapped[datetime | None]


class PushMessage(IdMixin, TenantMixin, Base):
    """One web push notification for a user, sent to each of their subscriptions."""

    __tablename__ = "push_messages"
    __table_args__ = (
        Index("uq_push_messages_event_user", "event_id", "user_id", unique=True),
        Index("ix_push_messages_due", "send_after", postgresql_where=text("status = 'queued'")),
        Index("ix_push_messages_user_dedup", "user_id", "dedup_key", "created_at"),
        CheckConstraint("status IN ('queued', 'sent', 'failed')", name="status_valid"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(60))
    dedup_key: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(String(500))
    url: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12), default=PushStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    send_after: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
