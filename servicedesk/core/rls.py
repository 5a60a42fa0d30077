"""SQL used by migrations to set up the application role and row-level security.

Kept in the package (not in one migration) because every migration that adds a tenant-owned
table calls `enable_tenant_rls` for it.
"""

from __future__ import annotations

import os

TENANT_EXPR = "NULLIF(current_setting('app.organization_id', true), '')::uuid"


def app_role() -> str:
    return os.environ.get("SERVICEDESK_DB_ROLE", "servicedesk_app")


def create_app_role_sql() -> list[str]:
    """The unprivileged role tenant sessions switch to (`SET LOCAL ROLE`), plus its grants."""
    role = app_role()  # from operator config, not user input
    return [
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END
        $$;
        """,
        # The migrating user must be able to SET ROLE to it (a no-op for superusers).
        f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
                EXECUTE format('GRANT {role} TO %I', current_user);
            END IF;
        END
        $$;
        """,
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]


def grant_all_sql() -> str:
    role = app_role()
    return f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"


def enable_tenant_rls(table: str, column: str = "organization_id") -> list[str]:
    """Statements that confine `table` to the organization bound to the transaction."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"""
        CREATE POLICY tenant_isolation ON {table}
            USING ({column} = {TENANT_EXPR})
            WITH CHECK ({column} = {TENANT_EXPR})
        """,
    ]


def disable_tenant_rls(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
