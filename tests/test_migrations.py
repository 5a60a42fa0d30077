"""Migrations: they build the schema the models describe, on empty and on populated databases."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from servicedesk.config import Settings
from servicedesk.core import migrate
from servicedesk.core.db import to_driver_url
from servicedesk.demo import load_demo
from tests.conftest import fresh_database, test_settings


def _sync_url(url: str) -> str:
    return to_driver_url(url, "psycopg").render_as_string(hide_password=False)


def test_models_and_migrations_agree(server_url: str, worker_id: str) -> None:
    url = fresh_database(server_url, f"servicedesk_mig_check_{worker_id}")
    migrate.upgrade(url)
    # `alembic check` raises if autogenerate would produce any operation.
    command.check(migrate.alembic_config(url))


def test_full_downgrade_and_upgrade_on_empty_database(server_url: str, worker_id: str) -> None:
    url = fresh_database(server_url, f"servicedesk_mig_empty_{worker_id}")
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    engine = create_engine(_sync_url(url))
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    migrate.upgrade(url)


async def test_every_step_runs_on_a_populated_database(
    server_url: str, worker_id: str, tmp_path: Path
) -> None:
    """Walk down and up one revision at a time with demo data present."""
    url = fresh_database(server_url, f"servicedesk_mig_full_{worker_id}")
    migrate.upgrade(url)
    settings: Settings = test_settings(SERVICEDESK_FILES_DIR=str(tmp_path / "files"))
    await load_demo(settings, url)
    revisions = list(ScriptDirectory.from_config(migrate.alembic_config(url)).walk_revisions())
    assert revisions, "no migrations found"
    for _ in revisions[:-1]:
        migrate.downgrade(url, "-1")
        migrate.upgrade(url, "+1")
    migrate.upgrade(url)
    engine = create_engine(_sync_url(url))
    with engine.connect() as conn:
        users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
        tables_with_rls = set(
            conn.execute(
                text("SELECT relname FROM pg_class WHERE relrowsecurity AND relkind = 'r'")
            ).scalars()
        )
    engine.dispose()
    assert users >= 6
    # Every table with an organization_id column is under row-level security.
    engine = create_engine(_sync_url(url))
    with engine.connect() as conn:
        tenant_tables = set(
            conn.execute(
                text(
                    "SELECT c.table_name FROM information_schema.columns c "
                    "JOIN information_schema.tables t USING (table_schema, table_name) "
                    "WHERE c.column_name = 'organization_id' AND c.table_schema = 'public' "
                    "AND t.table_type = 'BASE TABLE'"
                )
            ).scalars()
        )
    engine.dispose()
    assert tenant_tables
    assert tenant_tables <= tables_with_rls
    assert "organizations" in tables_with_rls
