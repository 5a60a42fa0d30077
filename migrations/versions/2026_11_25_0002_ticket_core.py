"""Ticket core: categories, tickets, numbering, comments, attachments, views, idempotency.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:19:33.168690+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from servicedesk.core import rls

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("audit_log", "login_attempts")
TENANT_TABLES = (
    "ticket_counters",
    "categories",
    "idempotency_keys",
    "saved_views",
    "tickets",
    "comments",
    "attachments",
    "comment_revisions",
)

# The full-text document of a ticket: subject (A), description (B), public comments (C).
# Kept by triggers so that no write path can forget it; a comment change re-touches its ticket.
SEARCH_FUNCTIONS = """
CREATE FUNCTION tickets_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.subject, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(NEW.description, '')), 'B') ||
        setweight(to_tsvector('english', coalesce((
            SELECT string_agg(c.body, ' ' ORDER BY c.created_at)
            FROM comments c
            WHERE c.ticket_id = NEW.id AND NOT c.is_internal AND c.deleted_at IS NULL
        ), '')), 'C');
    RETURN NEW;
END
$$;

CREATE TRIGGER tickets_search_vector
    BEFORE INSERT OR UPDATE OF subject, description ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_search_vector();

CREATE FUNCTION comments_touch_ticket_search() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target uuid;
BEGIN
    target := CASE WHEN TG_OP = 'DELETE' THEN OLD.ticket_id ELSE NEW.ticket_id END;
    IF TG_OP = 'INSERT' AND NEW.is_internal THEN
        RETURN NULL;
    END IF;
    UPDATE tickets SET subject = subject WHERE id = target;
    RETURN NULL;
END
$$;

CREATE TRIGGER comments_touch_ticket_search
    AFTER INSERT OR DELETE OR UPDATE OF body, is_internal, deleted_at ON comments
    FOR EACH ROW EXECUTE FUNCTION comments_touch_ticket_search();
"""


def upgrade() -> None:
    op.create_table(
        "ticket_counters",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_ticket_counters_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "year", name=op.f("pk_ticket_counters")),
    )
    op.create_table(
        "categories",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("default_priority", sa.String(length=10), nullable=False),
        sa.Column("department_id", sa.Uuid(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("sort_order", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
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
        sa.CheckConstraint(
            "default_priority IN ('low', 'medium', 'high', 'critical')",
            name=op.f("ck_categories_priority_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_categories_department_id_departments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_categories_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["categories.id"],
            name=op.f("fk_categories_parent_id_categories"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_categories")),
    )
    op.create_index(
        op.f("ix_categories_organization_id"), "categories", ["organization_id"], unique=False
    )
    op.create_index(op.f("ix_categories_parent_id"), "categories", ["parent_id"], unique=False)
    op.create_index(
        "uq_categories_org_name",
        "categories",
        ["organization_id", sa.literal_column("lower(name)")],
        unique=True,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_idempotency_keys_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_idempotency_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_idempotency_keys_organization_id"),
        "idempotency_keys",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        "uq_idempotency_keys_user_key",
        "idempotency_keys",
        ["organization_id", "user_id", "key"],
        unique=True,
    )
    op.create_table(
        "saved_views",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_saved_views_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_saved_views_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_views")),
    )
    op.create_index(
        op.f("ix_saved_views_organization_id"), "saved_views", ["organization_id"], unique=False
    )
    op.create_index(
        "uq_saved_views_user_name",
        "saved_views",
        ["user_id", sa.literal_column("lower(name)")],
        unique=True,
    )
    op.create_table(
        "tickets",
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("description_html", sa.Text(), nullable=False),
        sa.Column("category_id", sa.Uuid(), nullable=False),
        sa.Column("subcategory_id", sa.Uuid(), nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column(
            "priority_rank",
            sa.SmallInteger(),
            sa.Computed(
                "CASE priority WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("department_id", sa.Uuid(), nullable=True),
        sa.Column("requester_id", sa.Uuid(), nullable=False),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(length=50)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("reopened_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "submitted_at",
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
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("search_vector", postgresql.TSVECTOR(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('web', 'email', 'api', 'chat')", name=op.f("ck_tickets_channel_valid")
        ),
        sa.CheckConstraint(
            "number ~ '^TKT[0-9]{4}[0-9]{6,}$'", name=op.f("ck_tickets_number_format")
        ),
        sa.CheckConstraint(
            "priority IN ('low', 'medium', 'high', 'critical')",
            name=op.f("ck_tickets_priority_valid"),
        ),
        sa.CheckConstraint(
            "status IN ('new', 'open', 'in_progress', 'on_hold', 'resolved', 'closed', 'rejected')",
            name=op.f("ck_tickets_status_valid"),
        ),
        sa.CheckConstraint(
            "char_length(subject) BETWEEN 5 AND 200", name=op.f("ck_tickets_subject_length")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_tickets_version_positive")),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["users.id"], name=op.f("fk_tickets_assignee_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["category_id"], ["categories.id"], name=op.f("fk_tickets_category_id_categories")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_tickets_department_id_departments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_tickets_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["users.id"], name=op.f("fk_tickets_requester_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["subcategory_id"], ["categories.id"], name=op.f("fk_tickets_subcategory_id_categories")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
    )
    op.create_index(op.f("ix_tickets_category_id"), "tickets", ["category_id"], unique=False)
    op.create_index(op.f("ix_tickets_department_id"), "tickets", ["department_id"], unique=False)
    op.create_index(
        "ix_tickets_number_trgm",
        "tickets",
        ["number"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"number": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_tickets_org_assignee_status",
        "tickets",
        ["organization_id", "assignee_id", "status", "updated_at"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_org_priority_updated",
        "tickets",
        ["organization_id", "priority_rank", "updated_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_org_requester",
        "tickets",
        ["organization_id", "requester_id", "updated_at"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_org_status_updated",
        "tickets",
        ["organization_id", "status", "updated_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_org_submitted",
        "tickets",
        ["organization_id", "submitted_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_org_updated", "tickets", ["organization_id", "updated_at", "id"], unique=False
    )
    op.create_index(
        op.f("ix_tickets_organization_id"), "tickets", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_tickets_search", "tickets", ["search_vector"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_tickets_subject_trgm",
        "tickets",
        ["subject"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"subject": "gin_trgm_ops"},
    )
    op.create_index("ix_tickets_tags", "tickets", ["tags"], unique=False, postgresql_using="gin")
    op.create_index("uq_tickets_org_number", "tickets", ["organization_id", "number"], unique=True)
    op.create_table(
        "comments",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("is_internal", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "mentions",
            postgresql.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_comments_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by_id"], ["users.id"], name=op.f("fk_comments_deleted_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_comments_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_comments_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    op.create_index(
        op.f("ix_comments_organization_id"), "comments", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_comments_ticket_created", "comments", ["ticket_id", "created_at"], unique=False
    )
    op.create_table(
        "attachments",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("comment_id", sa.Uuid(), nullable=True),
        sa.Column("uploader_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=120), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("is_internal", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["comments.id"],
            name=op.f("fk_attachments_comment_id_comments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_attachments_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_attachments_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uploader_id"], ["users.id"], name=op.f("fk_attachments_uploader_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_attachments_storage_key")),
    )
    op.create_index(op.f("ix_attachments_comment_id"), "attachments", ["comment_id"], unique=False)
    op.create_index(
        op.f("ix_attachments_organization_id"), "attachments", ["organization_id"], unique=False
    )
    op.create_index(op.f("ix_attachments_ticket_id"), "attachments", ["ticket_id"], unique=False)
    op.create_table(
        "comment_revisions",
        sa.Column("comment_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("edited_by_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["comments.id"],
            name=op.f("fk_comment_revisions_comment_id_comments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["edited_by_id"], ["users.id"], name=op.f("fk_comment_revisions_edited_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_comment_revisions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comment_revisions")),
    )
    op.create_index(
        op.f("ix_comment_revisions_comment_id"), "comment_revisions", ["comment_id"], unique=False
    )
    op.create_index(
        op.f("ix_comment_revisions_organization_id"),
        "comment_revisions",
        ["organization_id"],
        unique=False,
    )

    op.execute(SEARCH_FUNCTIONS)
    op.execute(rls.grant_all_sql())
    # The audit trail and the sign-in log are append-only for the application.
    for table in APPEND_ONLY:
        op.execute(f"REVOKE UPDATE, DELETE ON {table} FROM {rls.app_role()}")
    for table in TENANT_TABLES:
        for statement in rls.enable_tenant_rls(table):
            op.execute(statement)


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"GRANT UPDATE, DELETE ON {table} TO {rls.app_role()}")
    op.execute("DROP TRIGGER IF EXISTS comments_touch_ticket_search ON comments")
    op.execute("DROP TRIGGER IF EXISTS tickets_search_vector ON tickets")
    op.execute("DROP FUNCTION IF EXISTS comments_touch_ticket_search()")
    op.execute("DROP FUNCTION IF EXISTS tickets_search_vector()")
    for table in TENANT_TABLES:
        for statement in rls.disable_tenant_rls(table):
            op.execute(statement)
    op.drop_index(op.f("ix_comment_revisions_organization_id"), table_name="comment_revisions")
    op.drop_index(op.f("ix_comment_revisions_comment_id"), table_name="comment_revisions")
    op.drop_table("comment_revisions")
    op.drop_index(op.f("ix_attachments_ticket_id"), table_name="attachments")
    op.drop_index(op.f("ix_attachments_organization_id"), table_name="attachments")
    op.drop_index(op.f("ix_attachments_comment_id"), table_name="attachments")
    op.drop_table("attachments")
    op.drop_index("ix_comments_ticket_created", table_name="comments")
    op.drop_index(op.f("ix_comments_organization_id"), table_name="comments")
    op.drop_table("comments")
    op.drop_index("uq_tickets_org_number", table_name="tickets")
    op.drop_index("ix_tickets_tags", table_name="tickets", postgresql_using="gin")
    op.drop_index(
        "ix_tickets_subject_trgm",
        table_name="tickets",
        postgresql_using="gin",
        postgresql_ops={"subject": "gin_trgm_ops"},
    )
    op.drop_index("ix_tickets_search", table_name="tickets", postgresql_using="gin")
    op.drop_index(op.f("ix_tickets_organization_id"), table_name="tickets")
    op.drop_index("ix_tickets_org_updated", table_name="tickets")
    op.drop_index("ix_tickets_org_submitted", table_name="tickets")
    op.drop_index("ix_tickets_org_status_updated", table_name="tickets")
    op.drop_index("ix_tickets_org_requester", table_name="tickets")
    op.drop_index("ix_tickets_org_priority_updated", table_name="tickets")
    op.drop_index("ix_tickets_org_assignee_status", table_name="tickets")
    op.drop_index(
        "ix_tickets_number_trgm",
        table_name="tickets",
        postgresql_using="gin",
        postgresql_ops={"number": "gin_trgm_ops"},
    )
    op.drop_index(op.f("ix_tickets_department_id"), table_name="tickets")
    op.drop_index(op.f("ix_tickets_category_id"), table_name="tickets")
    op.drop_table("tickets")
    op.drop_index("uq_saved_views_user_name", table_name="saved_views")
    op.drop_index(op.f("ix_saved_views_organization_id"), table_name="saved_views")
    op.drop_table("saved_views")
    op.drop_index("uq_idempotency_keys_user_key", table_name="idempotency_keys")
    op.drop_index(op.f("ix_idempotency_keys_organization_id"), table_name="idempotency_keys")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("uq_categories_org_name", table_name="categories")
    op.drop_index(op.f("ix_categories_parent_id"), table_name="categories")
    op.drop_index(op.f("ix_categories_organization_id"), table_name="categories")
    op.drop_table("categories")
    op.drop_table("ticket_counters")
