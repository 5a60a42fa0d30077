"""Tickets, their categories, comments, attachments, numbering and saved views."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.core.clock import utc_now
from servicedesk.models.base import Base, IdMixin, TenantMixin, TimestampMixin


class Priority(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


PRIORITY_RANK = {Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3, Priority.CRITICAL: 4}


class TicketStatus(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REJECTED = "rejected"


class Channel(enum.StrEnum):
    WEB = "web"
    EMAIL = "email"
    API = "api"
    CHAT = "chat"


class Category(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "categories"
    __table_args__ = (
        Index("uq_categories_org_name", "organization_id", func.lower(text("name")), unique=True),
        CheckConstraint(
            "default_priority IN ('low', 'medium', 'high', 'critical')", name="priority_valid"
        ),
    )

    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True
    )
    """Set on a sub-category; sub-categories are one level deep."""
    default_priority: Mapped[str] = mapped_column(String(10), default=Priority.MEDIUM)
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL")
    )
    """The department that handles tickets of this category by default."""
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    fields: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    """Definitions of the category's own fields (see tickets.fields.FieldDefinition)."""
    sort_order: Mapped[int] = mapped_column(default=0, server_default="0")


class TicketCounter(TenantMixin, Base):
    """The last ticket number used per organization and year (gap-free numbering)."""

    __tablename__ = "ticket_counters"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Ticket(IdMixin, TenantMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("uq_tickets_org_number", "organization_id", "number", unique=True),
        # The agent queue: newest activity first within an organization and status.
        Index("ix_tickets_org_status_updated", "organization_id", "status", "updated_at", "id"),
        Index("ix_tickets_org_updated", "organization_id", "updated_at", "id"),
        Index("ix_tickets_org_submitted", "organization_id", "submitted_at", "id"),
        Index(
            "ix_tickets_org_priority_updated",
            "organization_id",
            "priority_rank",
            "updated_at",
            "id",
        ),
        Index(
            "ix_tickets_org_assignee_status",
            "organization_id",
            "assignee_id",
            "status",
            "updated_at",
        ),
        Index("ix_tickets_org_requester", "organization_id", "requester_id", "updated_at"),
        # Search indexes lead with the organization (btree_gin) and are used through the
        # `ticket_search_scope` view: under RLS, PostgreSQL will not use non-leakproof
        # operators (@@, %>, LIKE) as index conditions (see migration 0007).
        Index(
            "ix_tickets_org_search",
            "organization_id",
            "search_vector",
            postgresql_using="gin",
        ),
        Index("ix_tickets_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_tickets_org_subject_trgm",
            "organization_id",
            "subject",
            postgresql_using="gin",
            postgresql_ops={"subject": "gin_trgm_ops"},
        ),
        Index(
            "ix_tickets_org_number_pattern",
            "organization_id",
            "number",
            postgresql_ops={"number": "varchar_pattern_ops"},
        ),
        # The unassigned queue: `assignee_id IS NULL` is no equality the ordering can use.
        Index(
            "ix_tickets_org_unassigned",
            "organization_id",
            "status",
            "updated_at",
            "id",
            postgresql_where=text("assignee_id IS NULL"),
        ),
        CheckConstraint(
            "status IN ('new', 'open', 'in_progress', 'on_hold', 'resolved', 'closed', 'rejected')",
            name="status_valid",
        ),
        CheckConstraint("priority IN ('low', 'medium', 'high', 'critical')", name="priority_valid"),
        CheckConstraint("channel IN ('web', 'email', 'api', 'chat')", name="channel_valid"),
        CheckConstraint("char_length(subject) BETWEEN 5 AND 200", name="subject_length"),
        CheckConstraint("number ~ '^TKT[0-9]{4}[0-9]{6,}$'", name="number_format"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    number: Mapped[str] = mapped_column(String(20))
    """`TKT{YEAR}{######}`, unique and gap-free per organization and year."""
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    """Markdown source as the requester wrote it (control characters removed)."""
    description_html: Mapped[str] = mapped_column(Text)
    """The Markdown rendered and sanitised at write time; safe to embed in a page."""
    category_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("categories.id"), index=True)
    subcategory_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))
    priority: Mapped[str] = mapped_column(String(10))
    priority_rank: Mapped[int] = mapped_column(
        SmallInteger,
        Computed(
            "CASE priority WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 "
            "ELSE 1 END",
            persisted=True,
        ),
    )
    """Sortable form of `priority` (critical 4 … low 1), kept by PostgreSQL."""
    status: Mapped[str] = mapped_column(String(12), default=TicketStatus.NEW)
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), index=True
    )
    requester_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(10), default=Channel.WEB)
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(String(50)), default=list, server_default=text("'{}'::varchar[]")
    )
    custom_fields: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    """Values of the category's own fields, validated against its definition when written."""
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    reopened_count: Mapped[int] = mapped_column(default=0, server_default="0")
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    """Optimistic concurrency: every change increments it; writers send the one they read."""
    submitted_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=True, deferred=True)
    """Weighted full-text document: subject (A), description (B), public comments (C)."""


class Comment(IdMixin, TenantMixin, Base):
    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_ticket_created", "ticket_id", "created_at"),)

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    is_internal: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Internal notes are for agents only: never shown to requesters anywhere."""
    mentions: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid()),
        default=list,
        server_default=text("'{}'::uuid[]"),
    )
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    edited_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    deleted_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))


class CommentRevision(IdMixin, TenantMixin, Base):
    """The previous body of a comment, kept on every edit."""

    __tablename__ = "comment_revisions"

    comment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
    edited_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())


class Attachment(IdMixin, TenantMixin, Base):
    __tablename__ = "attachments"

    ticket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    comment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    uploader_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    filename: Mapped[str] = mapped_column(String(255))
    """The original name, sanitised (no paths, control characters or NUL)."""
    content_type: Mapped[str] = mapped_column(String(120))
    """Decided by sniffing the content, never taken from the client."""
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
    is_internal: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Attached to an internal note: hidden from requesters like the note."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    deleted_at: Mapped[datetime | None]


class SavedView(IdMixin, TenantMixin, TimestampMixin, Base):
    """A user's named queue filter."""

    __tablename__ = "saved_views"
    __table_args__ = (
        Index("uq_saved_views_user_name", "user_id", func.lower(text("name")), unique=True),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
