"""Jobs: procrastinate's queue in its own schema, job errors, handled events, tenant defer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 14:00:00.000000+00:00

The queue's tables, types and functions are procrastinate's (applied from the copy of its
`schema.sql` in migrations/sql/, for the pinned version) and live in the schema
`procrastinate`: the application role has no USAGE on it, Alembic's autogenerate does not
look at it, and a downgrade drops it whole. Every function in it gets a fixed `search_path`, so
it works whatever the caller's path. Upgrading procrastinate to a version with a different
schema needs a new migration that runs procrastinate's own SQL migrations in that schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from servicedesk.core import rls

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "procrastinate"
PROCRASTINATE_SQL = Path(__file__).resolve().parents[1] / "sql" / "procrastinate-3.10.0.sql"

# The last error of each failed attempt, for the failed-jobs page (procrastinate keeps none).
JOB_ERRORS = f"""
CREATE TABLE {SCHEMA}.job_errors (
    job_id bigint PRIMARY KEY REFERENCES {SCHEMA}.procrastinate_jobs (id) ON DELETE CASCADE,
    attempts integer NOT NULL,
    error text NOT NULL,
    traceback text,
    failed_at timestamp with time zone NOT NULL DEFAULT now()
)
"""

# Deferring a job from a tenant session, in the caller's transaction (the job exists only if
# the transaction commits). The application role cannot touch the queue's tables; this
# function can, and only for jobs of the organization the transaction is bound to. A job with
# a queueing lock that already has a waiting job is not queued again (returns NULL).
DEFER_FUNCTION = f"""
CREATE FUNCTION public.servicedesk_defer_job(
    _queue_name text,
    _task_name text,
    _args jsonb,
    _lock text,
    _queueing_lock text,
    _scheduled_at timestamp with time zone,
    _priority integer
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = {SCHEMA}, pg_catalog, pg_temp
AS $$
DECLARE
    _org text := NULLIF(current_setting('app.organization_id', true), '');
    _job_id bigint;
BEGIN
    IF (_org IS NOT NULL OR current_setting('role') <> 'none')
       AND (_org IS NULL OR _args->>'organization_id' IS DISTINCT FROM _org) THEN
        RAISE EXCEPTION 'a tenant transaction may only defer jobs of its own organization'
            USING ERRCODE = '42501';
    END IF;
    BEGIN
        _job_id := (procrastinate_defer_jobs_v1(ARRAY[
            ROW(_queue_name, _task_name, COALESCE(_priority, 0), _lock, _queueing_lock,
                _args, _scheduled_at)::procrastinate_job_to_defer_v1
        ]))[1];
    EXCEPTION WHEN unique_violation THEN
        RETURN NULL;
    END;
    RETURN _job_id;
END
$$;
"""
DEFER_SIGNATURE = (
    "public.servicedesk_defer_job(text, text, jsonb, text, text, timestamp with time zone, integer)"
)

PIN_SEARCH_PATH = """
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'procrastinate'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = procrastinate, pg_catalog', f);
    END LOOP;
END
$$;
"""


def _execute_script(sql: str) -> None:
    """Run several statements at once through the driver (`%` is psycopg's placeholder)."""
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    role = rls.app_role()
    op.create_table(
        "handled_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("handler", sa.String(length=128), nullable=False),
        sa.Column(
            "handled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_handled_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "handler", name=op.f("pk_handled_events")),
    )
    op.create_index(
        op.f("ix_handled_events_handled_at"), "handled_events", ["handled_at"], unique=False
    )
    op.create_index(
        op.f("ix_handled_events_organization_id"),
        "handled_events",
        ["organization_id"],
        unique=False,
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON handled_events TO {role}")
    for statement in rls.enable_tenant_rls("handled_events"):
        op.execute(statement)

    bind = op.get_bind()
    search_path = bind.exec_driver_sql("SHOW search_path").scalar_one()
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    op.execute(f"SET LOCAL search_path TO {SCHEMA}")
    _execute_script(PROCRASTINATE_SQL.read_text(encoding="utf-8"))
    _execute_script(PIN_SEARCH_PATH)
    op.execute(f"SET LOCAL search_path TO {search_path}")
    op.execute(JOB_ERRORS)
    # Default privileges granted the application role every new table; not these.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {role}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {role}")
    op.execute(f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC")
    _execute_script(DEFER_FUNCTION)
    op.execute(f"REVOKE ALL ON FUNCTION {DEFER_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {DEFER_SIGNATURE} TO {role}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {DEFER_SIGNATURE}")
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    for statement in rls.disable_tenant_rls("handled_events"):
        op.execute(statement)
    op.drop_index(op.f("ix_handled_events_organization_id"), table_name="handled_events")
    op.drop_index(op.f("ix_handled_events_handled_at"), table_name="handled_events")
    op.drop_table("handled_events")
