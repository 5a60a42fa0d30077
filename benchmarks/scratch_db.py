"""A throwaway database for a benchmark: a fresh one on `--database-url`, else a temporary
embedded PostgreSQL 18; with a temporary data dir, deleted afterwards unless kept."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from servicedesk.core.embedded import EmbeddedPostgres, ensure_database


def fresh_database(server_url: str, name: str) -> str:
    """Drop and create `name` on the server; the URL of the new database."""
    admin = make_url(server_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ensure_database(server_url, name)
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(
    name: str, *, database_url: str | None, keep: bool
) -> Iterator[tuple[str, Path]]:
    """(database URL, temporary data dir) for the benchmark `name` (e.g. `fanout`)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"sd-bench-{name}-"))
    database = f"servicedesk_bench_{name}"
    server: EmbeddedPostgres | None = None
    try:
        if database_url:
            url = fresh_database(database_url, database)
            print(f"database: {database} on --database-url", flush=True)
        else:
            server = EmbeddedPostgres(data_dir / "pg")
            url = server.start(database=database)
            print("database: embedded PostgreSQL 18 (temporary)", flush=True)
        yield url, data_dir
    finally:
        if server is not None:
            server.stop()
        if keep:
            print(f"kept {data_dir}", flush=True)
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(data_dir)
