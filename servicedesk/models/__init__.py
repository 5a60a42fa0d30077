"""All ORM models, one module per aggregate, importable from one root (Alembic looks here)."""

from servicedesk.models.audit import AuditLog
from servicedesk.models.auth import LoginAttempt, PasswordResetToken, RecoveryCode, RefreshToken
from servicedesk.models.base import Base
from servicedesk.models.idempotency import IdempotencyRecord
from servicedesk.models.jobs import HandledEvent
from servicedesk.models.notification import (
    Email,
    EmailStatus,
    Notification,
    NotificationChannel,
    NotificationPreference,
    NotificationReceipt,
    NotificationSettings,
    PushMessage,
    PushStatus,
    PushSubscription,
)
from servicedesk.models.organization import Organization
from servicedesk.models.outbox import OutboxEvent
from servicedesk.models.ticket import (
    PRIORITY_RANK,
    Attachment,
    Category,
    Channel,
    Comment,
    CommentRevision,
    Priority,
    SavedView,
    Ticket,
    TicketCounter,
    TicketStatus,
)
from servicedesk.models.user import Department, Role, User, UserStatus

__all__ = [
    "PRIORITY_RANK",
    "Attachment",
    "AuditLog",
    "Base",
    "Category",
    "Channel",
    "Comment",
    "CommentRevision",
    "Department",
    "Email",
    "EmailStatus",
    "HandledEvent",
    "IdempotencyRecord",
    "LoginAttempt",
    "Notification",
    "NotificationChannel",
    "NotificationPreference",
    "NotificationReceipt",
    "NotificationSettings",
    "Organization",
    "OutboxEvent",
    "PasswordResetToken",
    "Priority",
    "PushMessage",
    "PushStatus",
    "PushSubscription",
    "RecoveryCode",
    "RefreshToken",
    "Role",
    "SavedView",
    "Ticket",
    "TicketCounter",
    "TicketStatus",
    "User",
    "UserStatus",
]
