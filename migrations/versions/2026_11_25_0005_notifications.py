"""Notifications: in-app items, receipts, preferences, quiet hours, the email log and queue,
web push subscriptions and messages. Every table is tenant-owned and under row-level security.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from servicedesk.core import rls

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "notifications",
    "notification_receipts",
    "notification_preferences",
    "notification_settings",
    "emails",
    "push_subscriptions",
    "push_messages",
)


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('in_app', 'email', 'push')",
            name=op.f("ck_notification_preferences_channel_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notification_preferences_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
    )
    op.create_index(
        op.f("ix_notification_preferences_organization_id"),
        "notification_preferences",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        "uq_notification_preferences_user_type_channel",
        "notification_preferences",
        ["user_id", "event_type", "channel"],
        unique=True,
    )
    op.create_table(
        "notification_receipts",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("outcome", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notification_receipts_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_receipts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "user_id", name=op.f("pk_notification_receipts")),
    )
    op.create_index(
        op.f("ix_notification_receipts_organization_id"),
        "notification_receipts",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notification_receipts_user_id"), "notification_receipts", ["user_id"], unique=False
    )
    op.create_table(
        "notification_settings",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("quiet_hours_start", sa.Time(), nullable=True),
        sa.Column("quiet_hours_end", sa.Time(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(quiet_hours_start IS NULL) = (quiet_hours_end IS NULL) AND (quiet_hours_start IS NULL OR quiet_hours_start <> quiet_hours_end)",
            name=op.f("ck_notification_settings_quiet_hours_range"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notification_settings_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_settings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notification_settings")),
    )
    op.create_index(
        op.f("ix_notification_settings_organization_id"),
        "notification_settings",
        ["organization_id"],
        unique=False,
    )
    op.create_table(
        "push_messages",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.String(length=500), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "send_after",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'failed')", name=op.f("ck_push_messages_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_push_messages_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_push_messages_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_messages")),
    )
    op.create_index(
        "ix_push_messages_due",
        "push_messages",
        ["send_after"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        op.f("ix_push_messages_organization_id"), "push_messages", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_push_messages_user_dedup",
        "push_messages",
        ["user_id", "dedup_key", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_push_messages_event_user", "push_messages", ["event_id", "user_id"], unique=True
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=False),
        sa.Column("p256dh", sa.String(length=200), nullable=False),
        sa.Column("auth", sa.String(length=100), nullable=False),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_push_subscriptions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_push_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
    )
    op.create_index(
        op.f("ix_push_subscriptions_organization_id"),
        "push_subscriptions",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        "uq_push_subscriptions_user_endpoint",
        "push_subscriptions",
        ["user_id", "endpoint"],
        unique=True,
    )
    op.create_table(
        "emails",
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("from_name", sa.String(length=200), nullable=False),
        sa.Column("reply_to", sa.String(length=254), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=700), nullable=False),
        sa.Column("template", sa.String(length=60), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "send_after",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ticket_id", sa.Uuid(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("actor_type", sa.String(length=20), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("in_reply_to", sa.String(length=255), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("digest_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'failed', 'batched', 'digested')",
            name=op.f("ck_emails_status_valid"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_emails_attempts_nonneg")),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["emails.id"],
            name=op.f("fk_emails_digest_id_emails"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_emails_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_emails_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_emails_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emails")),
        sa.UniqueConstraint("message_id", name=op.f("uq_emails_message_id")),
    )
    op.create_index(
        "ix_emails_batched",
        "emails",
        ["user_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'batched'"),
    )
    op.create_index(op.f("ix_emails_digest_id"), "emails", ["digest_id"], unique=False)
    op.create_index(
        "ix_emails_due",
        "emails",
        ["send_after"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_emails_org_created", "emails", ["organization_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_emails_org_ticket", "emails", ["organization_id", "ticket_id"], unique=False
    )
    op.create_index(op.f("ix_emails_organization_id"), "emails", ["organization_id"], unique=False)
    op.create_index("ix_emails_user_created", "emails", ["user_id", "created_at"], unique=False)
    op.create_index(
        "uq_emails_event_user_template", "emails", ["event_id", "user_id", "template"], unique=True
    )
    op.create_table(
        "notifications",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_notifications_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notifications_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_notifications_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        op.f("ix_notifications_organization_id"), "notifications", ["organization_id"], unique=False
    )
    op.create_index(
        op.f("ix_notifications_ticket_id"), "notifications", ["ticket_id"], unique=False
    )
    op.create_index(
        "ix_notifications_user_dedup",
        "notifications",
        ["user_id", "dedup_key", "updated_at"],
        unique=False,
    )
    op.create_index(
        "ix_notifications_user_unread",
        "notifications",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_index(
        "ix_notifications_user_updated",
        "notifications",
        ["user_id", "updated_at", "id"],
        unique=False,
    )
    op.create_index(
        "uq_notifications_user_event", "notifications", ["user_id", "event_id"], unique=True
    )

    for table in TABLES:
        # Each table by name: `grant_all_sql()` would undo the append-only revokes of 0002.
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {rls.app_role()}")
        for statement in rls.enable_tenant_rls(table):
            op.execute(statement)


def downgrade() -> None:
    for table in TABLES:
        for statement in rls.disable_tenant_rls(table):
            op.execute(statement)
    op.drop_index("uq_notifications_user_event", table_name="notifications")
    op.drop_index("ix_notifications_user_updated", table_name="notifications")
    op.drop_index(
        "ix_notifications_user_unread",
        table_name="notifications",
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.drop_index("ix_notifications_user_dedup", table_name="notifications")
    op.drop_index(op.f("ix_notifications_ticket_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_organization_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("uq_emails_event_user_template", table_name="emails")
    op.drop_index("ix_emails_user_created", table_name="emails")
    op.drop_index(op.f("ix_emails_organization_id"), table_name="emails")
    op.drop_index("ix_emails_org_ticket", table_name="emails")
    op.drop_index("ix_emails_org_created", table_name="emails")
    op.drop_index(
        "ix_emails_due", table_name="emails", postgresql_where=sa.text("status = 'queued'")
    )
    op.drop_index(op.f("ix_emails_digest_id"), table_name="emails")
    op.drop_index(
        "ix_emails_batched", table_name="emails", postgresql_where=sa.text("status = 'batched'")
    )
    op.drop_table("emails")
    op.drop_index("uq_push_subscriptions_user_endpoint", table_name="push_subscriptions")
    op.drop_index(op.f("ix_push_subscriptions_organization_id"), table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
    op.drop_index("uq_push_messages_event_user", table_name="push_messages")
    op.drop_index("ix_push_messages_user_dedup", table_name="push_messages")
    op.drop_index(op.f("ix_push_messages_organization_id"), table_name="push_messages")
    op.drop_index(
        "ix_push_messages_due",
        table_name="push_messages",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_table("push_messages")
    op.drop_index(
        op.f("ix_notification_settings_organization_id"), table_name="notification_settings"
    )
    op.drop_table("notification_settings")
    op.drop_index(op.f("ix_notification_receipts_user_id"), table_name="notification_receipts")
    op.drop_index(
        op.f("ix_notification_receipts_organization_id"), table_name="notification_receipts"
    )
    op.drop_table("notification_receipts")
    op.drop_index(
        "uq_notification_preferences_user_type_channel", table_name="notification_preferences"
    )
    op.drop_index(
        op.f("ix_notification_preferences_organization_id"), table_name="notification_preferences"
    )
    op.drop_table("notification_preferences")
