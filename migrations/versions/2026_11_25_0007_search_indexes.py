"""Search that uses its indexes under RLS: per-organization GIN indexes and a scoped view.

Under row-level security PostgreSQL refuses to use non-leakproof operators (`@@`, `%>`,
`LIKE`) as index conditions before the policy is checked, so search scanned every ticket of
the organization. `ticket_search_scope` is a view owned by the migrating user (RLS does not
apply to the owner) whose own WHERE is the tenant condition of the policy; the application
searches through it and then loads the matching tickets by id through RLS as usual.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 14:35:49.460661+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from servicedesk.core import rls

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SCOPE_VIEW = f"""
CREATE VIEW ticket_search_scope AS
    SELECT id, organization_id, number, subject, description, search_vector, status, priority,
           category_id, subcategory_id, department_id, requester_id, assignee_id, channel,
           tags, submitted_at, updated_at
    FROM tickets
    WHERE organization_id = {rls.TENANT_EXPR}
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.drop_index(
        op.f("ix_tickets_number_trgm"),
        table_name="tickets",
        postgresql_ops={"number": "gin_trgm_ops"},
        postgresql_using="gin",
    )
    op.drop_index(op.f("ix_tickets_search"), table_name="tickets", postgresql_using="gin")
    op.drop_index(
        op.f("ix_tickets_subject_trgm"),
        table_name="tickets",
        postgresql_ops={"subject": "gin_trgm_ops"},
        postgresql_using="gin",
    )
    op.create_index(
        "ix_tickets_org_number_pattern",
        "tickets",
        ["organization_id", "number"],
        unique=False,
        postgresql_ops={"number": "varchar_pattern_ops"},
    )
    op.create_index(
        "ix_tickets_org_search",
        "tickets",
        ["organization_id", "search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_tickets_org_subject_trgm",
        "tickets",
        ["organization_id", "subject"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"subject": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_tickets_org_unassigned",
        "tickets",
        ["organization_id", "status", "updated_at", "id"],
        unique=False,
        postgresql_where=sa.text("assignee_id IS NULL"),
    )
    op.execute(SCOPE_VIEW)
    op.execute(f"GRANT SELECT ON ticket_search_scope TO {rls.app_role()}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ticket_search_scope")
    op.drop_index(
        "ix_tickets_org_unassigned",
        table_name="tickets",
        postgresql_where=sa.text("assignee_id IS NULL"),
    )
    op.drop_index(
        "ix_tickets_org_subject_trgm",
        table_name="tickets",
        postgresql_using="gin",
        postgresql_ops={"subject": "gin_trgm_ops"},
    )
    op.drop_index("ix_tickets_org_search", table_name="tickets", postgresql_using="gin")
    op.drop_index(
        "ix_tickets_org_number_pattern",
        table_name="tickets",
        postgresql_ops={"number": "varchar_pattern_ops"},
    )
    op.create_index(
        op.f("ix_tickets_subject_trgm"),
        "tickets",
        ["subject"],
        unique=False,
        postgresql_ops={"subject": "gin_trgm_ops"},
        postgresql_using="gin",
    )
    op.create_index(
        op.f("ix_tickets_search"),
        "tickets",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        op.f("ix_tickets_number_trgm"),
        "tickets",
        ["number"],
        unique=False,
        postgresql_ops={"number": "gin_trgm_ops"},
        postgresql_using="gin",
    )
